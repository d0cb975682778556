// One batch-1 decode step of a Llama-style model in a single call.
//
// At batch 1 the matmuls of a 135M model take about 11 ms per token on the reference CPU, but
// running each layer's glue as separate torch ops (two RMSNorms, RoPE, the cache write,
// attention over one query row, SiLU, residual adds, reshapes) costs as much again in per-op
// dispatch: hundreds of small ops per token. DecodePlan runs the same math for every layer
// in C++: the seven projections go through the same quantized kernels as QuantLinear (so they
// give the same numbers), and the glue is plain loops over a few hundred floats.
//
//   per layer:  h = rmsnorm(x) * w_attn
//               q, k, v = Wq h, Wk h, Wv h           (+ biases)
//               rotate q, k by RoPE at position pos  ("rotate half" pairing)
//               cache[l, 0, :, pos] = k, v
//               a_h = softmax(q_h . K_g / sqrt(D)) V_g   for every query head h, g = h / (H / Hkv)
//               x += Wo a
//               h = rmsnorm(x) * w_mlp
//               x += Wdown (silu(Wgate h) * Wup h)
//
// The caller checks that the model fits this shape (rope, RMSNorm, SwiGLU, every projection
// quantized, one row, no padding); anything else takes the regular torch path.
#include "qkernel.h"

