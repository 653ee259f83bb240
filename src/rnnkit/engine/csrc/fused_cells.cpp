// rnnkit's compiled kernel: forward and hand-written BPTT of the SimpleRNN, LSTM, GRU and output
// feedback families with the time loop in C++ (no Python and no allocation per step).
//
// Dimension legend: B batch, T time, H units, G gates, K lags, L the largest lag, P peephole gates,
// O feedback outputs.
//
// Layout, time-major as in engine/fused.py:
//   xw   (T, B, G·H)  the projected inputs A x_t + b (one GEMM over all t, done in Python); for
//                     output feedback (T, B, H+O), [A x_t + b, D x_t + b_o]
//   hbuf (L+T, B, H)  slot L+t holds h_t; slots 0..L-1 hold h0 (the lag history starts as h0)
//   cbuf (T+1, B, H)  the LSTM cell state; slot 0 holds c0
//   obuf (T+1, B, O)  the fed-back output o_t; slot 0 holds o0
//   mask (T, B)       1 where the step is real; a masked step carries the state (its slot copies
//                     the previous one) and outputs zero. Python compacts non-prefix masks when
//                     K > 1 first, so reading h_{t-l} from slot L+t-l is exact.
//   rm   (B, K·H)     the recurrent mask multiplying the lagged states
// Per step: one GEMM for the recurrent term, called straight into BLAS on raw pointers (no ATen
// dispatch, no tensor views: at small B and H those cost more than the product), and the gate math
// of the standard cells (SimpleRNN, LSTM without peepholes, GRU with reset_after) in one loop over
// each row, with activations the compiler vectorises (fast_exp below); the other families still
// take one ATen call per gate block for their activations.
// Only what backward needs is kept: gate activations and states. Derivatives come from the
// activation outputs (tanh' = 1 - a², σ' = a (1 - a), relu' = [a > 0]), so no pre-activations.
// Backward keeps the gradient of the lag history in a ring of L+1 slots of (B, H), and forms the
// recurrent weight gradient as one GEMM over all T·B rows after the loop.
// The LSTM's gate activations overwrite xw in place (the caller owns xw: its own projection).
// Threads (the extension is built with OpenMP, as ATen is): while the recurrent weight is small the
// rows are split into one chunk per thread, each running the whole time loop on its rows (the
// recurrence is independent across rows), so a step costs no synchronisation; past the caller's
// size budget one loop runs on all rows, BLAS threads its GEMMs and for_rows its pointwise loops.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

// The Fortran BLAS that torch links (MKL, OpenBLAS, ...) exports these; weak, so that a build
// without them still loads and the GEMMs go through ATen instead.
extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc) __attribute__((weak));
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b, const int* ldb,
            const double* beta, double* c, const int* ldc) __attribute__((weak));
}

namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

enum Act : int64_t { kLinear = 0, kTanh = 1, kSigmoid = 2, kRelu = 3 };

// a <- a * scale + shift in place, on a (rows, cols) view whose columns are adjacent
template <typename T>
void affine_(Tensor a, T scale, T shift) {
  const int64_t rows = a.size(0), cols = a.size(1), stride = a.stride(0);
  T* p = a.data_ptr<T>();
  for (int64_t b = 0; b < rows; ++b) {
    T* r = p + b * stride;
    for (int64_t j = 0; j < cols; ++j) r[j] = r[j] * scale + shift;
  }
}

// a <- act(a) in place; a is a (B, n) view, e.g. one gate block of a step.
// tanh(x) = 2 σ(2x) - 1: ATen's vectorized sigmoid is several times faster than its tanh on CPU.
template <typename T>
void activate_(Tensor a, int64_t act) {
  switch (act) {
    case kTanh:
      affine_<T>(a, T(2), T(0));
      a.sigmoid_();
      affine_<T>(a, T(2), T(-1));
      break;
    case kSigmoid: a.sigmoid_(); break;
    case kRelu: a.relu_(); break;
    default: break;
  }
}

// out <- act(in), both (B, H)
template <typename T>
void activate_out(Tensor& out, const Tensor& in, int64_t act) {
  out.copy_(in);
  activate_<T>(out, act);
}

// C (m, n) <- beta C + op(A) · op(B), all row-major with row strides lda, ldb, ldc (unit column
// stride); op(A) (m, k) is Aᵀ of A (k, m) when a_t, else A; op(B) (k, n) is Bᵀ of B (n, k) when b_t,
// else B. beta is 0 or 1. Column-major BLAS sees the transposes: Cᵀ = op(B)ᵀ op(A)ᵀ.
template <typename T>
void gemm_ex(bool a_t, bool b_t, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
             int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) {
      if (beta == T(0)) std::fill_n(c + i * ldc, n, T(0));
    }
    return;
  }
  constexpr bool is_float = std::is_same_v<T, float>;
  const bool blas = is_float ? sgemm_ != nullptr : dgemm_ != nullptr;
  if (blas) {
    const char ta = b_t ? 'T' : 'N', tb = a_t ? 'T' : 'N';
    const int mm = static_cast<int>(n), nn = static_cast<int>(m), kk = static_cast<int>(k);
    const int la = static_cast<int>(ldb), lb = static_cast<int>(lda), lc = static_cast<int>(ldc);
    const T one = T(1);
    if constexpr (is_float) {
      sgemm_(&ta, &tb, &mm, &nn, &kk, &one, b, &la, a, &lb, &beta, c, &lc);
    } else {
      dgemm_(&ta, &tb, &mm, &nn, &kk, &one, b, &la, a, &lb, &beta, c, &lc);
    }
    return;
  }
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  const Tensor at_a = a_t ? at::from_blob(const_cast<T*>(a), {k, m}, {lda, 1}, opts).t()
                          : at::from_blob(const_cast<T*>(a), {m, k}, {lda, 1}, opts);
  const Tensor at_b = b_t ? at::from_blob(const_cast<T*>(b), {n, k}, {ldb, 1}, opts).t()
                          : at::from_blob(const_cast<T*>(b), {k, n}, {ldb, 1}, opts);
  Tensor at_c = at::from_blob(c, {m, n}, {ldc, 1}, opts);
  if (beta == T(0)) {
    at::mm_out(at_c, at_a, at_b);
  } else {
    at_c.addmm_(at_a, at_b);
  }
}

// C (m, n) <- beta C + A (m, k) · op(W): op(W) = Wᵀ for W (n, k) when w_t, else W (k, n).
template <typename T>
void gemm(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* w, int64_t ldw, bool w_t,
          T beta, T* c, int64_t ldc) {
  gemm_ex<T>(false, w_t, m, n, k, a, lda, w, ldw, beta, c, ldc);
}

// e^x for float in plain arithmetic (Cephes' expf: x = n ln2 + r, a degree-5 polynomial in r,
// 2^n from the exponent bits), so that loops calling it vectorise; relative error < 1e-7 on
// [-87, 88], where it clamps. double keeps the library's exp.
// Always inlined: a call in the gate loops would stop them from vectorising.
#define RNNKIT_INLINE inline __attribute__((always_inline))

RNNKIT_INLINE float fast_exp(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  constexpr float kRound = 12582912.0f;  // 1.5 · 2^23: adding it rounds to the nearest integer
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}
RNNKIT_INLINE double fast_exp(double x) { return std::exp(x); }

template <typename T>
RNNKIT_INLINE T sigmoid(T x) {
  return T(1) / (T(1) + fast_exp(-x));
}

// tanh(x) = 2 σ(2x) - 1 (absolute error ~1 ulp of 1: the tolerance the tests hold is 1e-5 in float32)
template <typename T>
RNNKIT_INLINE T tanh_(T x) {
  if constexpr (std::is_same_v<T, double>) {
    return std::tanh(x);
  } else {
    return T(2) * sigmoid(T(2) * x) - T(1);
  }
}

// act(z) for one number; with a Fixed code the switch folds away and loops vectorise
template <typename T, typename A>
RNNKIT_INLINE T act_of(T z, A act) {
  switch (static_cast<int64_t>(act)) {
    case kTanh: return tanh_(z);
    case kSigmoid: return sigmoid(z);
    case kRelu: return z > T(0) ? z : T(0);
    default: return z;
  }
}

// act'(z) from a = act(z)
template <typename T>
inline T deriv(T a, int64_t act) {
  switch (act) {
    case kTanh: return T(1) - a * a;
    case kSigmoid: return a * (T(1) - a);
    case kRelu: return a > T(0) ? T(1) : T(0);
    default: return T(1);
  }
}

// An activation code known at compile time (std::integral_constant) or only at run time (Dyn):
// the backward loops take either, so the common pairs get loops with deriv's switch folded away,
// which the compiler can vectorise, and any other pair still runs.
struct Dyn {
  int64_t v;
  operator int64_t() const { return v; }
};
template <int64_t A>
using Fixed = std::integral_constant<int64_t, A>;

// f(act, ract) with the pair as compile-time constants where it is a common one
template <typename F>
void with_acts(int64_t act, int64_t ract, const F& f) {
  if (act == kTanh && ract == kSigmoid) {
    f(Fixed<kTanh>{}, Fixed<kSigmoid>{});
  } else if (act == kRelu && ract == kSigmoid) {
    f(Fixed<kRelu>{}, Fixed<kSigmoid>{});
  } else if (act == kLinear && ract == kSigmoid) {
    f(Fixed<kLinear>{}, Fixed<kSigmoid>{});
  } else {
    f(Dyn{act}, Dyn{ract});
  }
}

// f(b) for every row b; rows are split over threads only when a step is big enough to pay for it.
template <typename F>
void for_rows(int64_t rows, int64_t cols, const F& f) {
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(cols, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) f(b);
  });
}

// at::empty for the per-sequence buffers (T, ...): a fresh allocation of tens of MiB costs a page
// fault per 4 KiB on first touch, which can exceed the arithmetic at small H; asking for huge pages
// (where THP is in "madvise" mode) cuts that 512-fold.
Tensor big_empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  Tensor t = at::empty(sizes, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = (begin + t.nbytes()) & ~(kHuge - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);  // a hint
#endif
  return t;
}

