// The quantized-matmul kernels shared by qmatmul.cpp (one layer per call) and decode.cpp (a whole
// batch-1 decode step per call). See qmatmul.cpp for the math and the weight layouts.
#pragma once
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

namespace llmkit {

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

// sum over groups of four u8 * s8 products -> 8 int32 lanes, as floats. With AVX-VNNI or AVX-512 VNNI
// (the build adds the flag when the CPU has it) this is one vpdpbusd instead of maddubs + madd; the
// integer result is the same either way.
inline __m256 dot_u8s8(__m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s));
#elif defined(__AVXVNNI__)
  return _mm256_cvtepi32_ps(_mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s));
#else
  const __m256i p16 = _mm256_maddubs_epi16(u, s);  // |u| <= 128, |s| <= 127: pairs fit in int16
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
#endif
}

// 32 weights of one block against 32 int8 activations -> 8 partial sums
struct Block4 {
  static constexpr int64_t bytes_per_block = 16;
  static inline __m256 dot(const uint8_t* q, const int8_t* xq) {
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
    const __m256i w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask),  // values 16..31
                                       _mm_and_si128(bytes, mask));                      // values 0..15
    return dot_u8s8(w, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq)));
  }
};

struct Block8 {
  static constexpr int64_t bytes_per_block = 32;
  static inline __m256 dot(const uint8_t* q, const int8_t* xq) {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
    // maddubs wants an unsigned operand: |w| * (x * sign(w)) == w * x
    return dot_u8s8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
  }
};

// Exact mode: the same weights expanded to floats against the float activations (4 FMAs per block).
inline __m256 fma_block(const __m256 w[4], const float* x, __m256 acc) {
  acc = _mm256_fmadd_ps(w[0], _mm256_loadu_ps(x), acc);
  acc = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(x + 8), acc);
  acc = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(x + 16), acc);
  return _mm256_fmadd_ps(w[3], _mm256_loadu_ps(x + 24), acc);
}

inline void expand4(const uint8_t* q, __m256 w[4]) {
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  const __m128i lo = _mm_and_si128(bytes, mask), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
  w[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
  w[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
  w[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
  w[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
}

inline void expand8(const uint8_t* q, __m256 w[4]) {
  for (int i = 0; i < 4; ++i)
    w[i] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * i))));
}

// Exact mode rows: x (R, K) float, no activation rounding.
template <int Bytes, int R, typename S>
void rows_exact(const float* x, const float* xsum, int64_t K, const uint8_t* qs, const S* sc, const S* mn,
                int64_t G, float* y, int64_t N, int64_t n0, int64_t n1) {
  const int64_t ng = K / G, nb = G / 32, row_bytes = K / 32 * Bytes;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* q = qs + n * row_bytes;
    __m256 tot[R];
    float mtot[R];
    for (int r = 0; r < R; ++r) { tot[r] = _mm256_setzero_ps(); mtot[r] = 0.f; }
    for (int64_t g = 0; g < ng; ++g) {
      __m256 acc[R];
      for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
      for (int64_t b = g * nb; b < (g + 1) * nb; ++b) {
        __m256 w[4];
        if (Bytes == 16) expand4(q + b * Bytes, w); else expand8(q + b * Bytes, w);
        for (int r = 0; r < R; ++r) acc[r] = fma_block(w, x + r * K + b * 32, acc[r]);
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

// Activations of M rows -> int8 codes (M, K), block scales (M, K/32), float group sums (M, K/G).
// A code is nearbyint(x / d) with d = max|x| / 127 per block: cvtps_epi32 rounds to nearest even,
// as nearbyint does in the default rounding mode.
inline void quantize_rows(const float* x, int64_t M, int64_t K, int64_t G, int8_t* xq, float* xd, float* xsum) {
  const __m256 sign = _mm256_set1_ps(-0.f);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t b = 0; xq != nullptr && b < K / 32; ++b) {
      const float* v = x + m * K + b * 32;
      __m256 a[4], mx = _mm256_setzero_ps();
      for (int i = 0; i < 4; ++i) {
        a[i] = _mm256_loadu_ps(v + 8 * i);
        mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, a[i]));
      }
      __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
      h = _mm_max_ps(h, _mm_movehl_ps(h, h));
      h = _mm_max_ss(h, _mm_movehdup_ps(h));
      const float d = _mm_cvtss_f32(h) / 127.f, inv = d > 0 ? 1.f / d : 0.f;
      const __m256 vi = _mm256_set1_ps(inv);
      __m256i c[4];
      for (int i = 0; i < 4; ++i) c[i] = _mm256_cvtps_epi32(_mm256_mul_ps(a[i], vi));
      // int32 -> int16 -> int8 packs interleave 128-bit lanes; the permute puts the 32 codes back in order
      const __m256i p16a = _mm256_packs_epi32(c[0], c[1]), p16b = _mm256_packs_epi32(c[2], c[3]);
      const __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16a, p16b),
                                                     _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(xq + m * K + b * 32), p8);
      xd[m * (K / 32) + b] = d;
    }
    if (xsum != nullptr)
      for (int64_t g = 0; g < K / G; ++g) {
        float s = 0.f;
        for (int64_t i = 0; i < G; ++i) s += x[m * K + g * G + i];
        xsum[m * (K / G) + g] = s;
      }
  }
}

