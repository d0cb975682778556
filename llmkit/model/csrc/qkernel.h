// The quantized-matmul kernels shared by qmatmul.cpp (one layer per call) and decode.cpp (a whole
// batch-1 decode step per call). See qmatmul.cpp for the math and the weight layouts.
#pragma once
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <algorithm>
#include <cmath>
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

// sum over pairs of u8 * s8 products -> 8 int32 lanes, as floats
inline __m256 dot_u8s8(__m256i u, __m256i s) {
  const __m256i p16 = _mm256_maddubs_epi16(u, s);  // |u| <= 128, |s| <= 127: pairs fit in int16
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
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

// Activations of M rows -> int8 codes (M, K), block scales (M, K/32), float group sums (M, K/G)
inline void quantize_rows(const float* x, int64_t M, int64_t K, int64_t G, int8_t* xq, float* xd, float* xsum) {
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t b = 0; xq != nullptr && b < K / 32; ++b) {
      const float* v = x + m * K + b * 32;
      float amax = 0.f;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(v[i]));
      const float d = amax / 127.f, inv = d > 0 ? 1.f / d : 0.f;
      for (int i = 0; i < 32; ++i) xq[m * K + b * 32 + i] = static_cast<int8_t>(std::nearbyint(v[i] * inv));
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

// Output features [n0, n1) for R rows.
template <typename Blk, int R, typename S>
void rows(const int8_t* xq, const float* xd, const float* xsum, int64_t K, const uint8_t* qs, const S* sc,
          const S* mn, int64_t G, float* y, int64_t N, int64_t n0, int64_t n1) {
  const int64_t ng = K / G, nb = G / 32, kb = K / 32, row_bytes = kb * Blk::bytes_per_block;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* q = qs + n * row_bytes;
    __m256 tot[R];
    float mtot[R];
    for (int r = 0; r < R; ++r) { tot[r] = _mm256_setzero_ps(); mtot[r] = 0.f; }
    for (int64_t g = 0; g < ng; ++g) {
      const float d = load_scale(sc, n * ng + g);
      for (int64_t b = g * nb; b < (g + 1) * nb; ++b) {
        for (int r = 0; r < R; ++r) {
          const __m256 p = Blk::dot(q + b * Blk::bytes_per_block, xq + r * K + b * 32);
          tot[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * xd[r * kb + b]), p, tot[r]);
        }
      }
      if (mn != nullptr) {
        const float m = load_scale(mn, n * ng + g);
        for (int r = 0; r < R; ++r) mtot[r] += m * xsum[r * ng + g];
      }
    }
    for (int r = 0; r < R; ++r) y[r * N + n] = hsum(tot[r]) + mtot[r];
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

// y (M, N) = x (M, K) @ dequant(W)^T (+ bias), written into y.
template <typename Blk, typename S>
void matmul_into(const float* xp, int64_t M, const QWeight& w, float* yp, Scratch& sc) {
  const int64_t K = w.K, G = w.G, N = w.N, ng = K / G, kb = K / 32;
  const bool exact = w.exact;
  const S* scl = static_cast<const S*>(w.scale);
  const S* mn = static_cast<const S*>(w.min);
  const uint8_t* qs = w.qs;
  sc.reserve(M, K, G);
  int8_t* xqp = sc.xq.data();
  float *xdp = sc.xd.data(), *xsp = sc.xsum.data();
  quantize_rows(xp, exact ? 0 : M, K, G, xqp, xdp, nullptr);
  if (mn) quantize_rows(xp, M, K, G, nullptr, nullptr, xsp);
  // 16 output features per task: their packed rows stay in L1 while every chunk of x uses them
  at::parallel_for(0, (N + 15) / 16, 1, [&](int64_t t0, int64_t t1) {
    const int64_t n0 = t0 * 16, n1 = std::min(N, t1 * 16);
    for (int64_t m = 0; m < M; m += 4) {
      const int64_t r = std::min<int64_t>(4, M - m);
      const int8_t* a = xqp + m * K;
      const float *af = xp + m * K, *ad = xdp + m * kb, *as = xsp + m * ng;
      float* ym = yp + m * N;
      constexpr int B = Blk::bytes_per_block;
      if (exact) {
        switch (r) {
          case 4: rows_exact<B, 4>(af, as, K, qs, scl, mn, G, ym, N, n0, n1); break;
          case 3: rows_exact<B, 3>(af, as, K, qs, scl, mn, G, ym, N, n0, n1); break;
          case 2: rows_exact<B, 2>(af, as, K, qs, scl, mn, G, ym, N, n0, n1); break;
          default: rows_exact<B, 1>(af, as, K, qs, scl, mn, G, ym, N, n0, n1); break;
        }
        continue;
      }
      switch (r) {
        case 4: rows<Blk, 4>(a, ad, as, K, qs, scl, mn, G, ym, N, n0, n1); break;
        case 3: rows<Blk, 3>(a, ad, as, K, qs, scl, mn, G, ym, N, n0, n1); break;
        case 2: rows<Blk, 2>(a, ad, as, K, qs, scl, mn, G, ym, N, n0, n1); break;
        default: rows<Blk, 1>(a, ad, as, K, qs, scl, mn, G, ym, N, n0, n1); break;
      }
    }
  });
  if (w.bias != nullptr)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) yp[m * N + n] += w.bias[n];
}

inline void qlinear(const QWeight& w, const float* x, int64_t M, float* y, Scratch& sc) {
  if (w.bits == 4) {
    if (w.half) matmul_into<Block4, at::Half>(x, M, w, y, sc); else matmul_into<Block4, float>(x, M, w, y, sc);
  } else {
    if (w.half) matmul_into<Block8, at::Half>(x, M, w, y, sc); else matmul_into<Block8, float>(x, M, w, y, sc);
  }
}

}  // namespace llmkit