template <typename T>
T* ptr(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

Tensor contiguous_or_empty(const OptTensor& t) {
  return t.has_value() && t->defined() ? t->contiguous() : Tensor();
}

// Step t is real in row b of the mask m (T, B) with time stride ms.
template <typename T>
inline bool real(const T* m, int64_t ms, int64_t t, int64_t b) {
  return m == nullptr || m[t * ms + b] != T(0);
}

int64_t stride0(const Tensor& t) {
  return t.defined() ? t.stride(0) : 0;
}

// The rows [b0, b0 + n) of t along its batch dimension dim; an undefined tensor stays undefined.
Tensor rows_of(const Tensor& t, int64_t dim, int64_t b0, int64_t n) {
  return t.defined() ? t.narrow(dim, b0, n) : t;
}

// f(b0, n) on one contiguous chunk of rows per thread. The recurrence is independent across rows,
// so each thread runs the whole time loop on its rows: no synchronisation per step, and the ATen
// calls inside run single-threaded (they see the parallel region). Each thread then streams the
// whole recurrent weight w through its own cache every step; once w outgrows a core's L2 that
// costs more than it saves, and f runs once on all rows instead: the GEMMs are then threaded by
// BLAS (which splits w's columns between the cores) and the pointwise loops by for_rows. The
// caller chooses (split: one chunk per thread), by the size of w.
template <typename F>
void over_batch(int64_t batch, bool split, const F& f) {
  constexpr int64_t kMinRows = 8;  // below this a chunk's GEMMs get too thin to pay for a thread
  if (!split) {
    f(0, batch);
    return;
  }
  const int64_t threads = at::get_num_threads();
  const int64_t chunk = std::max<int64_t>(kMinRows, (batch + threads - 1) / threads);
  at::parallel_for(0, batch, chunk, [&](int64_t b0, int64_t b1) {
    // worker threads start with autograd on; the ATen calls here must dispatch below it, as the
    // calling thread does inside the autograd.Function
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    f(b0, b1 - b0);
  });
}

struct Lags {
  std::vector<int64_t> l;
  int64_t max;
  bool plain;  // lags == (1,) without a recurrent mask: h_lags is a view of the history
};

Lags make_lags(at::IntArrayRef lags, const Tensor& rm) {
  Lags out{lags.vec(), *std::max_element(lags.begin(), lags.end()), false};
  out.plain = lags.size() == 1 && lags[0] == 1 && !rm.defined();
  return out;
}

// (L+T, B, H) history whose first L slots hold h0
Tensor history(const Tensor& h0, int64_t steps, int64_t lmax) {
  Tensor buf = big_empty({lmax + steps, h0.size(0), h0.size(1)}, h0.options());
  buf.narrow(0, 0, lmax).copy_(h0.unsqueeze(0).expand({lmax, h0.size(0), h0.size(1)}));
  return buf;
}

// out (B, K·H) <- [h_{t-l} for l in lags] * rm
template <typename T>
void gather_lags(const Tensor& hbuf, int64_t t, const Lags& lags, const Tensor& rm, Tensor out) {
  const int64_t batch = hbuf.size(1), hid = hbuf.size(2);
  const int64_t width = static_cast<int64_t>(lags.l.size()) * hid;
  const T* h = ptr<T>(hbuf);
  const T* r = ptr<T>(rm);
  T* o = ptr<T>(out);
  for_rows(batch, width, [&](int64_t b) {
    for (size_t k = 0; k < lags.l.size(); ++k) {
      const T* src = h + (lags.max + t - lags.l[k]) * hbuf.stride(0) + b * hid;
      T* dst = o + b * width + k * hid;
      const T* rk = r ? r + b * width + k * hid : nullptr;
      for (int64_t j = 0; j < hid; ++j) dst[j] = rk ? src[j] * rk[j] : src[j];
    }
  });
}

// h_lags of step t (B, K·H): a view of the history, or gathered into buf
template <typename T>
Tensor lag_input(const Tensor& hbuf, int64_t t, const Lags& lags, const Tensor& rm, Tensor& buf) {
  if (lags.plain) return hbuf.select(0, lags.max + t - 1);
  gather_lags<T>(hbuf, t, lags, rm, buf);
  return buf;
}

// h_lags of step t as a row pointer and row stride: the history slot itself, or gathered into buf
template <typename T>
std::pair<const T*, int64_t> lag_rows(const Tensor& hbuf, int64_t t, const Lags& lags, const Tensor& rm,
                                      Tensor& buf) {
  if (lags.plain) return {ptr<T>(hbuf) + (lags.max + t - 1) * hbuf.stride(0), hbuf.stride(1)};
  gather_lags<T>(hbuf, t, lags, rm, buf);
  return {ptr<T>(buf), buf.stride(0)};
}

// h_lags for every t (T, B, K·H), for the weight gradients
template <typename T>
Tensor all_lags(const Tensor& hbuf, int64_t steps, const Lags& lags, const Tensor& rm) {
  if (lags.plain) return hbuf.narrow(0, lags.max - 1, steps);
  const int64_t width = static_cast<int64_t>(lags.l.size()) * hbuf.size(2);
  Tensor out = big_empty({steps, hbuf.size(1), width}, hbuf.options());
  for (int64_t t = 0; t < steps; ++t) gather_lags<T>(hbuf, t, lags, rm, out.select(0, t));
  return out;
}

// Masked rows of step t keep the previous slot's state.
template <typename T>
void carry_masked(const Tensor& slots, int64_t i, const T* m, int64_t ms, int64_t t) {
  if (m == nullptr) return;
  const int64_t batch = slots.size(1), hid = slots.size(2);
  T* base = ptr<T>(slots);
  for (int64_t b = 0; b < batch; ++b) {
    if (real(m, ms, t, b)) continue;
    std::copy_n(base + (i - 1) * slots.stride(0) + b * hid, hid, base + i * slots.stride(0) + b * hid);
  }
}

// Σ_t dz_tᵀ x_t as one GEMM: (T, B, N), (T, B, M) -> (N, M), written into out
void weight_grad_out(Tensor out, const Tensor& dz, const Tensor& x) {
  at::mm_out(out, dz.reshape({-1, dz.size(-1)}).t(), x.reshape({-1, x.size(-1)}));
}

// dW (N, K·H) = Σ_t dz_tᵀ h_lags_t: without a recurrent mask one GEMM per lag straight from the
// history (lag block k reads the slots shifted by l_k), else over the gathered h_lags.
template <typename T>
void lag_weight_grad_out(Tensor dw, const Tensor& dz, const Tensor& hbuf, int64_t steps,
                         const Lags& lags, const Tensor& rm) {
  if (rm.defined()) {
    weight_grad_out(dw, dz, all_lags<T>(hbuf, steps, lags, rm));
    return;
  }
  const int64_t hid = hbuf.size(2);
  for (size_t k = 0; k < lags.l.size(); ++k)
    weight_grad_out(dw.narrow(1, static_cast<int64_t>(k) * hid, hid), dz,
                    hbuf.narrow(0, lags.max - lags.l[k], steps));
}

// Gradient of the lag history h_{-L} .. h_{T-1} in a ring of L+1 slots (B, H): the slot of time
// s is complete once every step that reads h_s has run.
template <typename T>
struct Ring {
  Tensor buf;
  T* base;  // buf's data, read once: row() runs per row and step, where data_ptr's checks add up
  int64_t lmax, batch, hid;

  Ring(const Tensor& dh_last, int64_t steps, int64_t lmax_)
      : buf(at::zeros({lmax_ + 1, dh_last.size(0), dh_last.size(1)}, dh_last.options())),
        base(buf.data_ptr<T>()), lmax(lmax_), batch(dh_last.size(0)), hid(dh_last.size(1)) {
    slot(steps - 1).copy_(dh_last);
  }
  int64_t index(int64_t s) const { return (s + lmax + 1) % (lmax + 1); }
  Tensor slot(int64_t s) { return buf.select(0, index(s)); }
  T* row(int64_t s, int64_t b) { return base + (index(s) * batch + b) * hid; }

  // Start step t: add the output gradient of its real rows to dL/dh_t.
  // dys (T, B, H) is read through its strides: the gradient of a sum is an expanded scalar, and a
  // contiguous copy would cost T·B·H numbers.
  void open(int64_t t, const Tensor& dys, const T* m, int64_t ms) {
    const int64_t sb = dys.stride(1), sj = dys.stride(2);
    const T* dy = ptr<T>(dys) + t * dys.stride(0);
    for_rows(batch, hid, [&](int64_t b) {
      if (!real(m, ms, t, b)) return;
      T* g = row(t, b);
      for (int64_t j = 0; j < hid; ++j) g[j] += dy[b * sb + j * sj];
    });
  }

  // A masked row passes its whole gradient to h_{t-1} (the state it carried).
  void carry(int64_t t, int64_t b) {
    T* g = row(t, b);
    T* prev = row(t - 1, b);
    for (int64_t j = 0; j < hid; ++j) prev[j] += g[j];
  }

  // Backprop dz (B, N) through z = h_lags @ Wᵀ into the history; dhl (B, K·H) is scratch.
  // dz (B, N) has unit column stride; w (N, K·H) is contiguous.
  void recurrent(int64_t t, const Tensor& dz, const Tensor& w, const Lags& lags, const Tensor& rm,
                 Tensor& dhl) {
    const int64_t n = w.size(0), kh = w.size(1);
    if (lags.plain) {
      gemm<T>(batch, kh, n, ptr<T>(dz), dz.stride(0), ptr<T>(w), kh, false, T(1), row(t - 1, 0), hid);
      return;
    }
    gemm<T>(batch, kh, n, ptr<T>(dz), dz.stride(0), ptr<T>(w), kh, false, T(0), ptr<T>(dhl), kh);
    spread(t, dhl, lags, rm);
  }

  // ring slots of h_{t-l} += dhl[:, k] * rm[:, k]
  void spread(int64_t t, const Tensor& dhl, const Lags& lags, const Tensor& rm) {
    const int64_t width = static_cast<int64_t>(lags.l.size()) * hid;
    const T* d = ptr<T>(dhl);
    const T* r = ptr<T>(rm);
    for_rows(batch, width, [&](int64_t b) {
      for (size_t k = 0; k < lags.l.size(); ++k) {
        T* dst = row(t - lags.l[k], b);
        const T* src = d + b * width + k * hid;
        const T* rk = r ? r + b * width + k * hid : nullptr;
        for (int64_t j = 0; j < hid; ++j) dst[j] += rk ? src[j] * rk[j] : src[j];
      }
    });
  }

  // Step t is done: its slot becomes that of time t-L-1, which starts at zero.
  void close(int64_t t) { std::fill_n(row(t, 0), batch * hid, T(0)); }

  // dL/dh0: every lag slot of the initial history reads h0.
  Tensor initial() { return buf.sum(0); }
};

// -- SimpleRNN: h_t = act(xw_t + h_lags Wᵀ) -------------------------------------------------------
template <typename T, typename A>
void simple_forward_loop(const Tensor& xw, const Tensor& w, const Tensor& m, const Tensor& rm,
                         const Lags& lags, A act, const Tensor& hbuf) {
  const int64_t steps = xw.size(0), batch = xw.size(1), hid = hbuf.size(2), kh = w.size(1);
  Tensor hl = lags.plain ? Tensor() : at::empty({batch, kh}, xw.options());
  const T* mp = ptr<T>(m);
  const int64_t ms = stride0(m), hs = hbuf.stride(0);
  for (int64_t t = 0; t < steps; ++t) {
    T* h = ptr<T>(hbuf) + (lags.max + t) * hs;
    const T* x = ptr<T>(xw) + t * xw.stride(0);
    const auto [hlp, ldh] = lag_rows<T>(hbuf, t, lags, rm, hl);
    gemm<T>(batch, hid, kh, hlp, ldh, ptr<T>(w), kh, true, T(0), h, hid);
    for_rows(batch, hid, [&](int64_t b) {
      T* hb = h + b * hid;
      if (!real(mp, ms, t, b)) {
        std::copy_n(hb - hs, hid, hb);  // a masked step carries h_{t-1}
        return;
      }
      const T* xb = x + b * hid;
      for (int64_t j = 0; j < hid; ++j) hb[j] = act_of(hb[j] + xb[j], act);
    });
  }
}

template <typename T>
Tensor simple_forward_impl(const Tensor& xw, const Tensor& h0, const Tensor& w, const Tensor& m,
                           const Tensor& rm, const Lags& lags, int64_t act, bool split) {
  Tensor hbuf = history(h0, xw.size(0), lags.max);
  with_acts(act, kSigmoid, [&](auto a, auto) {
    over_batch(xw.size(1), split, [&](int64_t b0, int64_t n) {
      simple_forward_loop<T>(rows_of(xw, 1, b0, n), w, rows_of(m, 1, b0, n), rows_of(rm, 0, b0, n),
                             lags, a, rows_of(hbuf, 1, b0, n));
    });
  });
  return hbuf;
}

// The time loop of one chunk of rows: fills dz, returns dL/dh0.
template <typename T, typename A>
Tensor simple_backward_loop(const Tensor& dys, const Tensor& dh_last, const Tensor& hbuf,
                            const Tensor& w, const Tensor& m, const Tensor& rm, const Lags& lags,
                            A act, const Tensor& dz) {
  const int64_t steps = dys.size(0), batch = dys.size(1), hid = dys.size(2);
  Ring<T> ring(dh_last, steps, lags.max);
  Tensor dhl = lags.plain ? Tensor() : at::empty({batch, hid * (int64_t)lags.l.size()}, dys.options());
  const T* mp = ptr<T>(m);
  const int64_t ms = stride0(m);
  for (int64_t t = steps - 1; t >= 0; --t) {
    ring.open(t, dys, mp, ms);
    const T* h = ptr<T>(hbuf) + (lags.max + t) * hbuf.stride(0);
    T* d = ptr<T>(dz) + t * dz.stride(0);
    for_rows(batch, hid, [&](int64_t b) {
      T* db = d + b * hid;
      if (!real(mp, ms, t, b)) {
        ring.carry(t, b);
        std::fill_n(db, hid, T(0));
        return;
      }
      const T* g = ring.row(t, b);
      const T* hb = h + b * hid;
      for (int64_t j = 0; j < hid; ++j) db[j] = g[j] * deriv(hb[j], act);
    });
    ring.recurrent(t, dz.select(0, t), w, lags, rm, dhl);
    ring.close(t);
  }
  return ring.initial();
}

template <typename T>
std::tuple<Tensor, Tensor, Tensor> simple_backward_impl(
    const Tensor& dys, const Tensor& dh_last, const Tensor& hbuf, const Tensor& w, const Tensor& m,
    const Tensor& rm, const Lags& lags, int64_t act, bool split) {
  Tensor dz = big_empty(dys.sizes(), dys.options()), dh0 = at::empty_like(dh_last);
  with_acts(act, kSigmoid, [&](auto a, auto) {
    over_batch(dys.size(1), split, [&](int64_t b0, int64_t n) {
      dh0.narrow(0, b0, n).copy_(simple_backward_loop<T>(
          rows_of(dys, 1, b0, n), rows_of(dh_last, 0, b0, n), rows_of(hbuf, 1, b0, n), w,
          rows_of(m, 1, b0, n), rows_of(rm, 0, b0, n), lags, a, rows_of(dz, 1, b0, n)));
    });
  });
  Tensor dw = at::empty_like(w);
  lag_weight_grad_out<T>(dw, dz, hbuf, dys.size(0), lags, rm);
  return {dz, dh0, dw};
}

// -- LSTM: gates i, f, g, o (coupled: f, g, o); peepholes on C_{t-1} (i, f) and C_t (o) ----------
struct LSTMConfig {
  int64_t act, ract;
  bool coupled;
  int64_t peephole;  // 0 none, 1 full (P·H, H) matrices, 2 diagonal (P·H,) vectors
  int64_t hid, gates;
  int64_t prev() const { return (coupled ? 1 : 2) * hid; }  // columns of the gates that see C_{t-1}
  int64_t cand() const { return (coupled ? 1 : 2) * hid; }  // first column of g
  int64_t out() const { return (gates - 1) * hid; }         // first column of o
};

// z[:, cols of P gates] += diagonal peephole weight * c, for each row
template <typename T>
void peep_diag_(Tensor z, int64_t col, const Tensor& c, const Tensor& weight) {
  const int64_t batch = c.size(0), hid = c.size(1), width = z.size(1);
  const int64_t count = weight.size(0);
  T* zp = ptr<T>(z);
  const T* cp = ptr<T>(c);
  const T* wp = ptr<T>(weight);
  for_rows(batch, count, [&](int64_t b) {
    const T* cb = cp + b * hid;
    for (int64_t q = 0; q < count; q += hid) {
      T* zb = zp + b * width + col + q;
      for (int64_t j = 0; j < hid; ++j) zb[j] += wp[q + j] * cb[j];
    }
  });
}

// z[:, col:col+P·H] += peephole(c)
template <typename T>
void peep_(Tensor z, int64_t col, const Tensor& c, const Tensor& weight, int64_t mode) {
  if (mode == 1) {
    z.narrow(1, col, weight.size(0)).addmm_(c, weight.t());
  } else {
    peep_diag_<T>(z, col, c, weight);
  }
}

// With peepholes, whose products sit between the gates: a (T, B, G·H) holds the projected inputs on
// entry and the gate activations on return.
template <typename T>
void lstm_forward_loop(const Tensor& a, const Tensor& w, const Tensor& pp, const Tensor& po,
                       const Tensor& m, const Tensor& rm, const Lags& lags, const LSTMConfig& cfg,
                       const Tensor& hbuf, const Tensor& cbuf) {
  const Tensor& xw = a;
  const int64_t steps = xw.size(0), batch = xw.size(1), gh = xw.size(2), hid = cfg.hid;
  Tensor tc = at::empty({batch, hid}, xw.options());
  Tensor hl = lags.plain ? Tensor() : at::empty({batch, hid * (int64_t)lags.l.size()}, xw.options());
  const Tensor wt = w.t();
  const T* mp = ptr<T>(m);
  const int64_t ms = stride0(m);
  const int64_t ci = cfg.cand(), oi = cfg.out();
  for (int64_t t = 0; t < steps; ++t) {
    Tensor at_ = a.select(0, t), c_prev = cbuf.select(0, t), c_new = cbuf.select(0, t + 1);
    at_.addmm_(lag_input<T>(hbuf, t, lags, rm, hl), wt);  // a is xw: the gates replace it in place
    if (cfg.peephole) peep_<T>(at_, 0, c_prev, pp, cfg.peephole);
    activate_<T>(at_.narrow(1, 0, ci), cfg.ract);
    activate_<T>(at_.narrow(1, ci, hid), cfg.act);
    if (!cfg.peephole) activate_<T>(at_.narrow(1, oi, hid), cfg.ract);
    const T* ap = ptr<T>(at_);
    const T* cpp = ptr<T>(c_prev);
    T* cn = ptr<T>(c_new);
    for_rows(batch, hid, [&](int64_t b) {
      const T* ab = ap + b * gh;
      const T* cb = cpp + b * hid;
      T* nb = cn + b * hid;
      if (cfg.coupled) {  // c = f c_prev + (1 - f) g
        for (int64_t j = 0; j < hid; ++j) nb[j] = ab[j] * cb[j] + (T(1) - ab[j]) * ab[hid + j];
      } else {  // c = f c_prev + i g
        for (int64_t j = 0; j < hid; ++j) nb[j] = ab[hid + j] * cb[j] + ab[j] * ab[2 * hid + j];
      }
    });
    activate_out<T>(tc, c_new, cfg.act);
    if (cfg.peephole) {
      peep_<T>(at_, oi, c_new, po, cfg.peephole);
      activate_<T>(at_.narrow(1, oi, hid), cfg.ract);
    }
    const T* tcp = ptr<T>(tc);
    T* hp = ptr<T>(hbuf) + (lags.max + t) * hbuf.stride(0);
    for_rows(batch, hid, [&](int64_t b) {
      for (int64_t j = 0; j < hid; ++j) hp[b * hid + j] = ap[b * gh + oi + j] * tcp[b * hid + j];
    });
    carry_masked<T>(cbuf, t + 1, mp, ms, t);
    carry_masked<T>(hbuf, lags.max + t, mp, ms, t);
  }
}

// x[j] <- act(x[j]) for j < n. The loops below take restrict pointers to distinct gate blocks, so
// the compiler vectorises them (activations included: fast_exp).
template <typename T, typename A>
inline void act_rows(T* __restrict x, int64_t n, A act) {
  for (int64_t j = 0; j < n; ++j) x[j] = act_of(x[j], act);
}

// c = f c_prev + i g, h = o act(c) for one row
template <typename T, typename A>
inline void lstm_cell_row(const T* __restrict i, const T* __restrict f, const T* __restrict g,
                          const T* __restrict o, const T* __restrict c_prev, T* __restrict c,
                          T* __restrict h, int64_t n, A act) {
  for (int64_t j = 0; j < n; ++j) {
    const T cj = f[j] * c_prev[j] + i[j] * g[j];
    c[j] = cj;
    h[j] = o[j] * act_of(cj, act);
  }
}

// c = f c_prev + (1 - f) g, h = o act(c) for one row
template <typename T, typename A>
inline void coupled_cell_row(const T* __restrict f, const T* __restrict g, const T* __restrict o,
                             const T* __restrict c_prev, T* __restrict c, T* __restrict h, int64_t n,
                             A act) {
  for (int64_t j = 0; j < n; ++j) {
    const T cj = f[j] * c_prev[j] + (T(1) - f[j]) * g[j];
    c[j] = cj;
    h[j] = o[j] * act_of(cj, act);
  }
}

// Without peepholes: per step one GEMM onto a (which holds xw) and one pass over each row that
// activates the gates in place and writes c_t and h_t. Masked rows still get finite gates (backward
// multiplies them by zero) and carry c and h.
template <typename T, typename A, typename R>
void lstm_forward_fused(const Tensor& a, const Tensor& w, const Tensor& m, const Tensor& rm,
                        const Lags& lags, const LSTMConfig& cfg, A act, R ract, const Tensor& hbuf,
                        const Tensor& cbuf) {
  const int64_t steps = a.size(0), batch = a.size(1), gh = a.size(2), hid = cfg.hid, kh = w.size(1);
  Tensor hl = lags.plain ? Tensor() : at::empty({batch, kh}, a.options());
  const T* mp = ptr<T>(m);
  const int64_t ms = stride0(m), hs = hbuf.stride(0), cs = cbuf.stride(0), as = a.stride(0);
  const bool coupled = cfg.coupled;
  for (int64_t t = 0; t < steps; ++t) {
    T* at_ = ptr<T>(a) + t * as;
    const auto [hlp, ldh] = lag_rows<T>(hbuf, t, lags, rm, hl);
    gemm<T>(batch, gh, kh, hlp, ldh, ptr<T>(w), kh, true, T(1), at_, gh);
    T* hp = ptr<T>(hbuf) + (lags.max + t) * hs;
    T* cn = ptr<T>(cbuf) + (t + 1) * cs;
    for_rows(batch, gh, [&](int64_t b) {
      T* ab = at_ + b * gh;
      const T* cb = cn - cs + b * hid;
      T* nb = cn + b * hid;
      T* hb = hp + b * hid;
      const int64_t ci = coupled ? hid : 2 * hid, oi = ci + hid;  // first columns of g and o
      act_rows(ab, ci, ract);
      act_rows(ab + ci, hid, act);
      act_rows(ab + oi, hid, ract);
      if (coupled) {  // gates f, g, o: c = f c_prev + (1 - f) g
        coupled_cell_row(ab, ab + ci, ab + oi, cb, nb, hb, hid, act);
      } else {  // gates i, f, g, o: c = f c_prev + i g
        lstm_cell_row(ab, ab + hid, ab + ci, ab + oi, cb, nb, hb, hid, act);
      }
      if (!real(mp, ms, t, b)) {  // a masked step carries c and h
        std::copy_n(cb, hid, nb);
        std::copy_n(hb - hs, hid, hb);
      }
    });
  }
}

// The gate activations overwrite xw in place (no second (T, B, G·H) buffer); -> hbuf, cbuf
template <typename T>
std::tuple<Tensor, Tensor> lstm_forward_impl(
    const Tensor& xw, const Tensor& h0, const Tensor& c0, const Tensor& w, const Tensor& pp,
    const Tensor& po, const Tensor& m, const Tensor& rm, const Lags& lags, const LSTMConfig& cfg,
    bool split) {
  const int64_t steps = xw.size(0);
  Tensor hbuf = history(h0, steps, lags.max), cbuf = history(c0, steps, 1);
  if (!cfg.peephole) {
    with_acts(cfg.act, cfg.ract, [&](auto act, auto ract) {
      over_batch(xw.size(1), split, [&](int64_t b0, int64_t n) {
        lstm_forward_fused<T>(rows_of(xw, 1, b0, n), w, rows_of(m, 1, b0, n), rows_of(rm, 0, b0, n),
                              lags, cfg, act, ract, rows_of(hbuf, 1, b0, n), rows_of(cbuf, 1, b0, n));
      });
    });
    return {hbuf, cbuf};
  }
  over_batch(xw.size(1), split, [&](int64_t b0, int64_t n) {
    lstm_forward_loop<T>(rows_of(xw, 1, b0, n), w, pp, po, rows_of(m, 1, b0, n), rows_of(rm, 0, b0, n),
                         lags, cfg, rows_of(hbuf, 1, b0, n), rows_of(cbuf, 1, b0, n));
  });
  return {hbuf, cbuf};
}

// Σ_{t,b} dz[t, b, col + p] · c[t, b, p mod H]: the diagonal peephole weight gradient (P·H,)
template <typename T>
Tensor peep_diag_grad(const Tensor& dz, int64_t col, const Tensor& c, int64_t count) {
  const int64_t rows = dz.size(0) * dz.size(1), width = dz.size(2), hid = c.size(2);
  Tensor out = at::zeros({count}, dz.options());
  T* o = ptr<T>(out);
  const T* d = ptr<T>(dz);
  const T* cp = ptr<T>(c);
  for (int64_t r = 0; r < rows; ++r) {
    const T* cr = cp + r * hid;
    for (int64_t q = 0; q < count; q += hid) {
      const T* dr = d + r * width + col + q;
      for (int64_t j = 0; j < hid; ++j) o[q + j] += dr[j] * cr[j];
    }
  }
  return out;
}

template <typename T>
Tensor peep_grad(const Tensor& dz, int64_t col, const Tensor& c, const Tensor& weight, int64_t mode) {
  if (mode == 1) {
    Tensor out = at::empty_like(weight);
    weight_grad_out(out, dz.narrow(2, col, weight.size(0)), c);
    return out;
  }
  return peep_diag_grad<T>(dz, col, c, weight.size(0));
}

// One row of the LSTM backward without peepholes, gates i, f, g, o and c_{t-1}, c_t of step t:
// from dh = dL/dh_t and dc = dL/dc_t (from step t+1; becomes dL/dc_{t-1}) writes the gradients of
// the gates' pre-activations.
template <typename T, typename A, typename R>
inline void lstm_back_row(const T* __restrict i, const T* __restrict f, const T* __restrict g,
                          const T* __restrict o, const T* __restrict c_prev, const T* __restrict c,
                          const T* __restrict dh, T* __restrict dc, T* __restrict di, T* __restrict df,
                          T* __restrict dg, T* __restrict d_o, int64_t n, A act, R ract) {
  for (int64_t j = 0; j < n; ++j) {
    const T tc = act_of(c[j], act);  // act(c_t), recomputed rather than stored
    d_o[j] = dh[j] * tc * deriv(o[j], ract);
    const T dcj = dc[j] + dh[j] * o[j] * deriv(tc, act);
    di[j] = dcj * g[j] * deriv(i[j], ract);
    df[j] = dcj * c_prev[j] * deriv(f[j], ract);
    dg[j] = dcj * i[j] * deriv(g[j], act);
    dc[j] = dcj * f[j];
  }
}

// The same for the coupled gate, gates f, g, o: c_t = f c_{t-1} + (1 - f) g.
template <typename T, typename A, typename R>
inline void coupled_back_row(const T* __restrict f, const T* __restrict g, const T* __restrict o,
                             const T* __restrict c_prev, const T* __restrict c,
                             const T* __restrict dh, T* __restrict dc, T* __restrict df,
                             T* __restrict dg, T* __restrict d_o, int64_t n, A act, R ract) {
  for (int64_t j = 0; j < n; ++j) {
    const T tc = act_of(c[j], act);
    d_o[j] = dh[j] * tc * deriv(o[j], ract);
    const T dcj = dc[j] + dh[j] * o[j] * deriv(tc, act);
    df[j] = dcj * (c_prev[j] - g[j]) * deriv(f[j], ract);
    dg[j] = dcj * (T(1) - f[j]) * deriv(g[j], act);
    dc[j] = dcj * f[j];
  }
}

// The time loop of one chunk of rows: fills dz, returns dL/dh0 and dL/dc0.
template <typename T, typename A, typename R>
std::tuple<Tensor, Tensor> lstm_backward_loop(
    const Tensor& dys, const Tensor& dh_last, const Tensor& dc_last, const Tensor& a,
    const Tensor& cbuf, const Tensor& w, const Tensor& pp, const Tensor& po, const Tensor& m,
    const Tensor& rm, const Lags& lags, const LSTMConfig& cfg, A act, R ract, const Tensor& dz) {
  const int64_t steps = a.size(0), batch = a.size(1), gh = a.size(2), hid = cfg.hid;
  const int64_t ci = cfg.cand(), oi = cfg.out(), np = cfg.prev();
  Ring<T> ring(dh_last, steps, lags.max);
  Tensor dc = dc_last.clone();  // dL/dc_t, carried back step by step
  Tensor tc = at::empty({batch, hid}, a.options());
  Tensor dco = cfg.peephole == 1 ? at::empty({batch, hid}, a.options()) : Tensor();
  Tensor dhl = lags.plain ? Tensor() : at::empty({batch, hid * (int64_t)lags.l.size()}, a.options());
  const T* mp = ptr<T>(m);
  const int64_t ms = stride0(m);
  const T* ppp = cfg.peephole == 2 ? ptr<T>(pp) : nullptr;
  const T* pop = cfg.peephole == 2 ? ptr<T>(po) : nullptr;
  T* dcp = ptr<T>(dc);
  for (int64_t t = steps - 1; t >= 0; --t) {
    ring.open(t, dys, mp, ms);
    Tensor dzt = dz.select(0, t);
    const T* ab0 = ptr<T>(a) + t * a.stride(0);
    const T* cprev = ptr<T>(cbuf) + t * cbuf.stride(0);
    const T* cnow = cprev + cbuf.stride(0);
    T* tcp = ptr<T>(tc);
    T* dz0 = ptr<T>(dzt);
    if (!cfg.peephole) {  // one pass over each row
      for_rows(batch, gh, [&](int64_t b) {
        T* d = dz0 + b * gh;
        if (!real(mp, ms, t, b)) {  // all of its gradient goes to the carried state
          ring.carry(t, b);
          std::fill_n(d, gh, T(0));
          return;
        }
        const T* ab = ab0 + b * gh;
        const T *cb = cprev + b * hid, *cn = cnow + b * hid, *g = ring.row(t, b);
        if (cfg.coupled) {
          coupled_back_row(ab, ab + ci, ab + oi, cb, cn, g, dcp + b * hid, d, d + ci, d + oi, hid, act,
                           ract);
        } else {
          lstm_back_row(ab, ab + hid, ab + ci, ab + oi, cb, cn, g, dcp + b * hid, d, d + hid, d + ci,
                        d + oi, hid, act, ract);
        }
      });
      ring.recurrent(t, dzt, w, lags, rm, dhl);
      ring.close(t);
      continue;
    }
    // with peepholes: the output gate, and the masked rows (all of their gradient goes to the
    // carried state)
    for_rows(batch, gh, [&](int64_t b) {
      T* d = dz0 + b * gh;
      if (!real(mp, ms, t, b)) {
        ring.carry(t, b);
        std::fill_n(d, gh, T(0));
        return;
      }
      const T* g = ring.row(t, b);
      const T* ab = ab0 + b * gh;
      const T* cb = cnow + b * hid;
      T* tb = tcp + b * hid;
      for (int64_t j = 0; j < hid; ++j) {
        tb[j] = act_of(cb[j], act);  // act(c_t), recomputed rather than stored
        d[oi + j] = g[j] * tb[j] * deriv(ab[oi + j], ract);
      }
    });
    if (cfg.peephole == 1) at::mm_out(dco, dzt.narrow(1, oi, hid), po);
    const T* dcop = ptr<T>(dco);
    for_rows(batch, gh, [&](int64_t b) {
      if (!real(mp, ms, t, b)) return;  // dc of a masked row passes to c_{t-1} unchanged
      const T* g = ring.row(t, b);
      const T* ab = ab0 + b * gh;
      const T* cb = cprev + b * hid;
      T* d = dz0 + b * gh;
      T* dcb = dcp + b * hid;
      for (int64_t j = 0; j < hid; ++j) {
        const T tcj = tcp[b * hid + j];
        T dcj = dcb[j] + g[j] * ab[oi + j] * deriv(tcj, act);
        if (dcop) dcj += dcop[b * hid + j];
        if (pop) dcj += d[oi + j] * pop[j];
        const T gg = ab[ci + j], dg = deriv(gg, act);
        if (cfg.coupled) {
          const T f = ab[j];
          d[j] = dcj * (cb[j] - gg) * deriv(f, ract);
          d[ci + j] = dcj * (T(1) - f) * dg;
          dcb[j] = dcj * f + (ppp ? d[j] * ppp[j] : T(0));
        } else {
          const T i = ab[j], f = ab[hid + j];
          d[j] = dcj * gg * deriv(i, ract);
          d[hid + j] = dcj * cb[j] * deriv(f, ract);
          d[ci + j] = dcj * i * dg;
          dcb[j] = dcj * f + (ppp ? d[j] * ppp[j] + d[hid + j] * ppp[hid + j] : T(0));
        }
      }
    });
    if (cfg.peephole == 1) dc.addmm_(dzt.narrow(1, 0, np), pp);
    ring.recurrent(t, dzt, w, lags, rm, dhl);
    ring.close(t);
  }
  return {ring.initial(), dc};
}

template <typename T>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward_impl(
    const Tensor& dys, const Tensor& dh_last, const Tensor& dc_last, const Tensor& a,
    const Tensor& hbuf, const Tensor& cbuf, const Tensor& w, const Tensor& pp, const Tensor& po,
    const Tensor& m, const Tensor& rm, const Lags& lags, const LSTMConfig& cfg, bool split) {
  const int64_t steps = a.size(0), oi = cfg.out();
  Tensor dz = big_empty(a.sizes(), a.options());
  Tensor dh0 = at::empty_like(dh_last), dc0 = at::empty_like(dc_last);
  with_acts(cfg.act, cfg.ract, [&](auto act, auto ract) {
    over_batch(a.size(1), split, [&](int64_t b0, int64_t n) {
      auto [dh, dc] = lstm_backward_loop<T>(
          rows_of(dys, 1, b0, n), rows_of(dh_last, 0, b0, n), rows_of(dc_last, 0, b0, n),
          rows_of(a, 1, b0, n), rows_of(cbuf, 1, b0, n), w, pp, po, rows_of(m, 1, b0, n),
          rows_of(rm, 0, b0, n), lags, cfg, act, ract, rows_of(dz, 1, b0, n));
      dh0.narrow(0, b0, n).copy_(dh);
      dc0.narrow(0, b0, n).copy_(dc);
    });
  });
  Tensor dw = at::empty_like(w);
  lag_weight_grad_out<T>(dw, dz, hbuf, steps, lags, rm);
  Tensor dpp, dpo;
  if (cfg.peephole) {
    dpp = peep_grad<T>(dz, 0, cbuf.narrow(0, 0, steps), pp, cfg.peephole);
    dpo = peep_grad<T>(dz, oi, cbuf.narrow(0, 1, steps), po, cfg.peephole);
  }
  return {dz, dh0, dc0, dw, dpp, dpo};
}

// -- GRU, gates r, z, n --------------------------------------------------------------------------
// reset_after: n = act(xw_n + r (h_lags W_nᵀ + b_n)); keeps a = [r, z, n] (T, B, 3H) and
//              extra = h_lags W_nᵀ + b_n (T, B, H).
// reset_before: n = act(xw_n + (r h_lags) W_nᵀ); keeps a = [r, z] (T, B, 2H) and extra = n (T, B, H).
// Both: h = (1 - z) n + z h_{t-1}.

// h_t rows from z and n, for one step; z at column zc of a row of width za, n likewise
template <typename T>
void interpolate(T* h, const T* h_prev, const T* za, int64_t zw, int64_t zc, const T* na, int64_t nw,
                 int64_t nc, int64_t batch, int64_t hid) {
  for_rows(batch, hid, [&](int64_t b) {
    for (int64_t j = 0; j < hid; ++j) {
      const T z = za[b * zw + zc + j], n = na[b * nw + nc + j];
      h[b * hid + j] = n + z * (h_prev[b * hid + j] - n);
    }
  });
}

// One row of a GRU step (reset after the matmul) from x = xw_t, rec = h_lags Wᵀ and b = b_hh, each
// [r, z, n] wide: writes a = [r, z, n], ghn = rec_n + b_n and h_t.
template <typename T, typename A, typename R>
inline void gru_row(const T* __restrict x, const T* __restrict rec, const T* __restrict b,
                    const T* __restrict h_prev, T* __restrict a, T* __restrict ghn, T* __restrict h,
                    int64_t hid, A act, R ract) {
  for (int64_t j = 0; j < hid; ++j) {
    const T r = act_of(x[j] + rec[j] + b[j], ract);
    const T z = act_of(x[hid + j] + rec[hid + j] + b[hid + j], ract);
    const T rn = rec[2 * hid + j] + b[2 * hid + j];
    const T n = act_of(x[2 * hid + j] + r * rn, act);
    a[j] = r;
    a[hid + j] = z;
    a[2 * hid + j] = n;
    ghn[j] = rn;
    h[j] = n + z * (h_prev[j] - n);
  }
}

// Inference rows: z holds x_t W_ihᵀ (+ h W_hhᵀ for SimpleRNN and LSTM), b the input bias; the state
// h (and c) is updated in place and h_t also written to y.
template <typename T, typename A>
inline void simple_infer_row(const T* __restrict z, const T* __restrict b, T* __restrict h,
                             T* __restrict y, int64_t hid, A act) {
  for (int64_t j = 0; j < hid; ++j) {
    const T v = act_of(z[j] + b[j], act);
    h[j] = v;
    y[j] = v;
  }
}

template <typename T, typename A, typename R>
inline void lstm_infer_row(const T* __restrict z, const T* __restrict b, T* __restrict c,
                           T* __restrict h, T* __restrict y, int64_t hid, A act, R ract) {
  for (int64_t j = 0; j < hid; ++j) {
    const T i = act_of(z[j] + b[j], ract), f = act_of(z[hid + j] + b[hid + j], ract);
    const T g = act_of(z[2 * hid + j] + b[2 * hid + j], act);
    const T o = act_of(z[3 * hid + j] + b[3 * hid + j], ract);
    const T cj = f * c[j] + i * g;
    c[j] = cj;
    const T v = o * act_of(cj, act);
    h[j] = v;
    y[j] = v;
  }
}

// GRU, reset after the matmul: rec = h W_hhᵀ, bh = b_hh
template <typename T, typename A, typename R>
inline void gru_infer_row(const T* __restrict z, const T* __restrict b, const T* __restrict rec,
                          const T* __restrict bh, T* __restrict h, T* __restrict y, int64_t hid, A act,
                          R ract) {
  for (int64_t j = 0; j < hid; ++j) {
    const T r = act_of(z[j] + b[j] + rec[j] + bh[j], ract);
    const T u = act_of(z[hid + j] + b[hid + j] + rec[hid + j] + bh[hid + j], ract);
    const T n = act_of(z[2 * hid + j] + b[2 * hid + j] + r * (rec[2 * hid + j] + bh[2 * hid + j]), act);
    const T v = n + u * (h[j] - n);
    h[j] = v;
    y[j] = v;
  }
}

// Per step one GEMM into rec (B, 3H) and one pass over each row for the gates, n and h_t.
template <typename T, typename A, typename R>
void gru_after_forward_loop(const Tensor& xw, const Tensor& w, const Tensor& bias, const Tensor& m,
                            const Tensor& rm, const Lags& lags, A act, R ract, const Tensor& a,
                            const Tensor& ghn, const Tensor& hbuf) {
  const int64_t steps = xw.size(0), batch = xw.size(1), hid = hbuf.size(2), gh = 3 * hid;
  const int64_t kh = w.size(1);
  Tensor rec = at::empty({batch, gh}, xw.options());  // h_lags Wᵀ of one step
  Tensor hl = lags.plain ? Tensor() : at::empty({batch, kh}, xw.options());
  const Tensor b_hh = bias.defined() ? bias : at::zeros({gh}, xw.options());  // no branch per number
  const T* bp = ptr<T>(b_hh);
  const T* mp = ptr<T>(m);
  const int64_t ms = stride0(m), hs = hbuf.stride(0);
  T* rp = ptr<T>(rec);
  for (int64_t t = 0; t < steps; ++t) {
    const auto [hlp, ldh] = lag_rows<T>(hbuf, t, lags, rm, hl);
    gemm<T>(batch, gh, kh, hlp, ldh, ptr<T>(w), kh, true, T(0), rp, gh);
    T* ap = ptr<T>(a) + t * a.stride(0);
    const T* xp = ptr<T>(xw) + t * xw.stride(0);
    T* np = ptr<T>(ghn) + t * ghn.stride(0);
    T* h = ptr<T>(hbuf) + (lags.max + t) * hs;
    for_rows(batch, gh, [&](int64_t b) {
      T* ab = ap + b * gh;
      const T* xb = xp + b * gh;
      const T* rb = rp + b * gh;
      const T* hp = h - hs + b * hid;
      T* hb = h + b * hid;
      T* nb = np + b * hid;
      gru_row(xb, rb, bp, hp, ab, nb, hb, hid, act, ract);
      if (!real(mp, ms, t, b)) std::copy_n(hp, hid, hb);  // a masked step carries h_{t-1}
    });
  }
}

template <typename T>
std::tuple<Tensor, Tensor, Tensor> gru_after_forward(
    const Tensor& xw, const Tensor& h0, const Tensor& w, const Tensor& bias, const Tensor& m,
    const Tensor& rm, const Lags& lags, int64_t act, int64_t ract, bool split) {
  const int64_t steps = xw.size(0), batch = xw.size(1), hid = h0.size(1);
  Tensor hbuf = history(h0, steps, lags.max);
  Tensor a = big_empty(xw.sizes(), xw.options()), ghn = big_empty({steps, batch, hid}, xw.options());
  with_acts(act, ract, [&](auto fa, auto fr) {
    over_batch(batch, split, [&](int64_t b0, int64_t n) {
      gru_after_forward_loop<T>(rows_of(xw, 1, b0, n), w, bias, rows_of(m, 1, b0, n),
                                rows_of(rm, 0, b0, n), lags, fa, fr, rows_of(a, 1, b0, n),
                                rows_of(ghn, 1, b0, n), rows_of(hbuf, 1, b0, n));
    });
  });
  return {a, ghn, hbuf};
}

// One row of the GRU backward (reset after the matmul): from a = [r, z, n], ghn, h_{t-1} and
// dh = dL/dh_t writes dx (the gradient of xw_t) and drec (of h_lags Wᵀ + b_hh), and adds the direct
// part z dh to dh_prev.
template <typename T, typename A, typename R>
inline void gru_back_row(const T* __restrict a, const T* __restrict ghn, const T* __restrict h_prev,
                         const T* __restrict dh, T* __restrict dh_prev, T* __restrict dx,
                         T* __restrict drec, int64_t hid, A act, R ract) {
  for (int64_t j = 0; j < hid; ++j) {
    const T r = a[j], z = a[hid + j], n = a[2 * hid + j], gj = dh[j];
    const T dn = gj * (T(1) - z) * deriv(n, act);
    const T dzp = gj * (h_prev[j] - n) * deriv(z, ract);
    const T drp = dn * ghn[j] * deriv(r, ract);
    dx[j] = drp;
    dx[hid + j] = dzp;
    dx[2 * hid + j] = dn;
    drec[j] = drp;
    drec[hid + j] = dzp;
    drec[2 * hid + j] = dn * r;
    dh_prev[j] += gj * z;
  }
}

// The time loop of one chunk of rows: fills dxw, returns dL/dh0.
template <typename T, typename A, typename R>
Tensor gru_after_backward_loop(const Tensor& dys, const Tensor& dh_last, const Tensor& a,
                               const Tensor& ghn, const Tensor& hbuf, const Tensor& w, const Tensor& m,
                               const Tensor& rm, const Lags& lags, A act, R ract,
                               const Tensor& dxw) {
  const int64_t steps = a.size(0), batch = a.size(1), hid = dys.size(2), gh = 3 * hid;
  Ring<T> ring(dh_last, steps, lags.max);
  Tensor drec = at::empty({batch, gh}, a.options());  // gradient of h_lags Wᵀ + b_hh, one step
  Tensor dhl = lags.plain ? Tensor() : at::empty({batch, hid * (int64_t)lags.l.size()}, a.options());
  const T* mp = ptr<T>(m);
  const int64_t ms = stride0(m);
  T* dr = ptr<T>(drec);
  for (int64_t t = steps - 1; t >= 0; --t) {
    ring.open(t, dys, mp, ms);
    const T* ab0 = ptr<T>(a) + t * a.stride(0);
    const T* gn0 = ptr<T>(ghn) + t * ghn.stride(0);
    const T* hp0 = ptr<T>(hbuf) + (lags.max + t - 1) * hbuf.stride(0);
    T* dx0 = ptr<T>(dxw) + t * dxw.stride(0);
    for_rows(batch, gh, [&](int64_t b) {
      T* dx = dx0 + b * gh;
      T* drb = dr + b * gh;
      if (!real(mp, ms, t, b)) {
        ring.carry(t, b);
        std::fill_n(dx, gh, T(0));
        std::fill_n(drb, gh, T(0));
        return;
      }
      gru_back_row(ab0 + b * gh, gn0 + b * hid, hp0 + b * hid, ring.row(t, b), ring.row(t - 1, b), dx,
                   drb, hid, act, ract);
    });
    ring.recurrent(t, drec, w, lags, rm, dhl);
    ring.close(t);
  }
  return ring.initial();
}

template <typename T>
std::tuple<Tensor, Tensor, Tensor, Tensor> gru_after_backward(
    const Tensor& dys, const Tensor& dh_last, const Tensor& a, const Tensor& ghn, const Tensor& hbuf,
    const Tensor& w, bool has_bias, const Tensor& m, const Tensor& rm, const Lags& lags, int64_t act,
    int64_t ract, bool split) {
  const int64_t steps = a.size(0), hid = dys.size(2);
  Tensor dxw = big_empty(a.sizes(), a.options()), dh0 = at::empty_like(dh_last);
  with_acts(act, ract, [&](auto fa, auto fr) {
    over_batch(a.size(1), split, [&](int64_t b0, int64_t n) {
      dh0.narrow(0, b0, n).copy_(gru_after_backward_loop<T>(
          rows_of(dys, 1, b0, n), rows_of(dh_last, 0, b0, n), rows_of(a, 1, b0, n),
          rows_of(ghn, 1, b0, n), rows_of(hbuf, 1, b0, n), w, rows_of(m, 1, b0, n),
          rows_of(rm, 0, b0, n), lags, fa, fr, rows_of(dxw, 1, b0, n)));
    });
  });
  // the recurrent pre-activation's gradient differs from dxw only in n: dn · r
  Tensor dn_rec = dxw.narrow(2, 2 * hid, hid) * a.narrow(2, 0, hid);  // (T, B, H)
  Tensor hl_all = all_lags<T>(hbuf, steps, lags, rm);
  Tensor dw = at::empty_like(w);
  weight_grad_out(dw.narrow(0, 0, 2 * hid), dxw.narrow(2, 0, 2 * hid), hl_all);
  weight_grad_out(dw.narrow(0, 2 * hid, hid), dn_rec, hl_all);
  Tensor db;
  if (has_bias) {
    db = at::cat({dxw.narrow(2, 0, 2 * hid).sum({0, 1}), dn_rec.sum({0, 1})});
  }
  return {dxw, dh0, dw, db};
}

// r_rep * h_lags: (B, K·H) rows from r (column 0 of a row of width rw) and h_lags
template <typename T>
void reset_lags(T* out, const T* ra, int64_t rw, const T* hl, int64_t batch, int64_t hid, int64_t nl) {
  for_rows(batch, nl * hid, [&](int64_t b) {
    for (int64_t k = 0; k < nl; ++k) {
      for (int64_t j = 0; j < hid; ++j) {
        out[(b * nl + k) * hid + j] = ra[b * rw + j] * hl[(b * nl + k) * hid + j];
      }
    }
  });
}

template <typename T>
void gru_before_forward_loop(const Tensor& xw, const Tensor& w, const Tensor& m, const Tensor& rm,
                             const Lags& lags, int64_t act, int64_t ract, const Tensor& arz,
                             const Tensor& an, const Tensor& hbuf) {
  const int64_t steps = xw.size(0), batch = xw.size(1), hid = hbuf.size(2);
  const int64_t nl = static_cast<int64_t>(lags.l.size());
  Tensor rh = at::empty({batch, nl * hid}, xw.options());
  Tensor hl = lags.plain ? Tensor() : at::empty({batch, nl * hid}, xw.options());
  const Tensor w_rz = w.narrow(0, 0, 2 * hid).t(), w_n = w.narrow(0, 2 * hid, hid).t();
  const T* mp = ptr<T>(m);
  const int64_t ms = stride0(m);
  for (int64_t t = 0; t < steps; ++t) {
    Tensor x = xw.select(0, t), rz = arz.select(0, t), n = an.select(0, t);
    Tensor hlt = lag_input<T>(hbuf, t, lags, rm, hl).contiguous();
    at::addmm_out(rz, x.narrow(1, 0, 2 * hid), hlt, w_rz);
    activate_<T>(rz, ract);
    reset_lags<T>(ptr<T>(rh), ptr<T>(rz), 2 * hid, ptr<T>(hlt), batch, hid, nl);
    at::addmm_out(n, x.narrow(1, 2 * hid, hid), rh, w_n);
    activate_<T>(n, act);
    T* h = ptr<T>(hbuf) + (lags.max + t) * hbuf.stride(0);
    interpolate<T>(h, h - hbuf.stride(0), ptr<T>(rz), 2 * hid, hid, ptr<T>(n), hid, 0, batch, hid);
    carry_masked<T>(hbuf, lags.max + t, mp, ms, t);
  }
}

template <typename T>
std::tuple<Tensor, Tensor, Tensor> gru_before_forward(
    const Tensor& xw, const Tensor& h0, const Tensor& w, const Tensor& m, const Tensor& rm,
    const Lags& lags, int64_t act, int64_t ract, bool split) {
  const int64_t steps = xw.size(0), batch = xw.size(1), hid = h0.size(1);
  Tensor hbuf = history(h0, steps, lags.max);
  Tensor arz = big_empty({steps, batch, 2 * hid}, xw.options());
  Tensor an = big_empty({steps, batch, hid}, xw.options());
  over_batch(batch, split, [&](int64_t b0, int64_t n) {
    gru_before_forward_loop<T>(rows_of(xw, 1, b0, n), w, rows_of(m, 1, b0, n), rows_of(rm, 0, b0, n),
                               lags, act, ract, rows_of(arz, 1, b0, n), rows_of(an, 1, b0, n),
                               rows_of(hbuf, 1, b0, n));
  });
  return {arz, an, hbuf};
}

// The time loop of one chunk of rows: fills dxw, returns dL/dh0.
template <typename T, typename A, typename R>
Tensor gru_before_backward_loop(const Tensor& dys, const Tensor& dh_last, const Tensor& arz,
                                const Tensor& an, const Tensor& hbuf, const Tensor& w, const Tensor& m,
                                const Tensor& rm, const Lags& lags, A act, R ract,
                                const Tensor& dxw) {
  const int64_t steps = an.size(0), batch = an.size(1), hid = an.size(2), gh = 3 * hid;
  const int64_t nl = static_cast<int64_t>(lags.l.size());
  Ring<T> ring(dh_last, steps, lags.max);
  Tensor drh = at::empty({batch, nl * hid}, an.options());  // gradient of r_rep * h_lags, then h_lags
  Tensor hl = lags.plain ? Tensor() : at::empty({batch, nl * hid}, an.options());
  const Tensor w_rz = w.narrow(0, 0, 2 * hid), w_n = w.narrow(0, 2 * hid, hid);
  const T* mp = ptr<T>(m);
  const int64_t ms = stride0(m);
  for (int64_t t = steps - 1; t >= 0; --t) {
    ring.open(t, dys, mp, ms);
    const T* rz = ptr<T>(arz) + t * arz.stride(0);
    const T* n = ptr<T>(an) + t * an.stride(0);
    const T* hp0 = ptr<T>(hbuf) + (lags.max + t - 1) * hbuf.stride(0);
    Tensor dx = dxw.select(0, t);
    T* dx0 = ptr<T>(dx);
    for_rows(batch, gh, [&](int64_t b) {
      T* d = dx0 + b * gh;
      if (!real(mp, ms, t, b)) {
        ring.carry(t, b);
        std::fill_n(d, gh, T(0));
        return;
      }
      T* g = ring.row(t, b);
      T* gprev = ring.row(t - 1, b);
      for (int64_t j = 0; j < hid; ++j) {
        const T z = rz[b * 2 * hid + hid + j], nj = n[b * hid + j], gj = g[j];
        d[hid + j] = gj * (hp0[b * hid + j] - nj) * deriv(z, ract);
        d[2 * hid + j] = gj * (T(1) - z) * deriv(nj, act);
        gprev[j] += gj * z;
      }
    });
    at::mm_out(drh, dx.narrow(1, 2 * hid, hid), w_n);
    const T* hlp = ptr<T>(lag_input<T>(hbuf, t, lags, rm, hl).contiguous());
    T* drp = ptr<T>(drh);
    for_rows(batch, nl * hid, [&](int64_t b) {
      T* d = dx0 + b * gh;
      for (int64_t j = 0; j < hid; ++j) {
        const T r = rz[b * 2 * hid + j];
        T acc = T(0);
        for (int64_t k = 0; k < nl; ++k) {
          const int64_t i = (b * nl + k) * hid + j;
          acc += drp[i] * hlp[i];
          drp[i] *= r;
        }
        d[j] = real(mp, ms, t, b) ? acc * deriv(r, ract) : T(0);
      }
    });
    drh.addmm_(dx.narrow(1, 0, 2 * hid), w_rz);  // now the gradient of h_lags (B, K·H)
    if (lags.plain) {
      ring.slot(t - 1).add_(drh);
    } else {
      ring.spread(t, drh, lags, rm);
    }
    ring.close(t);
  }
  return ring.initial();
}

template <typename T>
std::tuple<Tensor, Tensor, Tensor, Tensor> gru_before_backward(
    const Tensor& dys, const Tensor& dh_last, const Tensor& arz, const Tensor& an, const Tensor& hbuf,
    const Tensor& w, const Tensor& m, const Tensor& rm, const Lags& lags, int64_t act, int64_t ract,
    bool split) {
  const int64_t steps = an.size(0), batch = an.size(1), hid = an.size(2);
  const int64_t nl = static_cast<int64_t>(lags.l.size());
  Tensor dxw = big_empty({steps, batch, 3 * hid}, an.options()), dh0 = at::empty_like(dh_last);
  with_acts(act, ract, [&](auto fa, auto fr) {
    over_batch(batch, split, [&](int64_t b0, int64_t n) {
      dh0.narrow(0, b0, n).copy_(gru_before_backward_loop<T>(
          rows_of(dys, 1, b0, n), rows_of(dh_last, 0, b0, n), rows_of(arz, 1, b0, n),
          rows_of(an, 1, b0, n), rows_of(hbuf, 1, b0, n), w, rows_of(m, 1, b0, n),
          rows_of(rm, 0, b0, n), lags, fa, fr, rows_of(dxw, 1, b0, n)));
    });
  });
  Tensor hl_all = all_lags<T>(hbuf, steps, lags, rm);
  Tensor rh_all = big_empty({steps, batch, nl * hid}, an.options());
  for (int64_t t = 0; t < steps; ++t) {
    reset_lags<T>(ptr<T>(rh_all) + t * batch * nl * hid, ptr<T>(arz) + t * batch * 2 * hid, 2 * hid,
                  ptr<T>(hl_all.select(0, t).contiguous()), batch, hid, nl);
  }
  Tensor dw = at::empty_like(w);
  weight_grad_out(dw.narrow(0, 0, 2 * hid), dxw.narrow(2, 0, 2 * hid), hl_all);
  weight_grad_out(dw.narrow(0, 2 * hid, hid), dxw.narrow(2, 2 * hid, hid), rh_all);
  return {dxw, dh0, dw, Tensor()};
}

// -- Output feedback: h_t = act(xa_t + h_lags Wᵀ + o_{t-1} W_ohᵀ), o_t = oact(xd_t + h_t W_hoᵀ) ----
// xw (T, B, H+O) holds [xa_t, xd_t] = [A x_t + b, D x_t + b_o]; obuf (T+1, B, O) holds o_t in slot
// t+1 and o0 in slot 0; W_oh (H, O), W_ho (O, H). The SimpleRNN plan plus two small GEMMs a step.
template <typename T>
void feedback_forward_loop(const Tensor& xw, const Tensor& w, const Tensor& w_oh, const Tensor& w_ho,
                           const Tensor& m, const Tensor& rm, const Lags& lags, int64_t act,
                           int64_t oact, const Tensor& hbuf, const Tensor& obuf) {
  const int64_t steps = xw.size(0), batch = xw.size(1), hid = hbuf.size(2), out = obuf.size(2);
  Tensor hl = lags.plain ? Tensor() : at::empty({batch, hid * (int64_t)lags.l.size()}, xw.options());
  const Tensor wt = w.t(), w_oh_t = w_oh.t(), w_ho_t = w_ho.t();
  const T* mp = ptr<T>(m);
  const int64_t ms = stride0(m);
  for (int64_t t = 0; t < steps; ++t) {
    Tensor x = xw.select(0, t), h = hbuf.select(0, lags.max + t), o = obuf.select(0, t + 1);
    at::addmm_out(h, x.narrow(1, 0, hid), lag_input<T>(hbuf, t, lags, rm, hl), wt);
    h.addmm_(obuf.select(0, t), w_oh_t);
    activate_<T>(h, act);
    at::addmm_out(o, x.narrow(1, hid, out), h, w_ho_t);
    activate_<T>(o, oact);
    carry_masked<T>(hbuf, lags.max + t, mp, ms, t);
    carry_masked<T>(obuf, t + 1, mp, ms, t);
  }
}

// -> hbuf (L+T, B, H), obuf (T+1, B, O)
template <typename T>
std::tuple<Tensor, Tensor> feedback_forward_impl(
    const Tensor& xw, const Tensor& h0, const Tensor& o0, const Tensor& w, const Tensor& w_oh,
    const Tensor& w_ho, const Tensor& m, const Tensor& rm, const Lags& lags, int64_t act,
    int64_t oact, bool split) {
  const int64_t steps = xw.size(0);
  Tensor hbuf = history(h0, steps, lags.max), obuf = history(o0, steps, 1);
  over_batch(xw.size(1), split, [&](int64_t b0, int64_t n) {
    feedback_forward_loop<T>(rows_of(xw, 1, b0, n), w, w_oh, w_ho, rows_of(m, 1, b0, n),
                             rows_of(rm, 0, b0, n), lags, act, oact, rows_of(hbuf, 1, b0, n),
                             rows_of(obuf, 1, b0, n));
  });
  return {hbuf, obuf};
}

// The time loop of one chunk of rows: fills dxw = [dz, du] (T, B, H+O), returns dL/dh0, dL/do0.
// Per step: du_t = do_t oact'(o_t); dz_t = (dh_t + du_t W_ho) act'(h_t); do_{t-1} = dz_t W_oh.
// A masked row passes dh_t and do_t whole to the states it carried, and has dz = du = 0.
template <typename T, typename A>
std::tuple<Tensor, Tensor> feedback_backward_loop(
    const Tensor& dys, const Tensor& dh_last, const Tensor& do_last, const Tensor& hbuf,
    const Tensor& obuf, const Tensor& w, const Tensor& w_oh, const Tensor& w_ho, const Tensor& m,
    const Tensor& rm, const Lags& lags, A act, Dyn oact, const Tensor& dxw) {
  const int64_t steps = dys.size(0), batch = dys.size(1), hid = dys.size(2), out = obuf.size(2);
  const int64_t width = hid + out;
  Ring<T> ring(dh_last, steps, lags.max);
  Tensor d_o = do_last.clone(), d_prev = at::empty_like(d_o);  // dL/do_t, then dL/do_{t-1}
  Tensor dhl = lags.plain ? Tensor() : at::empty({batch, hid * (int64_t)lags.l.size()}, dys.options());
  const T* mp = ptr<T>(m);
  const int64_t ms = stride0(m);
  for (int64_t t = steps - 1; t >= 0; --t) {
    ring.open(t, dys, mp, ms);
    Tensor dx = dxw.select(0, t), dz = dx.narrow(1, 0, hid), du = dx.narrow(1, hid, out);
    T* dx0 = ptr<T>(dx);
    const T* op = ptr<T>(obuf) + (t + 1) * obuf.stride(0);
    const T* dop = ptr<T>(d_o);
    for_rows(batch, out, [&](int64_t b) {
      T* d = dx0 + b * width + hid;
      if (!real(mp, ms, t, b)) {
        ring.carry(t, b);
        std::fill_n(d, out, T(0));
        return;
      }
      for (int64_t j = 0; j < out; ++j) d[j] = dop[b * out + j] * deriv(op[b * out + j], oact);
    });
    at::addmm_out(dz, ring.slot(t), du, w_ho);  // dL/dh_t through both of its uses
    const T* h = ptr<T>(hbuf) + (lags.max + t) * hbuf.stride(0);
    for_rows(batch, hid, [&](int64_t b) {
      T* d = dx0 + b * width;
      if (!real(mp, ms, t, b)) {
        std::fill_n(d, hid, T(0));
        return;
      }
      const T* hb = h + b * hid;
      for (int64_t j = 0; j < hid; ++j) d[j] *= deriv(hb[j], act);
    });
    at::mm_out(d_prev, dz, w_oh);
    if (mp != nullptr) {
      T* dpp = ptr<T>(d_prev);
      for (int64_t b = 0; b < batch; ++b) {
        if (!real(mp, ms, t, b)) std::copy_n(dop + b * out, out, dpp + b * out);
      }
    }
    std::swap(d_o, d_prev);
    ring.recurrent(t, dz, w, lags, rm, dhl);
    ring.close(t);
  }
  return {ring.initial(), d_o};
}

template <typename T>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> feedback_backward_impl(
    const Tensor& dys, const Tensor& dh_last, const Tensor& do_last, const Tensor& hbuf,
    const Tensor& obuf, const Tensor& w, const Tensor& w_oh, const Tensor& w_ho, const Tensor& m,
    const Tensor& rm, const Lags& lags, int64_t act, int64_t oact, bool split) {
  const int64_t steps = dys.size(0), batch = dys.size(1), hid = dys.size(2), out = obuf.size(2);
  Tensor dxw = big_empty({steps, batch, hid + out}, dys.options());
  Tensor dh0 = at::empty_like(dh_last), do0 = at::empty_like(do_last);
  with_acts(act, kSigmoid, [&](auto a, auto) {
    over_batch(batch, split, [&](int64_t b0, int64_t n) {
      auto [dh, d_o] = feedback_backward_loop<T>(
          rows_of(dys, 1, b0, n), rows_of(dh_last, 0, b0, n), rows_of(do_last, 0, b0, n),
          rows_of(hbuf, 1, b0, n), rows_of(obuf, 1, b0, n), w, w_oh, w_ho, rows_of(m, 1, b0, n),
          rows_of(rm, 0, b0, n), lags, a, Dyn{oact}, rows_of(dxw, 1, b0, n));
      dh0.narrow(0, b0, n).copy_(dh);
      do0.narrow(0, b0, n).copy_(d_o);
    });
  });
  const Tensor dz = dxw.narrow(2, 0, hid), du = dxw.narrow(2, hid, out);
  Tensor dw = at::empty_like(w), dw_oh = at::empty_like(w_oh), dw_ho = at::empty_like(w_ho);
  lag_weight_grad_out<T>(dw, dz, hbuf, steps, lags, rm);
  weight_grad_out(dw_oh, dz, obuf.narrow(0, 0, steps));        // Σ dz_tᵀ o_{t-1}
  weight_grad_out(dw_ho, du, hbuf.narrow(0, lags.max, steps));  // Σ du_tᵀ h_t
  return {dxw, dh0, do0, dw, dw_oh, dw_ho};
}

// -- Inference: the standard cells forward only, nothing kept ----------------------------------------
// Per step two GEMMs on the chunk's rows, x_t W_ihᵀ read straight from x (B, T, I) and h_{t-1} W_hhᵀ,
// then one pass per row for the gates; h_t goes straight into ys (B, T, H). No (T, B, G·H)
// projection is written and read back, no history or gate activations are kept: what a training
// forward stores for backward is memory traffic that inference does not need.
enum Kind : int64_t { kSimple = 0, kLSTM = 1, kGRU = 2 };

template <typename T, typename A, typename R>
void infer_loop(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh, const Tensor& bias,
                const Tensor& bias_hh, const Tensor& m, int64_t kind, A act, R ract,
                const Tensor& h, const Tensor& c, const Tensor& ys) {
  const int64_t batch = x.size(0), steps = x.size(1), in = x.size(2), hid = h.size(1);
  const int64_t gh = w_ih.size(0);
  Tensor z = at::empty({batch, gh}, x.options());
  Tensor rec = kind == kGRU ? at::empty({batch, gh}, x.options()) : Tensor();
  const Tensor zeros = at::zeros({gh}, x.options());
  const T* b = ptr<T>(bias.defined() ? bias : zeros);
  const T* bh = ptr<T>(bias_hh.defined() ? bias_hh : zeros);
  const T* mp = ptr<T>(m);  // (B, T) here
  T *zp = ptr<T>(z), *rp = ptr<T>(rec), *hp = ptr<T>(h), *cp = ptr<T>(c);
  const T *xp = ptr<T>(x), *wi = ptr<T>(w_ih), *wh = ptr<T>(w_hh);
  T* yp = ptr<T>(ys);
  const int64_t xs = x.stride(0), ysb = ys.stride(0);
  for (int64_t t = 0; t < steps; ++t) {
    gemm<T>(batch, gh, in, xp + t * in, xs, wi, in, true, T(0), zp, gh);
    if (kind == kGRU) {
      gemm<T>(batch, gh, hid, hp, hid, wh, hid, true, T(0), rp, gh);
    } else {
      gemm<T>(batch, gh, hid, hp, hid, wh, hid, true, T(1), zp, gh);
    }
    for_rows(batch, gh, [&](int64_t r) {
      T* y = yp + r * ysb + t * hid;
      if (mp != nullptr && mp[r * steps + t] == T(0)) {  // masked: output 0, state carried
        std::fill_n(y, hid, T(0));
        return;
      }
      T* zr = zp + r * gh;
      T* hr = hp + r * hid;
      if (kind == kSimple) {
        simple_infer_row(zr, b, hr, y, hid, act);
      } else if (kind == kLSTM) {
        lstm_infer_row(zr, b, cp + r * hid, hr, y, hid, act, ract);
      } else {
        gru_infer_row(zr, b, rp + r * gh, bh, hr, y, hid, act, ract);
      }
    });
  }
}

// -> ys (B, T, H), h_T, c_T (c_T undefined unless LSTM); x (B, T, I), mask (B, T) float or none
std::tuple<Tensor, Tensor, Tensor> infer(const Tensor& x_, const Tensor& h0, const OptTensor& c0,
                                         const Tensor& w_ih, const Tensor& w_hh, const OptTensor& bias,
                                         const OptTensor& bias_hh, const OptTensor& mask, int64_t kind,
                                         int64_t act, int64_t ract, bool split) {
  const Tensor x = x_.contiguous(), m = contiguous_or_empty(mask);
  const Tensor b = contiguous_or_empty(bias), bh = contiguous_or_empty(bias_hh);
  const Tensor wi = w_ih.contiguous(), wh = w_hh.contiguous();
  Tensor h = h0.clone(at::MemoryFormat::Contiguous);
  Tensor c = kind == kLSTM ? c0.value().clone(at::MemoryFormat::Contiguous) : Tensor();
  Tensor ys = at::empty({x.size(0), x.size(1), h.size(1)}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "infer", [&] {
    with_acts(act, ract, [&](auto fa, auto fr) {
      over_batch(x.size(0), split, [&](int64_t b0, int64_t n) {
        infer_loop<scalar_t>(rows_of(x, 0, b0, n), wi, wh, b, bh, rows_of(m, 0, b0, n), kind, fa, fr,
                             rows_of(h, 0, b0, n), rows_of(c, 0, b0, n), rows_of(ys, 0, b0, n));
      });
    });
  });
  return {ys, h, c};
}

// -- Tiles: the standard cells with their recurrent products in registers ------------------------
// At small H a step's products are too small for BLAS: MKL's sgemm on B/threads x K=32 x N=4H rows
// spends much of its time re-packing W_hh on every call, and around the loop the input projection,
// its bias, the time-major copy of x and the (T, B, G·H) buffer between them are memory traffic.
// Here the weights are packed once per call into panels, and a tile of R rows computes
// [x_t, h_{t-1}] · [W_ih, W_hh]ᵀ + b for one group of V units (V = the vector width, all gates of those
// units) in R·NA vector registers, then the gate math of those units from those values. Each block of
// R rows runs the whole time loop on its own (the recurrence is independent across rows), so its
// states and the panels stay in L1/L2. Everything is batch-major (B, T, ·), as the caller's x: no
// transposes. Backward goes the same way, block by block and backward in time: the gate gradients dz
// of the block's rows into a (R, T, G·H) scratch, dL/dh_{t-1} = dz W_hh by tiles over a backward
// panel, and after the block's time loop its dx and weight gradients as GEMMs over that scratch while
// it is still in cache, and the bias gradients as its sums; no (T, B, G·H) gradient is allocated.
#if defined(__AVX512F__)
constexpr int64_t kVecBytes = 64;
#elif defined(__AVX__)
constexpr int64_t kVecBytes = 32;
#else
constexpr int64_t kVecBytes = 16;
#endif

template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(kVecBytes)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(kVecBytes)));
};
template <typename T>
using Vec = typename VecOf<T>::type;
template <typename T>
constexpr int64_t kLanes = kVecBytes / static_cast<int64_t>(sizeof(T));

