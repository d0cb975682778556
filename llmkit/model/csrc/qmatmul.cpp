// Quantized-weight matmul for small batches on x86 CPUs with AVX2 + FMA + F16C.
//
//   y (M, N) = x (M, K) @ dequant(W)^T      with W stored as int8 or packed 4-bit in groups of G
//
// At batch 1..8 a linear layer is bound by reading the weight, so the weight stays
// packed in memory and is expanded to fp32 only in registers, one 32-value block at
// a time, and each expanded block is used for up to 4 rows of x before it is dropped.
// Activations stay fp32 (no activation quantization): the result equals
// x @ dequant(W)^T up to float summation order.
//
// Layouts (rows of W are output features; every row is K values, K % G == 0, G % 32 == 0):
//   4-bit: qs (N, K/2) uint8. In each 32-value block, byte j holds value j in its low
//          nibble and value j+16 in its high nibble (GGUF's Q4_0/Q4_1 order).
//          w = scale[g] * q + min[g],  q in [0, 15]
//   8-bit: qs (N, K) int8.  w = scale[g] * q (+ min[g] when a min is given)
//   scale, min: (N, K/G) float32 or float16.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <typename S> inline float load_scale(const S* p, int64_t i);
template <> inline float load_scale<float>(const float* p, int64_t i) { return p[i]; }
template <> inline float load_scale<at::Half>(const at::Half* p, int64_t i) {
  return _cvtsh_ss(reinterpret_cast<const uint16_t*>(p)[i]);
}

// 32 weights of one block -> four fp32 vectors (values 0-7, 8-15, 16-23, 24-31)
struct Block4 {
  static inline void expand(const uint8_t* q, __m256 w[4]) {
    const __m128i mask = _mm_set1_epi8(0x0F);
    __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
    __m128i lo = _mm_and_si128(bytes, mask);                       // values 0..15
    __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);    // values 16..31
    w[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
    w[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
    w[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
    w[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
  }
  static constexpr int64_t bytes_per_block = 16;
};

struct Block8 {
  static inline void expand(const uint8_t* q, __m256 w[4]) {
    for (int i = 0; i < 4; ++i) {
      __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * i));
      w[i] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
    }
  }
  static constexpr int64_t bytes_per_block = 32;
};

// Output features [n0, n1) for R rows of x starting at x.
// xsum (R, K/G): per-group sums of x, used for the "+ min" term (null when there is no min).
template <typename Blk, int R, typename S>
void rows(const float* x, int64_t K, const uint8_t* qs, const S* sc, const S* mn, const float* xsum,
          int64_t G, float* y, int64_t N, int64_t n0, int64_t n1) {
  const int64_t ng = K / G, nb = G / 32, row_bytes = K / 32 * Blk::bytes_per_block;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* q = qs + n * row_bytes;
    __m256 tot[R];
    float mtot[R];
    for (int r = 0; r < R; ++r) { tot[r] = _mm256_setzero_ps(); mtot[r] = 0.f; }
    for (int64_t g = 0; g < ng; ++g) {
      __m256 acc[R];
      for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t blk = g * nb + b;
        __m256 w[4];
        Blk::expand(q + blk * Blk::bytes_per_block, w);
        for (int r = 0; r < R; ++r) {
          const float* xr = x + r * K + blk * 32;
          acc[r] = _mm256_fmadd_ps(w[0], _mm256_loadu_ps(xr), acc[r]);
          acc[r] = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xr + 8), acc[r]);
          acc[r] = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xr + 16), acc[r]);
          acc[r] = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xr + 24), acc[r]);
        }
      }
      const __m256 d = _mm256_set1_ps(load_scale(sc, n * ng + g));
      for (int r = 0; r < R; ++r) tot[r] = _mm256_fmadd_ps(d, acc[r], tot[r]);
      if (mn != nullptr) {
        const float m = load_scale(mn, n * ng + g);
        for (int r = 0; r < R; ++r) mtot[r] += m * xsum[r * ng + g];
      }
    }
    for (int r = 0; r < R; ++r) y[r * N + n] = hsum(tot[r]) + mtot[r];
  }
}