// sum_g m[g] * xs[g] over ng groups: the "+ min" part of one output feature against one row of x
template <typename S> inline float min_term(const S* m, const float* xs, int64_t ng);
template <> inline float min_term<float>(const float* m, const float* xs, int64_t ng) {
  __m256 acc = _mm256_setzero_ps();
  int64_t g = 0;
  for (; g + 8 <= ng; g += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(m + g), _mm256_loadu_ps(xs + g), acc);
  float s = hsum(acc);
  for (; g < ng; ++g) s += m[g] * xs[g];
  return s;
}
template <> inline float min_term<at::Half>(const at::Half* m, const float* xs, int64_t ng) {
  __m256 acc = _mm256_setzero_ps();
  int64_t g = 0;
  for (; g + 8 <= ng; g += 8)
    acc = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(m + g))),
                          _mm256_loadu_ps(xs + g), acc);
  float s = hsum(acc);
  for (; g < ng; ++g) s += load_scale(m, g) * xs[g];
  return s;
}

// out[i] = scale of block b0 + i * xd[b0 + i], for i < nb8 (at most 8 blocks), with one block per group
// (G = 32: int4 g32, GGUF Q4_0/Q4_1/Q8_0): a full run of 8 is one vector convert and multiply.
template <typename S>
inline void block_scales(const S* scn, int64_t b0, int64_t nb8, const float* xd, float* out) {
  if (nb8 == 8) {
    __m256 d;
    if constexpr (std::is_same_v<S, float>) d = _mm256_loadu_ps(scn + b0);
    else d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scn + b0)));
    _mm256_storeu_ps(out, _mm256_mul_ps(d, _mm256_loadu_ps(xd + b0)));
    return;
  }
  for (int64_t i = 0; i < nb8; ++i) out[i] = load_scale(scn, b0 + i) * xd[b0 + i];
}

// Output features [n0, n1) for R rows when a group spans several blocks (per-channel int8, groups of
// 64 or 128): one scale load per group, and the R rows' accumulators are the independent chains.
// Measured: for per-channel int8 at 4-8 rows this is about 1.5x faster than staging per-block scales.
template <typename Blk, int R, typename S>
void rows_grouped(const int8_t* xq, const float* xd, const float* xsum, int64_t K, const uint8_t* qs, const S* sc,
                  const S* mn, int64_t G, float* y, int64_t N, int64_t n0, int64_t n1) {
  const int64_t ng = K / G, nb = G / 32, kb = K / 32, row_bytes = kb * Blk::bytes_per_block;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* q = qs + n * row_bytes;
    __m256 tot[R];
    for (int r = 0; r < R; ++r) tot[r] = _mm256_setzero_ps();
    for (int64_t g = 0; g < ng; ++g) {
      const float d = load_scale(sc, n * ng + g);
      for (int64_t b = g * nb; b < (g + 1) * nb; ++b)
        for (int r = 0; r < R; ++r)
          tot[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * xd[r * kb + b]),
                                   Blk::dot(q + b * Blk::bytes_per_block, xq + r * K + b * 32), tot[r]);
    }
    for (int r = 0; r < R; ++r) {
      float v = hsum(tot[r]);
      if (mn != nullptr) v += min_term(mn + n * ng, xsum + r * ng, ng);
      y[r * N + n] = v;
    }
  }
}