template <typename T>
RNNKIT_INLINE Vec<T> vload(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
RNNKIT_INLINE void vstore(T* p, const Vec<T>& v) {
  std::memcpy(p, &v, sizeof v);
}
// The first n lanes (n <= the vector's): a group's tail past H reads zeros and writes nothing. Lane by
// lane (AVX-512: a masked move), never a call: a call would spill every live vector register.
template <typename T>
RNNKIT_INLINE Vec<T> vload_n(const T* p, int64_t n) {
#if defined(__AVX512F__)
  const __mmask16 k = static_cast<__mmask16>((1u << n) - 1);
  if constexpr (std::is_same_v<T, float>) {
    return reinterpret_cast<Vec<float>>(_mm512_maskz_loadu_ps(k, p));
  } else {
    return reinterpret_cast<Vec<double>>(_mm512_maskz_loadu_pd(static_cast<__mmask8>(k), p));
  }
#else
  Vec<T> v{};
  for (int64_t i = 0; i < n; ++i) v[i] = p[i];
  return v;
#endif
}
template <typename T>
RNNKIT_INLINE void vstore_n(T* p, const Vec<T>& v, int64_t n) {
#if defined(__AVX512F__)
  const __mmask16 k = static_cast<__mmask16>((1u << n) - 1);
  if constexpr (std::is_same_v<T, float>) {
    _mm512_mask_storeu_ps(p, k, reinterpret_cast<__m512>(v));
  } else {
    _mm512_mask_storeu_pd(p, static_cast<__mmask8>(k), reinterpret_cast<__m512d>(v));
  }
#else
  for (int64_t i = 0; i < n; ++i) p[i] = v[i];
#endif
}
// A group of V units (Full) or the last one, cut at H
template <bool Full, typename T>
RNNKIT_INLINE Vec<T> vget(const T* p, int64_t n) {
  if constexpr (Full) {
    return vload(p);
  } else {
    return vload_n(p, n);
  }
}
template <bool Full, typename T>
RNNKIT_INLINE void vput(T* p, const Vec<T>& v, int64_t n) {
  if constexpr (Full) {
    vstore(p, v);
  } else {
    vstore_n(p, v, n);
  }
}

// The activations on whole vectors: fast_exp's arithmetic lane-wise for float; double keeps the
// library's exp and tanh, lane by lane.
RNNKIT_INLINE Vec<float> vexp(Vec<float> x) {
#if defined(__AVX512F__)
  // clamps as min/max, the rounding as one instruction, 2^n as vscalefps. min/max return their
  // second operand where either is NaN: x goes second, so a NaN stays NaN (the NaN guard sees it)
  const __m512 v = _mm512_max_ps(_mm512_set1_ps(-87.0f),
                                 _mm512_min_ps(_mm512_set1_ps(88.0f), reinterpret_cast<__m512>(x)));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const Vec<float> nv = reinterpret_cast<Vec<float>>(n);
  x = reinterpret_cast<Vec<float>>(v);
#else
  using VecI = int32_t __attribute__((vector_size(kVecBytes)));
  const Vec<float> lo = Vec<float>{} - 87.0f, hi = Vec<float>{} + 88.0f;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  constexpr float kRound = 12582912.0f;
  const Vec<float> nv = (x * 1.44269504088896341f + kRound) - kRound;
#endif
  Vec<float> r = x - nv * 0.693359375f;
  r = r - nv * -2.12194440e-4f;
  Vec<float> p = Vec<float>{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
#if defined(__AVX512F__)
  return reinterpret_cast<Vec<float>>(_mm512_scalef_ps(reinterpret_cast<__m512>(p), n));
#else
  const VecI bits = (__builtin_convertvector(nv, VecI) + 127) << 23;
  return p * reinterpret_cast<const Vec<float>&>(bits);
#endif
}
RNNKIT_INLINE Vec<double> vexp(Vec<double> x) {
  for (int64_t i = 0; i < kLanes<double>; ++i) x[i] = std::exp(x[i]);
  return x;
}

// 1 / d. With AVX-512, float takes rcp14 (14 bits) and one Newton step (28 bits, past float's 24):
// a zmm division costs about as much as the rest of a sigmoid.
template <typename T>
RNNKIT_INLINE Vec<T> vrecip(Vec<T> d) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    const Vec<float> r = reinterpret_cast<Vec<float>>(_mm512_rcp14_ps(reinterpret_cast<__m512>(d)));
    return r * (2.0f - d * r);
  }
#endif
  return T(1) / d;
}