template <typename Blk, typename S>
void run(const float* x, int64_t M, int64_t K, const uint8_t* qs, const S* sc, const S* mn,
         const float* xsum, int64_t G, float* y, int64_t N) {
  const int64_t ng = K / G;
  // 16 output features per task: their packed rows stay in L1 while every chunk of x uses them
  at::parallel_for(0, (N + 15) / 16, 1, [&](int64_t t0, int64_t t1) {
    const int64_t n0 = t0 * 16, n1 = std::min(N, t1 * 16);
    for (int64_t m = 0; m < M; m += 4) {
      const int64_t r = std::min<int64_t>(4, M - m);
      const float* xm = x + m * K;
      const float* xs = xsum ? xsum + m * ng : nullptr;
      float* ym = y + m * N;
      switch (r) {
        case 4: rows<Blk, 4>(xm, K, qs, sc, mn, xs, G, ym, N, n0, n1); break;
        case 3: rows<Blk, 3>(xm, K, qs, sc, mn, xs, G, ym, N, n0, n1); break;
        case 2: rows<Blk, 2>(xm, K, qs, sc, mn, xs, G, ym, N, n0, n1); break;
        default: rows<Blk, 1>(xm, K, qs, sc, mn, xs, G, ym, N, n0, n1); break;
      }
    }
  });
}

torch::Tensor check_x(const torch::Tensor& x, int64_t K) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == K && x.scalar_type() == torch::kFloat32, "x must be (M, K) float32");
  return x.contiguous();
}

}  // namespace

// x (M, K) f32; qs (N, K/2) u8; scale, min (N, K/G) f32|f16  ->  (M, N) f32
torch::Tensor q4_matmul(torch::Tensor x, torch::Tensor qs, torch::Tensor scale, torch::Tensor min, int64_t G) {
  const int64_t N = qs.size(0), K = qs.size(1) * 2, M = x.size(0);
  TORCH_CHECK(G % 32 == 0 && K % G == 0, "group size must be a multiple of 32 dividing K");
  TORCH_CHECK(qs.scalar_type() == torch::kUInt8 && qs.is_contiguous(), "qs must be contiguous uint8");
  TORCH_CHECK(scale.sizes() == min.sizes() && scale.size(0) == N && scale.size(1) == K / G, "bad scale/min shape");
  TORCH_CHECK(scale.scalar_type() == min.scalar_type(), "scale and min dtypes differ");
  x = check_x(x, K);
  scale = scale.contiguous(); min = min.contiguous();
  auto xsum = x.view({M, K / G, G}).sum(-1).contiguous();  // (M, K/G)
  auto y = torch::empty({M, N}, x.options());
  if (scale.scalar_type() == torch::kFloat16)
    run<Block4>(x.data_ptr<float>(), M, K, qs.data_ptr<uint8_t>(), scale.data_ptr<at::Half>(),
                min.data_ptr<at::Half>(), xsum.data_ptr<float>(), G, y.data_ptr<float>(), N);
  else
    run<Block4>(x.data_ptr<float>(), M, K, qs.data_ptr<uint8_t>(), scale.data_ptr<float>(),
                min.data_ptr<float>(), xsum.data_ptr<float>(), G, y.data_ptr<float>(), N);
  return y;
}

// x (M, K) f32; qs (N, K) i8; scale (N, K/G) f32|f16; optional min like scale  ->  (M, N) f32
torch::Tensor q8_matmul(torch::Tensor x, torch::Tensor qs, torch::Tensor scale, c10::optional<torch::Tensor> min,
                        int64_t G) {
  const int64_t N = qs.size(0), K = qs.size(1), M = x.size(0);
  TORCH_CHECK(G % 32 == 0 && K % G == 0, "group size must be a multiple of 32 dividing K");
  TORCH_CHECK(qs.scalar_type() == torch::kInt8 && qs.is_contiguous(), "qs must be contiguous int8");
  TORCH_CHECK(scale.size(0) == N && scale.size(1) == K / G, "bad scale shape");
  x = check_x(x, K);
  scale = scale.contiguous();
  torch::Tensor mn, xsum;
  if (min.has_value()) {
    mn = min->contiguous();
    TORCH_CHECK(mn.sizes() == scale.sizes() && mn.scalar_type() == scale.scalar_type(), "bad min");
    xsum = x.view({M, K / G, G}).sum(-1).contiguous();
  }
  auto y = torch::empty({M, N}, x.options());
  const uint8_t* q = reinterpret_cast<const uint8_t*>(qs.data_ptr<int8_t>());
  const float* xs = xsum.defined() ? xsum.data_ptr<float>() : nullptr;
  if (scale.scalar_type() == torch::kFloat16)
    run<Block8, at::Half>(x.data_ptr<float>(), M, K, q, scale.data_ptr<at::Half>(),
                          mn.defined() ? mn.data_ptr<at::Half>() : nullptr, xs, G, y.data_ptr<float>(), N);
  else
    run<Block8, float>(x.data_ptr<float>(), M, K, q, scale.data_ptr<float>(),
                       mn.defined() ? mn.data_ptr<float>() : nullptr, xs, G, y.data_ptr<float>(), N);
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("q4_matmul", &q4_matmul, "x @ dequant(packed 4-bit W)^T");
  m.def("q8_matmul", &q8_matmul, "x @ dequant(int8 W)^T");
}