namespace {

using llmkit::QWeight;

inline float dot(const float* a, const float* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  float s = llmkit::hsum(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// y[i] += a * x[i]
inline void axpy(float a, const float* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

void rmsnorm(const float* x, const float* w, int64_t n, double eps, float* out) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float r = static_cast<float>(1.0 / std::sqrt(ss / n + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * r * w[i];
}

// Rotate each head of x (heads, D) in place: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin).
void rope(float* x, int64_t heads, int64_t D, const float* cos, const float* sin) {
  const int64_t d = D / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* v = x + h * D;
    for (int64_t i = 0; i < d; ++i) {
      const float x1 = v[i], x2 = v[i + d];
      v[i] = x1 * cos[i] - x2 * sin[i];
      v[i + d] = x2 * cos[i] + x1 * sin[i];
    }
  }
}

struct Layer {
  torch::Tensor attn_norm, mlp_norm;
  QWeight q, k, v, o, gate, up, down;
};

class DecodePlan {
 public:
  DecodePlan(int64_t n_head, int64_t n_kv_head, int64_t head_dim, int64_t d_model, int64_t ff_dim, double eps)
      : H_(n_head), Hkv_(n_kv_head), D_(head_dim), C_(d_model), F_(ff_dim), eps_(eps) {
    TORCH_CHECK(H_ % Hkv_ == 0 && D_ % 2 == 0, "bad head layout");
  }

  // Layers are added in order; each gets its two norm weights, then seven projections in the
  // order q, k, v, o, gate, up, down (see add_linear).
  void add_layer(torch::Tensor attn_norm, torch::Tensor mlp_norm) {
    for (const auto* t : {&attn_norm, &mlp_norm})
      TORCH_CHECK(t->scalar_type() == torch::kFloat32 && t->is_contiguous() && t->numel() == C_, "bad norm weight");
    layers_.push_back(Layer{attn_norm, mlp_norm, {}, {}, {}, {}, {}, {}, {}});
    filled_ = 0;
  }

  void add_linear(torch::Tensor qs, torch::Tensor scale, c10::optional<torch::Tensor> min,
                  c10::optional<torch::Tensor> bias, int64_t G, int64_t bits, bool exact) {
    TORCH_CHECK(!layers_.empty() && filled_ < 7, "add_layer first; seven projections per layer");
    TORCH_CHECK(bits == 4 || bits == 8, "bits must be 4 or 8");
    TORCH_CHECK(qs.is_contiguous() && scale.is_contiguous(), "weights must be contiguous");
    TORCH_CHECK(scale.scalar_type() == torch::kFloat16 || scale.scalar_type() == torch::kFloat32, "bad scale dtype");
    QWeight w;
    w.N = qs.size(0);
    w.K = bits == 4 ? qs.size(1) * 2 : qs.size(1);
    w.G = G;
    TORCH_CHECK(G % 32 == 0 && w.K % G == 0 && scale.size(0) == w.N && scale.size(1) == w.K / G, "bad scale shape");
    w.bits = static_cast<int>(bits);
    w.exact = exact;
    w.half = scale.scalar_type() == torch::kFloat16;
    w.qs = static_cast<const uint8_t*>(qs.data_ptr());
    w.scale = scale.data_ptr();
    keep_.push_back(qs);
    keep_.push_back(scale);
    if (min.has_value()) {
      TORCH_CHECK(min->is_contiguous() && min->sizes() == scale.sizes() && min->scalar_type() == scale.scalar_type(),
                  "bad min");
      w.min = min->data_ptr();
      keep_.push_back(*min);
    }
    if (bias.has_value()) {
      TORCH_CHECK(bias->scalar_type() == torch::kFloat32 && bias->is_contiguous() && bias->numel() == w.N, "bad bias");
      w.bias = bias->data_ptr<float>();
      keep_.push_back(*bias);
    }
    const int64_t qkv = H_ * D_, kv = Hkv_ * D_;
    const int64_t want_n[7] = {qkv, kv, kv, C_, F_, F_, C_}, want_k[7] = {C_, C_, C_, qkv, C_, C_, F_};
    TORCH_CHECK(w.N == want_n[filled_] && w.K == want_k[filled_], "projection ", filled_, " has shape (", w.N, ", ",
                w.K, "), expected (", want_n[filled_], ", ", want_k[filled_], ")");
    Layer& l = layers_.back();
    QWeight* slots[7] = {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down};
    *slots[filled_++] = w;
  }

  // x (C,) float32: the token's embedding, updated in place to the last block's output.
  // k_cache, v_cache (L, B, Hkv, S, D): row 0 gets slot pos; cos, sin (>= pos + 1, D/2).
  void step(torch::Tensor x, torch::Tensor k_cache, torch::Tensor v_cache, int64_t pos, torch::Tensor cos,
            torch::Tensor sin) {
    const int64_t L = static_cast<int64_t>(layers_.size());
    TORCH_CHECK(filled_ == 7, "the last layer is missing projections");
    TORCH_CHECK(x.scalar_type() == torch::kFloat32 && x.is_contiguous() && x.numel() == C_, "x must be (C,) float32");
    for (const auto* c : {&k_cache, &v_cache})
      TORCH_CHECK(c->scalar_type() == torch::kFloat32 && c->is_contiguous() && c->dim() == 5 && c->size(0) == L &&
                  c->size(2) == Hkv_ && c->size(4) == D_ && pos < c->size(3), "bad cache");
    TORCH_CHECK(cos.is_contiguous() && sin.is_contiguous() && cos.size(0) > pos && cos.size(1) == D_ / 2 &&
                cos.sizes() == sin.sizes(), "bad rope tables");
    const int64_t layer_stride = k_cache.stride(0), head_stride = k_cache.stride(2);
    h_.resize(std::max(C_, F_));
    q_.resize(H_ * D_);
    kv_.resize(2 * Hkv_ * D_);
    att_.resize(H_ * D_);
    g_.resize(F_);
    u_.resize(F_);
    out_.resize(C_);
    p_.resize(H_ * (pos + 1));
    float* xp = x.data_ptr<float>();
    const float *cp = cos.data_ptr<float>() + pos * (D_ / 2), *sp = sin.data_ptr<float>() + pos * (D_ / 2);
    for (int64_t li = 0; li < L; ++li) {
      const Layer& l = layers_[li];
      float* kc = k_cache.data_ptr<float>() + li * layer_stride;
      float* vc = v_cache.data_ptr<float>() + li * layer_stride;
      rmsnorm(xp, l.attn_norm.data_ptr<float>(), C_, eps_, h_.data());
      float *kn = kv_.data(), *vn = kv_.data() + Hkv_ * D_;
      const QWeight* qkv[3] = {&l.q, &l.k, &l.v};
      float* qkv_out[3] = {q_.data(), kn, vn};
      llmkit::qlinear_multi(qkv, qkv_out, 3, h_.data(), 1, sc_);
      rope(q_.data(), H_, D_, cp, sp);
      rope(kn, Hkv_, D_, cp, sp);
      for (int64_t g = 0; g < Hkv_; ++g) {
        std::copy(kn + g * D_, kn + (g + 1) * D_, kc + g * head_stride + pos * D_);
        std::copy(vn + g * D_, vn + (g + 1) * D_, vc + g * head_stride + pos * D_);
      }
      attend(kc, vc, head_stride, pos + 1);
      llmkit::qlinear(l.o, att_.data(), 1, out_.data(), sc_);
      for (int64_t i = 0; i < C_; ++i) xp[i] += out_[i];
      rmsnorm(xp, l.mlp_norm.data_ptr<float>(), C_, eps_, h_.data());
      const QWeight* gu[2] = {&l.gate, &l.up};
      float* gu_out[2] = {g_.data(), u_.data()};
      llmkit::qlinear_multi(gu, gu_out, 2, h_.data(), 1, sc_);
      for (int64_t i = 0; i < F_; ++i) g_[i] = g_[i] / (1.f + std::exp(-g_[i])) * u_[i];
      llmkit::qlinear(l.down, g_.data(), 1, out_.data(), sc_);
      for (int64_t i = 0; i < C_; ++i) xp[i] += out_[i];
    }
  }

 private:
  // att_ (H, D) = softmax(q K^T / sqrt(D)) V over the first n cache slots, one query head at a time.
  void attend(const float* kc, const float* vc, int64_t head_stride, int64_t n) {
    const float scale = 1.f / std::sqrt(static_cast<float>(D_));
    const int64_t per_kv = H_ / Hkv_;
    auto one_head = [&](int64_t h) {
      const float* qh = q_.data() + h * D_;
      const float *K = kc + (h / per_kv) * head_stride, *V = vc + (h / per_kv) * head_stride;
      float* p = p_.data() + h * n;
      float mx = -INFINITY;
      for (int64_t s = 0; s < n; ++s) {
        p[s] = dot(qh, K + s * D_, D_) * scale;
        mx = std::max(mx, p[s]);
      }
      float sum = 0.f;
      for (int64_t s = 0; s < n; ++s) sum += (p[s] = std::exp(p[s] - mx));
      float* out = att_.data() + h * D_;
      std::fill(out, out + D_, 0.f);
      const float inv = 1.f / sum;
      for (int64_t s = 0; s < n; ++s) axpy(p[s] * inv, V + s * D_, out, D_);
    };
    if (n * H_ < 4096) {  // a short context is cheaper than waking the other threads
      for (int64_t h = 0; h < H_; ++h) one_head(h);
    } else {
      at::parallel_for(0, H_, 1, [&](int64_t h0, int64_t h1) { for (int64_t h = h0; h < h1; ++h) one_head(h); });
    }
  }

  int64_t H_, Hkv_, D_, C_, F_;
  double eps_;
  std::vector<Layer> layers_;
  std::vector<torch::Tensor> keep_;  // the weight tensors the QWeight pointers point into
  int filled_ = 7;
  llmkit::Scratch sc_;
  std::vector<float> h_, q_, kv_, att_, g_, u_, out_, p_;
};

}  // namespace

void bind_decode(pybind11::module& m) {
  pybind11::class_<DecodePlan>(m, "DecodePlan")
      .def(pybind11::init<int64_t, int64_t, int64_t, int64_t, int64_t, double>())
      .def("add_layer", &DecodePlan::add_layer)
      .def("add_linear", &DecodePlan::add_linear)
      .def("step", &DecodePlan::step, pybind11::call_guard<pybind11::gil_scoped_release>());
}