template <typename T>
RNNKIT_INLINE Vec<T> vsigmoid(Vec<T> x) {
  return vrecip<T>(T(1) + vexp(-x));
}

template <typename T>
RNNKIT_INLINE Vec<T> vtanh(Vec<T> x) {
  if constexpr (std::is_same_v<T, double>) {
    for (int64_t i = 0; i < kLanes<double>; ++i) x[i] = std::tanh(x[i]);
    return x;
  } else {
    return T(2) * vsigmoid<T>(T(2) * x) - T(1);
  }
}

template <typename T, typename A>
RNNKIT_INLINE Vec<T> vact(Vec<T> z, A act) {
  switch (static_cast<int64_t>(act)) {
    case kTanh: return vtanh<T>(z);
    case kSigmoid: return vsigmoid<T>(z);
    case kRelu: return z < Vec<T>{} ? Vec<T>{} : z;  // NaN stays NaN, as torch.relu's
    default: return z;
  }
}

// NA accumulators per row and group (SimpleRNN h; LSTM i, f, g, o; GRU r, z, n_x, n_h), NX and NH
// weight vectors per k of the x and h panels; a panel's vector q feeds accumulator q, or q + 1 from
// q = SX (SH) on: GRU's x panel has no n_h, its h panel no n_x.
template <int64_t Kind>
struct TileShape;
template <>
struct TileShape<0> {  // kSimple
  static constexpr int NA = 1, NX = 1, NH = 1, SX = 1, SH = 1, G = 1;
};
template <>
struct TileShape<1> {  // kLSTM
  static constexpr int NA = 4, NX = 4, NH = 4, SX = 4, SH = 4, G = 4;
};
template <>
struct TileShape<2> {  // kGRU
  static constexpr int NA = 4, NX = 3, NH = 3, SX = 3, SH = 2, G = 3;
};

