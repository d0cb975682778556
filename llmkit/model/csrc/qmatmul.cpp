// Quantized-weight matmul for small batches on x86 CPUs with AVX2 + FMA + F16C.
//
//   y (M, N) = x (M, K) @ dequant(W)^T      with W stored as int8 or packed 4-bit in groups of G
//
// At batch 1..8 a linear layer is bound by reading the weight, so the weight stays
// packed in memory and is never expanded to floats. The activations are quantized too,
// per row in blocks of 32 (x ~ dx * qx, qx int8, dx = max|x| / 127: llama.cpp's Q8
// activations), so one 32-value block of the dot product is two integer instructions
// (maddubs + madd) instead of four float conversions and four FMAs. The "+ min" term of
// asymmetric formats uses the exact float sums of x. Each weight block is read once
// and used for up to 4 rows of x. exact=true skips the activation rounding (weights are
// expanded to floats in registers instead: about twice the instructions per weight).
//
// Layouts (rows of W are output features; every row is K values, K % G == 0, G % 32 == 0):
//   4-bit: qs (N, K/2) uint8. In each 32-value block, byte j holds value j in its low
//          nibble and value j+16 in its high nibble (GGUF's Q4_0/Q4_1 order).
//          w = scale[g] * q + min[g],  q in [0, 15]
//   8-bit: qs (N, K) int8.  w = scale[g] * q (+ min[g] when a min is given)
//   scale, min: (N, K/G) float32 or float16.
#include "qkernel.h"

namespace {

using llmkit::QWeight;

QWeight check(const torch::Tensor& x, const torch::Tensor& qs, const torch::Tensor& scale,
              const torch::Tensor& mn, int64_t G, int64_t K, int bits) {
  const int64_t N = qs.size(0);
  TORCH_CHECK(G % 32 == 0 && K % G == 0, "group size must be a multiple of 32 dividing K");
  TORCH_CHECK(x.dim() == 2 && x.size(1) == K && x.scalar_type() == torch::kFloat32, "x must be (M, K) float32");
  TORCH_CHECK(qs.is_contiguous(), "qs must be contiguous");
  TORCH_CHECK(scale.dim() == 2 && scale.size(0) == N && scale.size(1) == K / G, "bad scale shape");
  TORCH_CHECK(scale.scalar_type() == torch::kFloat16 || scale.scalar_type() == torch::kFloat32,
              "scale must be float16 or float32");
  if (mn.defined())
    TORCH_CHECK(mn.sizes() == scale.sizes() && mn.scalar_type() == scale.scalar_type(), "bad min");
  QWeight w;
  w.qs = static_cast<const uint8_t*>(qs.data_ptr());
  w.scale = scale.data_ptr();
  w.min = mn.defined() ? mn.data_ptr() : nullptr;
  w.half = scale.scalar_type() == torch::kFloat16;
  w.bits = bits;
  w.N = N;
  w.K = K;
  w.G = G;
  return w;
}

torch::Tensor dispatch(const torch::Tensor& x_, const torch::Tensor& qs, const torch::Tensor& scale_,
                       c10::optional<torch::Tensor> min, int64_t G, int64_t K, bool exact, int bits) {
  const torch::Tensor x = x_.contiguous(), scale = scale_.contiguous();
  const torch::Tensor mn = min.has_value() ? min->contiguous() : torch::Tensor();
  QWeight w = check(x, qs, scale, mn, G, K, bits);
  w.exact = exact;
  auto y = torch::empty({x.size(0), w.N}, x.options());
  llmkit::Scratch sc;
  llmkit::qlinear(w, x.data_ptr<float>(), x.size(0), y.data_ptr<float>(), sc);
  return y;
}

// W (N, K) float32 = dequant(qs): for prefill-sized batches, where one float GEMM beats re-reading the
// packed rows once per 4 rows of x. Rows are split across threads; each 32-value block is expanded in
// registers and written once.
template <typename S>
void dequant_rows(const QWeight& w, float* out, int64_t n0, int64_t n1) {
  const int64_t K = w.K, G = w.G, ng = K / G, nb = G / 32, B = w.bits == 4 ? 16 : 32;
  const S* sc = static_cast<const S*>(w.scale);
  const S* mn = static_cast<const S*>(w.min);
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t g = 0; g < ng; ++g) {
      const __m256 d = _mm256_set1_ps(llmkit::load_scale(sc, n * ng + g));
      const __m256 m = _mm256_set1_ps(mn != nullptr ? llmkit::load_scale(mn, n * ng + g) : 0.f);
      for (int64_t b = g * nb; b < (g + 1) * nb; ++b) {
        __m256 v[4];
        const uint8_t* q = w.qs + (n * (K / 32) + b) * B;
        if (w.bits == 4) llmkit::expand4(q, v); else llmkit::expand8(q, v);
        float* o = out + n * K + b * 32;
        for (int i = 0; i < 4; ++i) _mm256_storeu_ps(o + 8 * i, _mm256_add_ps(_mm256_mul_ps(d, v[i]), m));  // as torch rounds
      }
    }
}