// Output features [n0, n1) for R rows, one block per group. The block scales (weight scale x activation scale) are formed
// 8 blocks at a time, and blocks alternate between two accumulators per row, so consecutive blocks'
// FMAs do not wait on each other.
template <typename Blk, int R, typename S>
void rows(const int8_t* xq, const float* xd, const float* xsum, int64_t K, const uint8_t* qs, const S* sc,
          const S* mn, int64_t G, float* y, int64_t N, int64_t n0, int64_t n1) {
  const int64_t ng = K / G, nb = G / 32, kb = K / 32, row_bytes = kb * Blk::bytes_per_block;
  if (nb > 1) return rows_grouped<Blk, R, S>(xq, xd, xsum, K, qs, sc, mn, G, y, N, n0, n1);
  constexpr int64_t B = Blk::bytes_per_block;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* q = qs + n * row_bytes;
    const S* scn = sc + n * ng;
    __m256 t0[R], t1[R];
    for (int r = 0; r < R; ++r) t0[r] = t1[r] = _mm256_setzero_ps();
    for (int64_t b0 = 0; b0 < kb; b0 += 8) {
      const int64_t nb8 = std::min<int64_t>(8, kb - b0);
      alignas(32) float ds[R][8];
      for (int r = 0; r < R; ++r) block_scales(scn, b0, nb8, xd + r * kb, ds[r]);
      int64_t i = 0;
      for (; i + 2 <= nb8; i += 2) {
        const uint8_t* qb = q + (b0 + i) * B;
        for (int r = 0; r < R; ++r) {
          const int8_t* a = xq + r * K + (b0 + i) * 32;
          t0[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(&ds[r][i]), Blk::dot(qb, a), t0[r]);
          t1[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(&ds[r][i + 1]), Blk::dot(qb + B, a + 32), t1[r]);
        }
      }
      if (i < nb8)
        for (int r = 0; r < R; ++r)
          t0[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(&ds[r][i]), Blk::dot(q + (b0 + i) * B, xq + r * K + (b0 + i) * 32),
                                  t0[r]);
    }
    for (int r = 0; r < R; ++r) {
      float v = hsum(_mm256_add_ps(t0[r], t1[r]));
      if (mn != nullptr) v += min_term(mn + n * ng, xsum + r * ng, ng);
      y[r * N + n] = v;
    }
  }
}


// One quantized weight, as the kernels read it (pointers into tensors the caller keeps alive).
struct QWeight {
  const uint8_t* qs = nullptr;  // (N, K/2) packed 4-bit or (N, K) int8
  const void* scale = nullptr;  // (N, K/G) float32 or float16
  const void* min = nullptr;    // like scale, or null (symmetric)
  const float* bias = nullptr;  // (N,) or null
  bool half = true;             // scale/min are float16
  int bits = 8;
  int64_t N = 0, K = 0, G = 32;
  bool exact = false;           // float activations (no int8 rounding)
};

// Reusable activation buffers, so a decode step allocates nothing.
struct Scratch {
  std::vector<int8_t> xq;
  std::vector<float> xd, xsum;
  void reserve(int64_t M, int64_t K, int64_t G) {
    if ((int64_t)xq.size() < M * K) xq.resize(M * K);
    if ((int64_t)xd.size() < M * (K / 32)) xd.resize(M * (K / 32));
    if ((int64_t)xsum.size() < M * (K / G)) xsum.resize(M * (K / G));
  }
};

// Whether two weights can share one pass over x: the same activation rounding and group sums.
inline bool same_kind(const QWeight& a, const QWeight& b) {
  return a.bits == b.bits && a.half == b.half && a.K == b.K && a.G == b.G && a.exact == b.exact &&
         (a.min == nullptr) == (b.min == nullptr);
}