// Rows per tile: R·NA accumulators, the panel's vectors and a broadcast fit the vector registers
// (32 with AVX-512, 16 below). Backward tiles hold one vector of dh per row.
template <int64_t Kind>
constexpr int tile_rows() {
  return kVecBytes == 64 ? (Kind == 0 ? 8 : 6) : (Kind == 0 ? 6 : 3);
}
constexpr int kBackRows = kVecBytes == 64 ? 8 : 6;

template <typename T>
constexpr int64_t padded(int64_t n) {
  return (n + kLanes<T> - 1) / kLanes<T> * kLanes<T>;
}

// acc[r][map(q)] += Σ_k a[r][k] · w[k][q] for the R rows a[r] (k numbers each) and a panel w of NW
// vectors per k; map(q) = q below Skip, q + 1 from Skip on.
template <typename T, int R, int NA, int NW, int Skip>
RNNKIT_INLINE void tile_fma(Vec<T> (&acc)[R][NA], const T* const* a, int64_t k, const T* __restrict w) {
  constexpr int64_t V = kLanes<T>;
  for (int64_t kk = 0; kk < k; ++kk) {
    Vec<T> wv[NW];
#pragma GCC unroll 8
    for (int q = 0; q < NW; ++q) wv[q] = vload(w + (kk * NW + q) * V);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const T s = a[r][kk];
#pragma GCC unroll 8
      for (int q = 0; q < NW; ++q) acc[r][q < Skip ? q : q + 1] += wv[q] * s;
    }
  }
}