torch::Tensor dequantize(const torch::Tensor& qs, const torch::Tensor& scale_, c10::optional<torch::Tensor> min,
                         int64_t G, int64_t bits) {
  TORCH_CHECK(bits == 4 || bits == 8, "bits must be 4 or 8");
  TORCH_CHECK(qs.scalar_type() == (bits == 4 ? torch::kUInt8 : torch::kInt8), "qs dtype does not match bits");
  const int64_t K = bits == 4 ? qs.size(1) * 2 : qs.size(1);
  const torch::Tensor scale = scale_.contiguous();
  const torch::Tensor mn = min.has_value() ? min->contiguous() : torch::Tensor();
  const torch::Tensor x = torch::empty({1, K}, torch::kFloat32);  // only for check()'s shape tests
  const QWeight w = check(x, qs, scale, mn, G, K, static_cast<int>(bits));
  auto out = torch::empty({w.N, K}, torch::kFloat32);
  float* o = out.data_ptr<float>();
  at::parallel_for(0, w.N, 16, [&](int64_t n0, int64_t n1) {
    if (w.half) dequant_rows<at::Half>(w, o, n0, n1); else dequant_rows<float>(w, o, n0, n1);
  });
  return out;
}

}  // namespace

void bind_decode(pybind11::module& m);  // decode.cpp

// x (M, K) f32; qs (N, K/2) u8; scale, min (N, K/G) f32|f16  ->  (M, N) f32
torch::Tensor q4_matmul(torch::Tensor x, torch::Tensor qs, torch::Tensor scale, c10::optional<torch::Tensor> min,
                        int64_t G, bool exact) {
  TORCH_CHECK(qs.scalar_type() == torch::kUInt8, "qs must be uint8");
  return dispatch(x, qs, scale, min, G, qs.size(1) * 2, exact, 4);
}

// x (M, K) f32; qs (N, K) i8; scale (N, K/G) f32|f16; optional min like scale  ->  (M, N) f32
torch::Tensor q8_matmul(torch::Tensor x, torch::Tensor qs, torch::Tensor scale, c10::optional<torch::Tensor> min,
                        int64_t G, bool exact) {
  TORCH_CHECK(qs.scalar_type() == torch::kInt8, "qs must be int8");
  return dispatch(x, qs, scale, min, G, qs.size(1), exact, 8);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("q4_matmul", &q4_matmul, "x @ dequant(packed 4-bit W)^T, int8 activations");
  m.def("q8_matmul", &q8_matmul, "x @ dequant(int8 W)^T, int8 activations");
  m.def("dequantize", &dequantize, "packed 4-bit or int8 W (+ scale, min) -> float32 (N, K)");
  bind_decode(m);
}