// ys[i] (M, N_i) = x (M, K) @ dequant(W_i)^T (+ bias_i), for nw weights of one kind read by the same x
// (q, k and v; gate and up): x is rounded once, and all their output features share one parallel loop.
template <typename Blk, typename S>
void matmul_into(const float* xp, int64_t M, const QWeight* const* ws, float* const* ys, int nw, Scratch& sc) {
  const QWeight& w0 = *ws[0];
  const int64_t K = w0.K, G = w0.G, ng = K / G, kb = K / 32;
  const bool exact = w0.exact;
  sc.reserve(M, K, G);
  int8_t* xqp = sc.xq.data();
  float *xdp = sc.xd.data(), *xsp = sc.xsum.data();
  quantize_rows(xp, exact ? 0 : M, K, G, xqp, xdp, nullptr);
  if (w0.min) quantize_rows(xp, M, K, G, nullptr, nullptr, xsp);
  // 16 output features per task: their packed rows stay in L1 while every chunk of x uses them
  int64_t first[4] = {0, 0, 0, 0};
  for (int i = 0; i < nw; ++i) first[i + 1] = first[i] + (ws[i]->N + 15) / 16;
  at::parallel_for(0, first[nw], 1, [&](int64_t t0, int64_t t1) {
    for (int i = 0; i < nw; ++i) {
      const int64_t a0 = std::max(t0, first[i]), a1 = std::min(t1, first[i + 1]);
      if (a0 >= a1) continue;
      const QWeight& w = *ws[i];
      const int64_t N = w.N, n0 = (a0 - first[i]) * 16, n1 = std::min(N, (a1 - first[i]) * 16);
      const S* scl = static_cast<const S*>(w.scale);
      const S* mn = static_cast<const S*>(w.min);
      for (int64_t m = 0; m < M; m += 4) {
        const int64_t r = std::min<int64_t>(4, M - m);
        const int8_t* a = xqp + m * K;
        const float *af = xp + m * K, *ad = xdp + m * kb, *as = xsp + m * ng;
        float* ym = ys[i] + m * N;
        constexpr int B = Blk::bytes_per_block;
        if (exact) {
          switch (r) {
            case 4: rows_exact<B, 4>(af, as, K, w.qs, scl, mn, G, ym, N, n0, n1); break;
            case 3: rows_exact<B, 3>(af, as, K, w.qs, scl, mn, G, ym, N, n0, n1); break;
            case 2: rows_exact<B, 2>(af, as, K, w.qs, scl, mn, G, ym, N, n0, n1); break;
            default: rows_exact<B, 1>(af, as, K, w.qs, scl, mn, G, ym, N, n0, n1); break;
          }
          continue;
        }
        switch (r) {
          case 4: rows<Blk, 4>(a, ad, as, K, w.qs, scl, mn, G, ym, N, n0, n1); break;
          case 3: rows<Blk, 3>(a, ad, as, K, w.qs, scl, mn, G, ym, N, n0, n1); break;
          case 2: rows<Blk, 2>(a, ad, as, K, w.qs, scl, mn, G, ym, N, n0, n1); break;
          default: rows<Blk, 1>(a, ad, as, K, w.qs, scl, mn, G, ym, N, n0, n1); break;
        }
      }
    }
  });
  for (int i = 0; i < nw; ++i)
    if (ws[i]->bias != nullptr)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < ws[i]->N; ++n) ys[i][m * ws[i]->N + n] += ws[i]->bias[n];
}

// Up to three weights read by the same x (M, K), each into its own y. Weights of different kinds
// (say a GGUF file mixing Q4_1 and Q8_0) take separate passes.
inline void qlinear_multi(const QWeight* const* ws, float* const* ys, int nw, const float* x, int64_t M, Scratch& sc) {
  TORCH_CHECK(nw >= 1 && nw <= 3, "one to three weights per pass");
  for (int i = 1; i < nw; ++i)
    if (!same_kind(*ws[0], *ws[i])) {
      for (int j = 0; j < nw; ++j) qlinear_multi(ws + j, ys + j, 1, x, M, sc);
      return;
    }
  const QWeight& w = *ws[0];
  if (w.bits == 4) {
    if (w.half) matmul_into<Block4, at::Half>(x, M, ws, ys, nw, sc); else matmul_into<Block4, float>(x, M, ws, ys, nw, sc);
  } else {
    if (w.half) matmul_into<Block8, at::Half>(x, M, ws, ys, nw, sc); else matmul_into<Block8, float>(x, M, ws, ys, nw, sc);
  }
}

inline void qlinear(const QWeight& w, const float* x, int64_t M, float* y, Scratch& sc) {
  const QWeight* ws[1] = {&w};
  float* ys[1] = {y};
  qlinear_multi(ws, ys, 1, x, M, sc);
}

}  // namespace llmkit