// The forward panels, one per group g of V units [g·V, g·V + V) (the last one padded with zero
// weights): the x panel (I, NX, V), then the h panel (H, NH, V); vector q of either holds the rows
// q·H + u of W_ih or W_hh (gate q). -> (groups, (I·NX + H·NH)·V)
template <typename T, int64_t Kind>
Tensor pack_forward(const Tensor& w_ih, const Tensor& w_hh) {
  using S = TileShape<Kind>;
  constexpr int64_t V = kLanes<T>;
  const int64_t in = w_ih.size(1), hid = w_hh.size(1), groups = padded<T>(hid) / V;
  const int64_t panel = (in * S::NX + hid * S::NH) * V;
  Tensor out = at::zeros({groups, panel}, w_ih.options());
  T* o = ptr<T>(out);
  const T *wi = ptr<T>(w_ih), *wh = ptr<T>(w_hh);
  for (int64_t u = 0; u < hid; ++u) {
    T* x = o + (u / V) * panel + u % V;
    T* h = x + in * S::NX * V;
    for (int64_t k = 0; k < in; ++k)
      for (int q = 0; q < S::NX; ++q) x[(k * S::NX + q) * V] = wi[(q * hid + u) * in + k];
    for (int64_t k = 0; k < hid; ++k)
      for (int q = 0; q < S::NH; ++q) h[(k * S::NH + q) * V] = wh[(q * hid + u) * hid + k];
  }
  return out;
}

// The accumulators' starting values (groups, NA, V): the biases (GRU: r and z take b + b_hh, n_x b_n,
// n_h b_hh's n).
template <typename T, int64_t Kind>
Tensor pack_bias(const Tensor& bias, const Tensor& bias_hh, int64_t hid, const at::TensorOptions& opts) {
  using S = TileShape<Kind>;
  constexpr int64_t V = kLanes<T>;
  Tensor out = at::zeros({padded<T>(hid) / V, S::NA * V}, opts);
  T* o = ptr<T>(out);
  const T *b = ptr<T>(bias), *bh = ptr<T>(bias_hh);
  for (int64_t u = 0; u < hid; ++u) {
    T* ob = o + (u / V) * S::NA * V + u % V;
    for (int q = 0; q < S::NA; ++q) {
      T v = T(0);
      if (Kind == kGRU && q == 3) {
        v = bh ? bh[2 * hid + u] : T(0);
      } else {
        v = b ? b[q * hid + u] : T(0);
        if (Kind == kGRU && q < 2 && bh) v += bh[q * hid + u];
      }
      ob[q * V] = v;
    }
  }
  return out;
}

// The backward panels (groups, G·H, V): group g holds W_hh's columns [g·V, g·V + V) (zeros past H),
// for dL/dh_{t-1} = dz W_hh.
template <typename T>
Tensor pack_backward(const Tensor& w_hh) {
  constexpr int64_t V = kLanes<T>;
  const int64_t gh = w_hh.size(0), hid = w_hh.size(1), groups = padded<T>(hid) / V;
  Tensor out = at::zeros({groups, gh * V}, w_hh.options());
  T* o = ptr<T>(out);
  const T* w = ptr<T>(w_hh);
  for (int64_t k = 0; k < gh; ++k)
    for (int64_t u = 0; u < hid; ++u) o[(u / V) * gh * V + k * V + u % V] = w[k * hid + u];
  return out;
}

template <typename T>
struct TileForward {
  const T* x;  // (B, T, I), contiguous
  int64_t in, steps, hid;
  const T *wp, *bp;  // pack_forward, pack_bias
  int64_t groups, panel;
  const T* m;  // (B, T) or null
  // training: gate activations a (B, T, G·H) (GRU's n_h in ghn (B, T, H)); h and c (B, T+1, H), slot 0
  // holding h0, c0. Inference: ys (B, T, H), and h, c (B, H) holding h0, c0 and left holding h_T, c_T.
  T *a, *ghn, *hbuf, *cbuf, *ys, *h, *c;
};

// One row's gate math for the n units of a group, on the vectors of its accumulators z: the new
// state, and in training the gate activations; a masked step carries h and c (inference: and outputs 0).
template <typename T, int64_t Kind, bool Train, bool Full, typename A, typename RA>
RNNKIT_INLINE void tile_gates(const Vec<T>* z, int64_t n, int64_t hid, bool real, A act, RA ract, T* a,
                              T* ghn, const T* h_prev, T* h_new, const T* c_prev, T* c_new, T* y) {
  Vec<T> h;
  if constexpr (Kind == kSimple) {
    h = vact<T>(z[0], act);
  } else if constexpr (Kind == kLSTM) {
    const Vec<T> i = vact<T>(z[0], ract), f = vact<T>(z[1], ract);
    const Vec<T> g = vact<T>(z[2], act), o = vact<T>(z[3], ract);
    if constexpr (Train) {
      vput<Full>(a, i, n);
      vput<Full>(a + hid, f, n);
      vput<Full>(a + 2 * hid, g, n);
      vput<Full>(a + 3 * hid, o, n);
    }
    const Vec<T> cp = vget<Full>(c_prev, n), c = f * cp + i * g;
    vput<Full>(c_new, real ? c : cp, n);
    h = o * vact<T>(c, act);
  } else {
    const Vec<T> r = vact<T>(z[0], ract), u = vact<T>(z[1], ract);
    const Vec<T> nn = vact<T>(z[2] + r * z[3], act);
    if constexpr (Train) {
      vput<Full>(a, r, n);
      vput<Full>(a + hid, u, n);
      vput<Full>(a + 2 * hid, nn, n);
      vput<Full>(ghn, z[3], n);
    }
    h = nn + u * (vget<Full>(h_prev, n) - nn);
  }
  vput<Full>(h_new, real ? h : vget<Full>(h_prev, n), n);
  if constexpr (!Train) vput<Full>(y, real ? h : Vec<T>{}, n);
}

// p + u, for the buffers a kind has (the others stay null)
template <typename P>
RNNKIT_INLINE P at(P p, int64_t u) {
  return p ? p + u : p;
}

// The whole time loop of the R rows from b0.
template <typename T, int64_t Kind, int R, bool Train, typename A, typename RA>
void tile_forward_block(const TileForward<T>& p, int64_t b0, A act, RA ract) {
  using S = TileShape<Kind>;
  constexpr int64_t V = kLanes<T>;
  constexpr int NA = S::NA;
  const int64_t hid = p.hid, steps = p.steps, in = p.in, gh = S::G * hid;
  std::vector<T> slots(Train ? 0 : 2 * R * hid);  // inference: h_{t-1} and h_t of each row
  if constexpr (!Train) {
    for (int r = 0; r < R; ++r) std::copy_n(p.h + (b0 + r) * hid, hid, slots.data() + 2 * r * hid);
  }
  for (int64_t t = 0; t < steps; ++t) {
    const T *xr[R], *hp[R], *cp[R];
    T *hn[R], *cn[R], *ar[R], *gr[R], *yr[R];
    bool real[R];
    for (int r = 0; r < R; ++r) {
      const int64_t b = b0 + r, bt = b * steps + t;
      xr[r] = p.x + bt * in;
      real[r] = p.m == nullptr || p.m[bt] != T(0);
      if constexpr (Train) {
        const int64_t slot = (b * (steps + 1) + t) * hid;
        hp[r] = p.hbuf + slot;
        hn[r] = p.hbuf + slot + hid;
        cp[r] = Kind == kLSTM ? p.cbuf + slot : nullptr;
        cn[r] = Kind == kLSTM ? p.cbuf + slot + hid : nullptr;
        ar[r] = Kind == kSimple ? nullptr : p.a + bt * gh;
        gr[r] = Kind == kGRU ? p.ghn + bt * hid : nullptr;
        yr[r] = nullptr;
      } else {
        hp[r] = slots.data() + (2 * r + (t & 1)) * hid;
        hn[r] = slots.data() + (2 * r + 1 - (t & 1)) * hid;
        cp[r] = cn[r] = Kind == kLSTM ? p.c + b * hid : nullptr;
        ar[r] = gr[r] = nullptr;
        yr[r] = p.ys + bt * hid;
      }
    }
    for (int64_t g = 0; g < p.groups; ++g) {
      Vec<T> acc[R][NA];
      const T* bias = p.bp + g * NA * V;
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int q = 0; q < NA; ++q) acc[r][q] = vload(bias + q * V);
      const T* w = p.wp + g * p.panel;
      tile_fma<T, R, NA, S::NX, S::SX>(acc, xr, in, w);
      tile_fma<T, R, NA, S::NH, S::SH>(acc, hp, hid, w + in * S::NX * V);
      const int64_t u = g * V, n = std::min(V, hid - u);
      const auto gates = [&](auto full) {
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
          tile_gates<T, Kind, Train, decltype(full)::value>(
              acc[r], n, hid, real[r], act, ract, at(ar[r], u), at(gr[r], u), hp[r] + u, hn[r] + u,
              at(cp[r], u), at(cn[r], u), at(yr[r], u));
        }
      };
      if (n == V) {
        gates(std::true_type{});
      } else {
        gates(std::false_type{});
      }
    }
  }
  if constexpr (!Train) {
    for (int r = 0; r < R; ++r)
      std::copy_n(slots.data() + (2 * r + (steps & 1)) * hid, hid, p.h + (b0 + r) * hid);
  }
}

// The n rows from b0 in blocks of R rows, then R/2, then 1.
template <int R, typename F>
void tile_blocks(int64_t b0, int64_t n, const F& f) {
  constexpr int R2 = R / 2 > 1 ? R / 2 : 1;
  int64_t b = b0;
  for (; b + R <= b0 + n; b += R) f(std::integral_constant<int, R>{}, b);
  for (; b + R2 <= b0 + n; b += R2) f(std::integral_constant<int, R2>{}, b);
  for (; b < b0 + n; ++b) f(std::integral_constant<int, 1>{}, b);
}

template <typename T, int64_t Kind, bool Train>
void tile_forward_impl(const TileForward<T>& p, int64_t batch, int64_t act, int64_t ract) {
  with_acts(act, ract, [&](auto fa, auto fr) {
    over_batch(batch, true, [&](int64_t b0, int64_t n) {
      tile_blocks<tile_rows<Kind>()>(b0, n, [&](auto rows, int64_t b) {
        tile_forward_block<T, Kind, decltype(rows)::value, Train>(p, b, fa, fr);
      });
    });
  });
}

template <typename T, int64_t Kind>
TileForward<T> tile_forward_args(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh,
                                 const Tensor& wp, const Tensor& bp, const Tensor& m) {
  TileForward<T> p{};
  p.x = ptr<T>(x);
  p.in = x.size(2);
  p.steps = x.size(1);
  p.hid = w_hh.size(1);
  p.wp = ptr<T>(wp);
  p.bp = ptr<T>(bp);
  p.groups = wp.size(0);
  p.panel = wp.size(1);
  p.m = ptr<T>(m);
  return p;
}

// Training forward -> a (B, T, G·H) gate activations (GRU: r, z, n) or undefined for SimpleRNN,
// ghn (B, T, H) for GRU, hbuf and cbuf (B, T+1, H) (cbuf LSTM only).
template <typename T, int64_t Kind>
std::tuple<Tensor, Tensor, Tensor, Tensor> tile_train_forward(
    const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
    const Tensor& bias, const Tensor& bias_hh, const Tensor& m, int64_t act, int64_t ract) {
  using S = TileShape<Kind>;
  const int64_t batch = x.size(0), steps = x.size(1), hid = w_hh.size(1);
  const Tensor wp = pack_forward<T, Kind>(w_ih, w_hh);
  const Tensor bp = pack_bias<T, Kind>(bias, bias_hh, hid, x.options());
  TileForward<T> p = tile_forward_args<T, Kind>(x, w_ih, w_hh, wp, bp, m);
  Tensor a = Kind == kSimple ? Tensor() : big_empty({batch, steps, S::G * hid}, x.options());
  Tensor ghn = Kind == kGRU ? big_empty({batch, steps, hid}, x.options()) : Tensor();
  Tensor hbuf = big_empty({batch, steps + 1, hid}, x.options());
  hbuf.select(1, 0).copy_(h0);
  Tensor cbuf;
  if (Kind == kLSTM) {
    cbuf = big_empty({batch, steps + 1, hid}, x.options());
    cbuf.select(1, 0).copy_(c0);
  }
  p.a = ptr<T>(a);
  p.ghn = ptr<T>(ghn);
  p.hbuf = ptr<T>(hbuf);
  p.cbuf = ptr<T>(cbuf);
  tile_forward_impl<T, Kind, true>(p, batch, act, ract);
  return {a, ghn, hbuf, cbuf};
}

// Inference -> ys (B, T, H), h_T, c_T (LSTM; else undefined)
template <typename T, int64_t Kind>
std::tuple<Tensor, Tensor, Tensor> tile_infer_impl(const Tensor& x, const Tensor& h0, const Tensor& c0,
                                                   const Tensor& w_ih, const Tensor& w_hh,
                                                   const Tensor& bias, const Tensor& bias_hh,
                                                   const Tensor& m, int64_t act, int64_t ract) {
  const int64_t batch = x.size(0), steps = x.size(1), hid = w_hh.size(1);
  const Tensor wp = pack_forward<T, Kind>(w_ih, w_hh);
  const Tensor bp = pack_bias<T, Kind>(bias, bias_hh, hid, x.options());
  TileForward<T> p = tile_forward_args<T, Kind>(x, w_ih, w_hh, wp, bp, m);
  Tensor ys = at::empty({batch, steps, hid}, x.options());
  Tensor h = h0.clone(at::MemoryFormat::Contiguous);
  Tensor c = Kind == kLSTM ? c0.clone(at::MemoryFormat::Contiguous) : Tensor();
  p.ys = ptr<T>(ys);
  p.h = ptr<T>(h);
  p.c = ptr<T>(c);
  tile_forward_impl<T, Kind, false>(p, batch, act, ract);
  return {ys, h, c};
}

template <typename T>
struct TileBackward {
  const T* dys;  // dL/dys (B, T, H) through its strides: the gradient of a sum is expanded
  int64_t dsb, dst, dsj;
  const T *dh_last, *dc_last;  // (B, H)
  const T *x, *w_ih, *a, *ghn, *hbuf, *cbuf, *m, *wb;  // wb: pack_backward
  int64_t in, steps, hid, gh, groups;
  T *dx, *dh0, *dc0;  // dx (B, T, I) or null
};

// This thread's sums of the weight and bias gradients, added to the totals at its end.
template <typename T>
struct GradSums {
  Tensor dw_ih, dw_hh, db, dbh;
};

// One row of the GRU backward from a = [r, z, n], ghn = h W_nᵀ + b_hn, h_{t-1} and g = dL/dh_t:
// writes dz = [dr, dz, dn] (the gradient of the projected input), drn = dn · r (of ghn), and leaves in
// g what passes to h_{t-1} directly, z g.
template <typename T, typename A, typename R>
RNNKIT_INLINE void gru_tile_back_row(const T* __restrict a, const T* __restrict ghn,
                                     const T* __restrict h_prev, T* __restrict g, T* __restrict dz,
                                     T* __restrict drn, int64_t hid, A act, R ract) {
  for (int64_t j = 0; j < hid; ++j) {
    const T r = a[j], z = a[hid + j], n = a[2 * hid + j], gj = g[j];
    const T dn = gj * (T(1) - z) * deriv(n, act);
    dz[j] = dn * ghn[j] * deriv(r, ract);
    dz[hid + j] = gj * (h_prev[j] - n) * deriv(z, ract);
    dz[2 * hid + j] = dn;
    drn[j] = dn * r;
    g[j] = gj * z;
  }
}

// The whole backward time loop of the R rows from b0, then their dx and weight gradients.
// Scratch: dzs (R, T, G·H), drn (R, T, H) for GRU, dh (R, Hp) and dc (R, H).
template <typename T, int64_t Kind, int R, typename A, typename RA>
void tile_backward_block(const TileBackward<T>& p, int64_t b0, A act, RA ract, T* dzs, T* drn, T* dh,
                         T* dc, GradSums<T>& sums) {
  constexpr int64_t V = kLanes<T>;
  const int64_t hid = p.hid, hp = padded<T>(hid), steps = p.steps, gh = p.gh, in = p.in;
  for (int r = 0; r < R; ++r) {
    std::copy_n(p.dh_last + (b0 + r) * hid, hid, dh + r * hp);
    std::fill(dh + r * hp + hid, dh + (r + 1) * hp, T(0));
    if (Kind == kLSTM) std::copy_n(p.dc_last + (b0 + r) * hid, hid, dc + r * hid);
  }
  for (int64_t t = steps - 1; t >= 0; --t) {
    const T *zr[R], *nr[R];
    for (int r = 0; r < R; ++r) {
      const int64_t b = b0 + r, bt = b * steps + t, slot = (b * (steps + 1) + t) * hid;
      T* g = dh + r * hp;  // dL/dh_t, then what passes to h_{t-1} besides dz W_hh
      T* dz = dzs + (r * steps + t) * gh;
      T* dn = Kind == kGRU ? drn + (r * steps + t) * hid : nullptr;
      zr[r] = dz;
      nr[r] = dn;
      if (p.m != nullptr && p.m[bt] == T(0)) {  // a masked step passes dh and dc on whole
        std::fill_n(dz, gh, T(0));
        if (dn) std::fill_n(dn, hid, T(0));
        continue;
      }
      const T* dy = p.dys + b * p.dsb + t * p.dst;
      for (int64_t j = 0; j < hid; ++j) g[j] += dy[j * p.dsj];
      if constexpr (Kind == kSimple) {
        const T* h = p.hbuf + slot + hid;
        for (int64_t j = 0; j < hid; ++j) {
          dz[j] = g[j] * deriv(h[j], act);
          g[j] = T(0);
        }
      } else if constexpr (Kind == kLSTM) {
        const T* ab = p.a + bt * gh;
        lstm_back_row(ab, ab + hid, ab + 2 * hid, ab + 3 * hid, p.cbuf + slot, p.cbuf + slot + hid, g,
                      dc + r * hid, dz, dz + hid, dz + 2 * hid, dz + 3 * hid, hid, act, ract);
        std::fill_n(g, hid, T(0));
      } else {
        gru_tile_back_row(p.a + bt * gh, p.ghn + bt * hid, p.hbuf + slot, g, dz, dn, hid, act, ract);
      }
    }
    for (int64_t g = 0; g < p.groups; ++g) {  // dh <- dh + dz W_hh, V columns at a time
      Vec<T> acc[R][1];
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) acc[r][0] = vload(dh + r * hp + g * V);
      const T* w = p.wb + g * gh * V;
      if constexpr (Kind == kGRU) {  // the recurrent gradient is [dr, dz, dn · r]
        tile_fma<T, R, 1, 1, 1>(acc, zr, 2 * hid, w);
        tile_fma<T, R, 1, 1, 1>(acc, nr, hid, w + 2 * hid * V);
      } else {
        tile_fma<T, R, 1, 1, 1>(acc, zr, gh, w);
      }
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) vstore(dh + r * hp + g * V, acc[r][0]);
    }
  }
  for (int r = 0; r < R; ++r) {
    std::copy_n(dh + r * hp, hid, p.dh0 + (b0 + r) * hid);
    if (Kind == kLSTM) std::copy_n(dc + r * hid, hid, p.dc0 + (b0 + r) * hid);
  }
  // dx = dz W_ih, dW_ih += dzᵀ x over the block's R·T rows (x and dx are batch-major like dzs);
  // dW_hh += dzᵀ h_{t-1} row by row (h_{t-1} is slot t of a row's T+1)
  const int64_t rows = R * steps;
  if (p.dx) gemm_ex<T>(false, false, rows, in, gh, dzs, gh, p.w_ih, in, T(0), p.dx + b0 * steps * in, in);
  gemm_ex<T>(true, false, gh, in, rows, dzs, gh, p.x + b0 * steps * in, in, T(1), ptr<T>(sums.dw_ih), in);
  T* dw_hh = ptr<T>(sums.dw_hh);
  for (int r = 0; r < R; ++r) {
    const T* h = p.hbuf + (b0 + r) * (steps + 1) * hid;
    const T* dz = dzs + r * steps * gh;
    if (Kind == kGRU) {
      gemm_ex<T>(true, false, 2 * hid, hid, steps, dz, gh, h, hid, T(1), dw_hh, hid);
      gemm_ex<T>(true, false, hid, hid, steps, drn + r * steps * hid, hid, h, hid, T(1),
                 dw_hh + 2 * hid * hid, hid);
    } else {
      gemm_ex<T>(true, false, gh, hid, steps, dz, gh, h, hid, T(1), dw_hh, hid);
    }
  }
  T* db = ptr<T>(sums.db);
  for (int64_t i = 0; i < rows; ++i) {
    const T* d = dzs + i * gh;
    for (int64_t j = 0; j < gh; ++j) db[j] += d[j];
  }
  if (Kind == kGRU) {
    T* dbh = ptr<T>(sums.dbh);
    for (int64_t i = 0; i < rows; ++i) {
      const T* d = drn + i * hid;
      for (int64_t j = 0; j < hid; ++j) dbh[2 * hid + j] += d[j];
    }
  }
}

// -> dx (or undefined), dh0, dc0 (LSTM), dW_ih, dW_hh, db, db_hh (GRU)
template <typename T, int64_t Kind>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> tile_backward_impl(
    const Tensor& dys, const Tensor& dh_last, const Tensor& dc_last, const Tensor& x, const Tensor& w_ih,
    const Tensor& w_hh, const Tensor& a, const Tensor& ghn, const Tensor& hbuf, const Tensor& cbuf,
    const Tensor& m, int64_t act, int64_t ract, bool need_dx) {
  using S = TileShape<Kind>;
  const int64_t batch = x.size(0), steps = x.size(1), in = x.size(2), hid = w_hh.size(1);
  const int64_t gh = S::G * hid;
  const Tensor wb = pack_backward<T>(w_hh);
  TileBackward<T> p{};
  p.dys = ptr<T>(dys);
  p.dsb = dys.stride(0);
  p.dst = dys.stride(1);
  p.dsj = dys.stride(2);
  p.dh_last = ptr<T>(dh_last);
  p.dc_last = ptr<T>(dc_last);
  p.x = ptr<T>(x);
  p.w_ih = ptr<T>(w_ih);
  p.a = ptr<T>(a);
  p.ghn = ptr<T>(ghn);
  p.hbuf = ptr<T>(hbuf);
  p.cbuf = ptr<T>(cbuf);
  p.m = ptr<T>(m);
  p.wb = ptr<T>(wb);
  p.in = in;
  p.steps = steps;
  p.hid = hid;
  p.gh = gh;
  p.groups = wb.size(0);
  Tensor dx = need_dx ? at::empty_like(x) : Tensor();
  Tensor dh0 = at::empty_like(dh_last), dc0 = Kind == kLSTM ? at::empty_like(dc_last) : Tensor();
  p.dx = ptr<T>(dx);
  p.dh0 = ptr<T>(dh0);
  p.dc0 = ptr<T>(dc0);
  GradSums<T> total{at::zeros_like(w_ih), at::zeros_like(w_hh), at::zeros({gh}, x.options()),
                    at::zeros({gh}, x.options())};
  std::mutex lock;
  with_acts(act, ract, [&](auto fa, auto fr) {
    over_batch(batch, true, [&](int64_t b0, int64_t n) {
      constexpr int R = kBackRows;
      const int64_t rows = std::min<int64_t>(R, n);
      Tensor dzs = big_empty({rows, steps, gh}, x.options());
      Tensor drn = Kind == kGRU ? at::empty({rows, steps, hid}, x.options()) : Tensor();
      Tensor dh = at::empty({rows, padded<T>(hid)}, x.options()), dc = at::empty({rows, hid}, x.options());
      GradSums<T> sums{at::zeros_like(w_ih), at::zeros_like(w_hh), at::zeros({gh}, x.options()),
                       at::zeros({gh}, x.options())};
      tile_blocks<R>(b0, n, [&](auto r, int64_t b) {
        tile_backward_block<T, Kind, decltype(r)::value>(p, b, fa, fr, ptr<T>(dzs), ptr<T>(drn), ptr<T>(dh),
                                                         ptr<T>(dc), sums);
      });
      std::lock_guard<std::mutex> guard(lock);
      total.dw_ih.add_(sums.dw_ih);
      total.dw_hh.add_(sums.dw_hh);
      total.db.add_(sums.db);
      total.dbh.add_(sums.dbh);
    });
  });
  if (Kind == kGRU) total.dbh.narrow(0, 0, 2 * hid).copy_(total.db.narrow(0, 0, 2 * hid));
  return {dx, dh0, dc0, total.dw_ih, total.dw_hh, total.db, Kind == kGRU ? total.dbh : Tensor()};
}

// Dispatch on the dtype and the cell kind.
template <typename F>
auto with_kind(int64_t kind, const F& f) {
  switch (kind) {
    case kSimple: return f(std::integral_constant<int64_t, kSimple>{});
    case kLSTM: return f(std::integral_constant<int64_t, kLSTM>{});
    default: return f(std::integral_constant<int64_t, kGRU>{});
  }
}

std::tuple<Tensor, Tensor, Tensor, Tensor> tile_forward(
    const Tensor& x_, const Tensor& h0, const OptTensor& c0, const Tensor& w_ih, const Tensor& w_hh,
    const OptTensor& bias, const OptTensor& bias_hh, const OptTensor& mask, int64_t kind, int64_t act,
    int64_t ract) {
  const Tensor x = x_.contiguous(), m = contiguous_or_empty(mask);
  const Tensor c = contiguous_or_empty(c0), b = contiguous_or_empty(bias), bh = contiguous_or_empty(bias_hh);
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "tile_forward", [&] {
    return with_kind(kind, [&](auto k) {
      return tile_train_forward<scalar_t, decltype(k)::value>(x, h0.contiguous(), c, w_ih.contiguous(),
                                                              w_hh.contiguous(), b, bh, m, act, ract);
    });
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> tile_backward(
    const Tensor& dys, const Tensor& dh_last, const OptTensor& dc_last, const Tensor& x,
    const Tensor& w_ih, const Tensor& w_hh, const OptTensor& a, const OptTensor& ghn, const Tensor& hbuf,
    const OptTensor& cbuf, const OptTensor& mask, int64_t kind, int64_t act, int64_t ract, bool need_dx) {
  const Tensor m = contiguous_or_empty(mask), dc = contiguous_or_empty(dc_last);
  const Tensor ac = contiguous_or_empty(a), gn = contiguous_or_empty(ghn), cb = contiguous_or_empty(cbuf);
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "tile_backward", [&] {
    return with_kind(kind, [&](auto k) {
      return tile_backward_impl<scalar_t, decltype(k)::value>(
          dys, dh_last.contiguous(), dc, x.contiguous(), w_ih.contiguous(), w_hh.contiguous(), ac, gn,
          hbuf.contiguous(), cb, m, act, ract, need_dx);
    });
  });
}

std::tuple<Tensor, Tensor, Tensor> tile_infer(const Tensor& x_, const Tensor& h0, const OptTensor& c0,
                                              const Tensor& w_ih, const Tensor& w_hh,
                                              const OptTensor& bias, const OptTensor& bias_hh,
                                              const OptTensor& mask, int64_t kind, int64_t act,
                                              int64_t ract) {
  const Tensor x = x_.contiguous(), m = contiguous_or_empty(mask);
  const Tensor c = contiguous_or_empty(c0), b = contiguous_or_empty(bias), bh = contiguous_or_empty(bias_hh);
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "tile_infer", [&] {
    return with_kind(kind, [&](auto k) {
      return tile_infer_impl<scalar_t, decltype(k)::value>(x, h0, c, w_ih.contiguous(), w_hh.contiguous(),
                                                           b, bh, m, act, ract);
    });
  });
}

// -- the operators -------------------------------------------------------------------------------
Tensor simple_forward(const Tensor& xw, const Tensor& h0, const Tensor& w, const OptTensor& mask,
                      const OptTensor& rmask, at::IntArrayRef lags, int64_t act, bool split) {
  const Tensor m = contiguous_or_empty(mask), rm = contiguous_or_empty(rmask);
  const Lags lg = make_lags(lags, rm);
  return AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "simple_forward", [&] {
    return simple_forward_impl<scalar_t>(xw.contiguous(), h0.contiguous(), w.contiguous(), m, rm,
                                         lg, act, split);
  });
}

std::tuple<Tensor, Tensor, Tensor> simple_backward(
    const Tensor& dys, const Tensor& dh_last, const Tensor& hbuf, const Tensor& w,
    const OptTensor& mask, const OptTensor& rmask, at::IntArrayRef lags, int64_t act, bool split) {
  const Tensor m = contiguous_or_empty(mask), rm = contiguous_or_empty(rmask);
  const Lags lg = make_lags(lags, rm);
  return AT_DISPATCH_FLOATING_TYPES(dys.scalar_type(), "simple_backward", [&] {
    return simple_backward_impl<scalar_t>(dys, dh_last.contiguous(), hbuf.contiguous(),
                                          w.contiguous(), m, rm, lg, act, split);
  });
}

LSTMConfig lstm_config(const Tensor& h0, const Tensor& xw, int64_t act, int64_t ract, bool coupled,
                       int64_t peephole) {
  return {act, ract, coupled, peephole, h0.size(1), xw.size(-1) / h0.size(1)};
}

// xw is written in place: it returns holding the gate activations, which backward takes as a.
std::tuple<Tensor, Tensor> lstm_forward(
    Tensor& xw, const Tensor& h0, const Tensor& c0, const Tensor& w, const OptTensor& peep_prev,
    const OptTensor& peep_out, const OptTensor& mask, const OptTensor& rmask, at::IntArrayRef lags,
    int64_t act, int64_t ract, bool coupled, int64_t peephole, bool split) {
  const Tensor m = contiguous_or_empty(mask), rm = contiguous_or_empty(rmask);
  const Tensor pp = contiguous_or_empty(peep_prev), po = contiguous_or_empty(peep_out);
  const Lags lg = make_lags(lags, rm);
  const LSTMConfig cfg = lstm_config(h0, xw, act, ract, coupled, peephole);
  TORCH_CHECK(xw.is_contiguous(), "lstm_forward: xw must be contiguous (it is written in place)");
  return AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "lstm_forward", [&] {
    return lstm_forward_impl<scalar_t>(xw, h0.contiguous(), c0.contiguous(),
                                       w.contiguous(), pp, po, m, rm, lg, cfg, split);
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward(
    const Tensor& dys, const Tensor& dh_last, const Tensor& dc_last, const Tensor& a,
    const Tensor& hbuf, const Tensor& cbuf, const Tensor& w, const OptTensor& peep_prev,
    const OptTensor& peep_out, const OptTensor& mask, const OptTensor& rmask, at::IntArrayRef lags,
    int64_t act, int64_t ract, bool coupled, int64_t peephole, bool split) {
  const Tensor m = contiguous_or_empty(mask), rm = contiguous_or_empty(rmask);
  const Tensor pp = contiguous_or_empty(peep_prev), po = contiguous_or_empty(peep_out);
  const Lags lg = make_lags(lags, rm);
  const LSTMConfig cfg = lstm_config(dh_last, a, act, ract, coupled, peephole);
  return AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "lstm_backward", [&] {
    return lstm_backward_impl<scalar_t>(dys, dh_last.contiguous(), dc_last.contiguous(),
                                        a.contiguous(), hbuf.contiguous(), cbuf.contiguous(),
                                        w.contiguous(), pp, po, m, rm, lg, cfg, split);
  });
}

std::tuple<Tensor, Tensor, Tensor> gru_forward(
    const Tensor& xw, const Tensor& h0, const Tensor& w, const OptTensor& bias_hh,
    const OptTensor& mask, const OptTensor& rmask, at::IntArrayRef lags, int64_t act, int64_t ract,
    bool reset_after, bool split) {
  const Tensor m = contiguous_or_empty(mask), rm = contiguous_or_empty(rmask);
  const Tensor bias = contiguous_or_empty(bias_hh);
  const Lags lg = make_lags(lags, rm);
  return AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "gru_forward", [&] {
    const Tensor x = xw.contiguous(), h = h0.contiguous(), wc = w.contiguous();
    return reset_after ? gru_after_forward<scalar_t>(x, h, wc, bias, m, rm, lg, act, ract, split)
                       : gru_before_forward<scalar_t>(x, h, wc, m, rm, lg, act, ract, split);
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor> gru_backward(
    const Tensor& dys, const Tensor& dh_last, const Tensor& a, const Tensor& extra,
    const Tensor& hbuf, const Tensor& w, bool has_bias, const OptTensor& mask, const OptTensor& rmask,
    at::IntArrayRef lags, int64_t act, int64_t ract, bool reset_after, bool split) {
  const Tensor m = contiguous_or_empty(mask), rm = contiguous_or_empty(rmask);
  const Lags lg = make_lags(lags, rm);
  return AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "gru_backward", [&] {
    const Tensor dy = dys, dh = dh_last.contiguous(), ac = a.contiguous();
    const Tensor ex = extra.contiguous(), hb = hbuf.contiguous(), wc = w.contiguous();
    return reset_after
               ? gru_after_backward<scalar_t>(dy, dh, ac, ex, hb, wc, has_bias, m, rm, lg, act, ract,
                                                   split)
               : gru_before_backward<scalar_t>(dy, dh, ac, ex, hb, wc, m, rm, lg, act, ract, split);
  });
}

std::tuple<Tensor, Tensor> feedback_forward(
    const Tensor& xw, const Tensor& h0, const Tensor& o0, const Tensor& w, const Tensor& w_oh,
    const Tensor& w_ho, const OptTensor& mask, const OptTensor& rmask, at::IntArrayRef lags,
    int64_t act, int64_t oact, bool split) {
  const Tensor m = contiguous_or_empty(mask), rm = contiguous_or_empty(rmask);
  const Lags lg = make_lags(lags, rm);
  return AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "feedback_forward", [&] {
    return feedback_forward_impl<scalar_t>(xw.contiguous(), h0.contiguous(), o0.contiguous(),
                                           w.contiguous(), w_oh.contiguous(), w_ho.contiguous(), m,
                                           rm, lg, act, oact, split);
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> feedback_backward(
    const Tensor& dys, const Tensor& dh_last, const Tensor& do_last, const Tensor& hbuf,
    const Tensor& obuf, const Tensor& w, const Tensor& w_oh, const Tensor& w_ho,
    const OptTensor& mask, const OptTensor& rmask, at::IntArrayRef lags, int64_t act, int64_t oact,
    bool split) {
  const Tensor m = contiguous_or_empty(mask), rm = contiguous_or_empty(rmask);
  const Lags lg = make_lags(lags, rm);
  return AT_DISPATCH_FLOATING_TYPES(dys.scalar_type(), "feedback_backward", [&] {
    return feedback_backward_impl<scalar_t>(
        dys, dh_last.contiguous(), do_last.contiguous(), hbuf.contiguous(), obuf.contiguous(),
        w.contiguous(), w_oh.contiguous(), w_ho.contiguous(), m, rm, lg, act, oact, split);
  });
}

}  // namespace

TORCH_LIBRARY(rnnkit_fused_cells, m) {
  m.def("simple_forward(Tensor xw, Tensor h0, Tensor w, Tensor? mask, Tensor? rmask, int[] lags, "
        "int act, bool split) -> Tensor", &simple_forward);
  m.def("simple_backward(Tensor dys, Tensor dh_last, Tensor hbuf, Tensor w, Tensor? mask, "
        "Tensor? rmask, int[] lags, int act, bool split) -> (Tensor, Tensor, Tensor)", &simple_backward);
  m.def("lstm_forward(Tensor(a!) xw, Tensor h0, Tensor c0, Tensor w, Tensor? peep_prev, "
        "Tensor? peep_out, Tensor? mask, Tensor? rmask, int[] lags, int act, int ract, bool coupled, "
        "int peephole, bool split) -> (Tensor, Tensor)", &lstm_forward);
  m.def("lstm_backward(Tensor dys, Tensor dh_last, Tensor dc_last, Tensor a, Tensor hbuf, "
        "Tensor cbuf, Tensor w, Tensor? peep_prev, Tensor? peep_out, Tensor? mask, Tensor? rmask, "
        "int[] lags, int act, int ract, bool coupled, int peephole, bool split) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)", &lstm_backward);
  m.def("gru_forward(Tensor xw, Tensor h0, Tensor w, Tensor? bias_hh, Tensor? mask, Tensor? rmask, "
        "int[] lags, int act, int ract, bool reset_after, bool split) -> (Tensor, Tensor, Tensor)", &gru_forward);
  m.def("gru_backward(Tensor dys, Tensor dh_last, Tensor a, Tensor extra, Tensor hbuf, Tensor w, "
        "bool has_bias, Tensor? mask, Tensor? rmask, int[] lags, int act, int ract, "
        "bool reset_after, bool split) -> (Tensor, Tensor, Tensor, Tensor)", &gru_backward);
  m.def("infer(Tensor x, Tensor h0, Tensor? c0, Tensor w_ih, Tensor w_hh, Tensor? bias, "
        "Tensor? bias_hh, Tensor? mask, int kind, int act, int ract, bool split) "
        "-> (Tensor, Tensor, Tensor)", &infer);
  m.def("tile_forward(Tensor x, Tensor h0, Tensor? c0, Tensor w_ih, Tensor w_hh, Tensor? bias, "
        "Tensor? bias_hh, Tensor? mask, int kind, int act, int ract) -> (Tensor, Tensor, Tensor, Tensor)",
        &tile_forward);
  m.def("tile_backward(Tensor dys, Tensor dh_last, Tensor? dc_last, Tensor x, Tensor w_ih, Tensor w_hh, "
        "Tensor? a, Tensor? ghn, Tensor hbuf, Tensor? cbuf, Tensor? mask, int kind, int act, int ract, "
        "bool need_dx) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)", &tile_backward);
  m.def("tile_infer(Tensor x, Tensor h0, Tensor? c0, Tensor w_ih, Tensor w_hh, Tensor? bias, "
        "Tensor? bias_hh, Tensor? mask, int kind, int act, int ract) -> (Tensor, Tensor, Tensor)",
        &tile_infer);
  m.def("feedback_forward(Tensor xw, Tensor h0, Tensor o0, Tensor w, Tensor w_oh, Tensor w_ho, "
        "Tensor? mask, Tensor? rmask, int[] lags, int act, int oact, bool split) -> (Tensor, Tensor)",
        &feedback_forward);
  m.def("feedback_backward(Tensor dys, Tensor dh_last, Tensor do_last, Tensor hbuf, Tensor obuf, "
        "Tensor w, Tensor w_oh, Tensor w_ho, Tensor? mask, Tensor? rmask, int[] lags, int act, "
        "int oact, bool split) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)", &feedback_backward);
}
