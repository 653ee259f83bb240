// rnnkit's compiled kernel: forward and hand-written BPTT of the SimpleRNN, LSTM and GRU families
// with the time loop in C++ (no Python and no allocation per step).
//
// Dimension legend: B batch, T time, H units, G gates, K lags, L the largest lag, P peephole gates.
//
// Layout, time-major as in engine/fused.py:
//   xw   (T, B, G·H)  the projected inputs A x_t + b (one GEMM over all t, done in Python)
//   hbuf (L+T, B, H)  slot L+t holds h_t; slots 0..L-1 hold h0 (the lag history starts as h0)
//   cbuf (T+1, B, H)  the LSTM cell state; slot 0 holds c0
//   mask (T, B)       1 where the step is real; a masked step carries the state (its slot copies
//                     the previous one) and outputs zero. Python compacts non-prefix masks when
//                     K > 1 first, so reading h_{t-l} from slot L+t-l is exact.
//   rm   (B, K·H)     the recurrent mask multiplying the lagged states
// Per step: one GEMM for the recurrent term (out= into preallocated buffers), the activations as
// one vectorized ATen call per gate block, everything else in plain loops over rows.
// Only what backward needs is kept: gate activations and states. Derivatives come from the
// activation outputs (tanh' = 1 - a², σ' = a (1 - a), relu' = [a > 0]), so no pre-activations.
// Backward keeps the gradient of the lag history in a ring of L+1 slots of (B, H), and forms the
// recurrent weight gradient as one GEMM over all T·B rows after the loop.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <tuple>
#include <vector>

namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

enum Act : int64_t { kLinear = 0, kTanh = 1, kSigmoid = 2, kRelu = 3 };

// a <- act(a) in place; a may be a strided view (one gate block of a step).
void activate_(Tensor a, int64_t act) {
  switch (act) {
    case kTanh: a.tanh_(); break;
    case kSigmoid: a.sigmoid_(); break;
    case kRelu: a.relu_(); break;
    default: break;
  }
}

// out <- act(in)
void activate_out(Tensor& out, const Tensor& in, int64_t act) {
  switch (act) {
    case kTanh: at::tanh_out(out, in); break;
    case kSigmoid: at::sigmoid_out(out, in); break;
    case kRelu: at::clamp_min_out(out, in, 0); break;
    default: out.copy_(in); break;
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

// f(b) for every row b; rows are split over threads only when a step is big enough to pay for it.
template <typename F>
void for_rows(int64_t rows, int64_t cols, const F& f) {
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) f(b);
  });
}

template <typename T>
T* ptr(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

Tensor contiguous_or_empty(const OptTensor& t) {
  return t.has_value() && t->defined() ? t->contiguous() : Tensor();
}

// Step t is real in row b.
template <typename T>
inline bool real(const T* m, int64_t t, int64_t b, int64_t batch) {
  return m == nullptr || m[t * batch + b] != T(0);
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
  Tensor buf = at::empty({lmax + steps, h0.size(0), h0.size(1)}, h0.options());
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
      const T* src = h + ((lags.max + t - lags.l[k]) * batch + b) * hid;
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

// h_lags for every t (T, B, K·H), for the weight gradients
template <typename T>
Tensor all_lags(const Tensor& hbuf, int64_t steps, const Lags& lags, const Tensor& rm) {
  if (lags.plain) return hbuf.narrow(0, lags.max - 1, steps);
  const int64_t width = static_cast<int64_t>(lags.l.size()) * hbuf.size(2);
  Tensor out = at::empty({steps, hbuf.size(1), width}, hbuf.options());
  for (int64_t t = 0; t < steps; ++t) gather_lags<T>(hbuf, t, lags, rm, out.select(0, t));
  return out;
}

// Masked rows of step t keep the previous slot's state.
template <typename T>
void carry_masked(const Tensor& slots, int64_t i, const T* m, int64_t t) {
  if (m == nullptr) return;
  const int64_t batch = slots.size(1), hid = slots.size(2);
  T* base = ptr<T>(slots);
  for (int64_t b = 0; b < batch; ++b) {
    if (real(m, t, b, batch)) continue;
    std::copy_n(base + ((i - 1) * batch + b) * hid, hid, base + (i * batch + b) * hid);
  }
}

// Σ_t dz_tᵀ x_t as one GEMM: (T, B, N), (T, B, M) -> (N, M), written into out
void weight_grad_out(Tensor out, const Tensor& dz, const Tensor& x) {
  at::mm_out(out, dz.reshape({-1, dz.size(-1)}).t(), x.reshape({-1, x.size(-1)}));
}

// Gradient of the lag history h_{-L} .. h_{T-1} in a ring of L+1 slots (B, H): the slot of time
// s is complete once every step that reads h_s has run.
template <typename T>
struct Ring {
  Tensor buf;
  int64_t lmax, batch, hid;

  Ring(const Tensor& dh_last, int64_t steps, int64_t lmax_)
      : buf(at::zeros({lmax_ + 1, dh_last.size(0), dh_last.size(1)}, dh_last.options())),
        lmax(lmax_), batch(dh_last.size(0)), hid(dh_last.size(1)) {
    slot(steps - 1).copy_(dh_last);
  }
  int64_t index(int64_t s) const { return (s + lmax + 1) % (lmax + 1); }
  Tensor slot(int64_t s) { return buf.select(0, index(s)); }
  T* row(int64_t s, int64_t b) { return ptr<T>(buf) + (index(s) * batch + b) * hid; }

  // Start step t: add the output gradient of its real rows; returns dL/dh_t.
  Tensor open(int64_t t, const Tensor& dys, const T* m) {
    const T* dy = ptr<T>(dys) + t * batch * hid;
    for_rows(batch, hid, [&](int64_t b) {
      if (!real(m, t, b, batch)) return;
      T* g = row(t, b);
      for (int64_t j = 0; j < hid; ++j) g[j] += dy[b * hid + j];
    });
    return slot(t);
  }

  // A masked row passes its whole gradient to h_{t-1} (the state it carried).
  void carry(int64_t t, int64_t b) {
    T* g = row(t, b);
    T* prev = row(t - 1, b);
    for (int64_t j = 0; j < hid; ++j) prev[j] += g[j];
  }

  // Backprop dz (B, N) through z = h_lags @ Wᵀ into the history; dhl (B, K·H) is scratch.
  void recurrent(int64_t t, const Tensor& dz, const Tensor& w, const Lags& lags, const Tensor& rm,
                 Tensor& dhl) {
    if (lags.plain) {
      slot(t - 1).addmm_(dz, w);
      return;
    }
    at::mm_out(dhl, dz, w);
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
  void close(int64_t t) { slot(t).zero_(); }

  // dL/dh0: every lag slot of the initial history reads h0.
  Tensor initial() { return buf.sum(0); }
};

// -- SimpleRNN: h_t = act(xw_t + h_lags Wᵀ) -------------------------------------------------------
template <typename T>
Tensor simple_forward_impl(const Tensor& xw, const Tensor& h0, const Tensor& w, const Tensor& m,
                           const Tensor& rm, const Lags& lags, int64_t act) {
  const int64_t steps = xw.size(0), batch = xw.size(1), hid = h0.size(1);
  Tensor hbuf = history(h0, steps, lags.max);
  Tensor hl = lags.plain ? Tensor() : at::empty({batch, hid * (int64_t)lags.l.size()}, xw.options());
  const Tensor wt = w.t();
  const T* mp = ptr<T>(m);
  for (int64_t t = 0; t < steps; ++t) {
    Tensor h = hbuf.select(0, lags.max + t);
    at::addmm_out(h, xw.select(0, t), lag_input<T>(hbuf, t, lags, rm, hl), wt);
    activate_(h, act);
    carry_masked<T>(hbuf, lags.max + t, mp, t);
  }
  return hbuf;
}

template <typename T>
std::tuple<Tensor, Tensor, Tensor> simple_backward_impl(
    const Tensor& dys, const Tensor& dh_last, const Tensor& hbuf, const Tensor& w, const Tensor& m,
    const Tensor& rm, const Lags& lags, int64_t act) {
  const int64_t steps = dys.size(0), batch = dys.size(1), hid = dys.size(2);
  Ring<T> ring(dh_last, steps, lags.max);
  Tensor dz = at::empty_like(dys);
  Tensor dhl = lags.plain ? Tensor() : at::empty({batch, hid * (int64_t)lags.l.size()}, dys.options());
  const T* mp = ptr<T>(m);
  for (int64_t t = steps - 1; t >= 0; --t) {
    ring.open(t, dys, mp);
    const T* h = ptr<T>(hbuf) + (lags.max + t) * batch * hid;
    T* d = ptr<T>(dz) + t * batch * hid;
    for_rows(batch, hid, [&](int64_t b) {
      T* db = d + b * hid;
      if (!real(mp, t, b, batch)) {
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
  Tensor dw = at::empty_like(w);
  weight_grad_out(dw, dz, all_lags<T>(hbuf, steps, lags, rm));
  return {dz, ring.initial(), dw};
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
    T* zb = zp + b * width + col;
    const T* cb = cp + b * hid;
    for (int64_t p = 0; p < count; ++p) zb[p] += wp[p] * cb[p % hid];
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

template <typename T>
std::tuple<Tensor, Tensor, Tensor> lstm_forward_impl(
    const Tensor& xw, const Tensor& h0, const Tensor& c0, const Tensor& w, const Tensor& pp,
    const Tensor& po, const Tensor& m, const Tensor& rm, const Lags& lags, const LSTMConfig& cfg) {
  const int64_t steps = xw.size(0), batch = xw.size(1), gh = xw.size(2), hid = cfg.hid;
  Tensor hbuf = history(h0, steps, lags.max), cbuf = history(c0, steps, 1);
  Tensor a = at::empty_like(xw);
  Tensor tc = at::empty({batch, hid}, xw.options());
  Tensor hl = lags.plain ? Tensor() : at::empty({batch, hid * (int64_t)lags.l.size()}, xw.options());
  const Tensor wt = w.t();
  const T* mp = ptr<T>(m);
  const int64_t ci = cfg.cand(), oi = cfg.out();
  for (int64_t t = 0; t < steps; ++t) {
    Tensor at_ = a.select(0, t), c_prev = cbuf.select(0, t), c_new = cbuf.select(0, t + 1);
    at::addmm_out(at_, xw.select(0, t), lag_input<T>(hbuf, t, lags, rm, hl), wt);
    if (cfg.peephole) peep_<T>(at_, 0, c_prev, pp, cfg.peephole);
    activate_(at_.narrow(1, 0, ci), cfg.ract);
    activate_(at_.narrow(1, ci, hid), cfg.act);
    if (!cfg.peephole) activate_(at_.narrow(1, oi, hid), cfg.ract);
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
    activate_out(tc, c_new, cfg.act);
    if (cfg.peephole) {
      peep_<T>(at_, oi, c_new, po, cfg.peephole);
      activate_(at_.narrow(1, oi, hid), cfg.ract);
    }
    const T* tcp = ptr<T>(tc);
    T* hp = ptr<T>(hbuf) + (lags.max + t) * batch * hid;
    for_rows(batch, hid, [&](int64_t b) {
      for (int64_t j = 0; j < hid; ++j) hp[b * hid + j] = ap[b * gh + oi + j] * tcp[b * hid + j];
    });
    carry_masked<T>(cbuf, t + 1, mp, t);
    carry_masked<T>(hbuf, lags.max + t, mp, t);
  }
  return {a, hbuf, cbuf};
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
    for (int64_t p = 0; p < count; ++p) o[p] += d[r * width + col + p] * cp[r * hid + p % hid];
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

template <typename T>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward_impl(
    const Tensor& dys, const Tensor& dh_last, const Tensor& dc_last, const Tensor& a,
    const Tensor& hbuf, const Tensor& cbuf, const Tensor& w, const Tensor& pp, const Tensor& po,
    const Tensor& m, const Tensor& rm, const Lags& lags, const LSTMConfig& cfg) {
  const int64_t steps = a.size(0), batch = a.size(1), gh = a.size(2), hid = cfg.hid;
  const int64_t ci = cfg.cand(), oi = cfg.out(), np = cfg.prev();
  Ring<T> ring(dh_last, steps, lags.max);
  Tensor dc = dc_last.clone();  // dL/dc_t, carried back step by step
  Tensor dz = at::empty_like(a);
  Tensor tc = at::empty({batch, hid}, a.options());
  Tensor dco = cfg.peephole == 1 ? at::empty({batch, hid}, a.options()) : Tensor();
  Tensor dhl = lags.plain ? Tensor() : at::empty({batch, hid * (int64_t)lags.l.size()}, a.options());
  const T* mp = ptr<T>(m);
  const T* ppp = cfg.peephole == 2 ? ptr<T>(pp) : nullptr;
  const T* pop = cfg.peephole == 2 ? ptr<T>(po) : nullptr;
  T* dcp = ptr<T>(dc);
  for (int64_t t = steps - 1; t >= 0; --t) {
    ring.open(t, dys, mp);
    activate_out(tc, cbuf.select(0, t + 1), cfg.act);
    Tensor dzt = dz.select(0, t);
    const T* ab0 = ptr<T>(a) + t * batch * gh;
    const T* cprev = ptr<T>(cbuf) + t * batch * hid;
    const T* tcp = ptr<T>(tc);
    T* dz0 = ptr<T>(dzt);
    // the output gate, and the masked rows (all of their gradient goes to the carried state)
    for_rows(batch, gh, [&](int64_t b) {
      T* d = dz0 + b * gh;
      if (!real(mp, t, b, batch)) {
        ring.carry(t, b);
        std::fill_n(d, gh, T(0));
        return;
      }
      const T* g = ring.row(t, b);
      const T* ab = ab0 + b * gh;
      for (int64_t j = 0; j < hid; ++j) {
        d[oi + j] = g[j] * tcp[b * hid + j] * deriv(ab[oi + j], cfg.ract);
      }
    });
    if (cfg.peephole == 1) at::mm_out(dco, dzt.narrow(1, oi, hid), po);
    const T* dcop = ptr<T>(dco);
    for_rows(batch, gh, [&](int64_t b) {
      if (!real(mp, t, b, batch)) return;  // dc of a masked row passes to c_{t-1} unchanged
      const T* g = ring.row(t, b);
      const T* ab = ab0 + b * gh;
      const T* cb = cprev + b * hid;
      T* d = dz0 + b * gh;
      T* dcb = dcp + b * hid;
      for (int64_t j = 0; j < hid; ++j) {
        const T tcj = tcp[b * hid + j];
        T dcj = dcb[j] + g[j] * ab[oi + j] * deriv(tcj, cfg.act);
        if (dcop) dcj += dcop[b * hid + j];
        if (pop) dcj += d[oi + j] * pop[j];
        const T gg = ab[ci + j], dg = deriv(gg, cfg.act);
        if (cfg.coupled) {
          const T f = ab[j];
          d[j] = dcj * (cb[j] - gg) * deriv(f, cfg.ract);
          d[ci + j] = dcj * (T(1) - f) * dg;
          dcb[j] = dcj * f + (ppp ? d[j] * ppp[j] : T(0));
        } else {
          const T i = ab[j], f = ab[hid + j];
          d[j] = dcj * gg * deriv(i, cfg.ract);
          d[hid + j] = dcj * cb[j] * deriv(f, cfg.ract);
          d[ci + j] = dcj * i * dg;
          dcb[j] = dcj * f + (ppp ? d[j] * ppp[j] + d[hid + j] * ppp[hid + j] : T(0));
        }
      }
    });
    if (cfg.peephole == 1) dc.addmm_(dzt.narrow(1, 0, np), pp);
    ring.recurrent(t, dzt, w, lags, rm, dhl);
    ring.close(t);
  }
  Tensor dw = at::empty_like(w);
  weight_grad_out(dw, dz, all_lags<T>(hbuf, steps, lags, rm));
  Tensor dpp, dpo;
  if (cfg.peephole) {
    dpp = peep_grad<T>(dz, 0, cbuf.narrow(0, 0, steps), pp, cfg.peephole);
    dpo = peep_grad<T>(dz, oi, cbuf.narrow(0, 1, steps), po, cfg.peephole);
  }
  return {dz, ring.initial(), dc, dw, dpp, dpo};
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

template <typename T>
std::tuple<Tensor, Tensor, Tensor> gru_after_forward(
    const Tensor& xw, const Tensor& h0, const Tensor& w, const Tensor& bias, const Tensor& m,
    const Tensor& rm, const Lags& lags, int64_t act, int64_t ract) {
  const int64_t steps = xw.size(0), batch = xw.size(1), hid = h0.size(1), gh = 3 * hid;
  Tensor hbuf = history(h0, steps, lags.max);
  Tensor a = at::empty_like(xw), ghn = at::empty({steps, batch, hid}, xw.options());
  Tensor rec = at::empty({batch, gh}, xw.options());  // h_lags Wᵀ + b_hh of one step
  Tensor hl = lags.plain ? Tensor() : at::empty({batch, hid * (int64_t)lags.l.size()}, xw.options());
  const Tensor wt = w.t();
  const T* mp = ptr<T>(m);
  for (int64_t t = 0; t < steps; ++t) {
    Tensor hlt = lag_input<T>(hbuf, t, lags, rm, hl);
    if (bias.defined()) {
      at::addmm_out(rec, bias, hlt, wt);
    } else {
      at::mm_out(rec, hlt, wt);
    }
    Tensor at_ = a.select(0, t);
    T* ap = ptr<T>(at_);
    const T* xp = ptr<T>(xw) + t * batch * gh;
    const T* rp = ptr<T>(rec);
    T* np = ptr<T>(ghn) + t * batch * hid;
    for_rows(batch, gh, [&](int64_t b) {
      for (int64_t j = 0; j < 2 * hid; ++j) ap[b * gh + j] = xp[b * gh + j] + rp[b * gh + j];
    });
    activate_(at_.narrow(1, 0, 2 * hid), ract);
    for_rows(batch, gh, [&](int64_t b) {
      for (int64_t j = 0; j < hid; ++j) {
        const T rn = rp[b * gh + 2 * hid + j];
        np[b * hid + j] = rn;
        ap[b * gh + 2 * hid + j] = xp[b * gh + 2 * hid + j] + ap[b * gh + j] * rn;
      }
    });
    activate_(at_.narrow(1, 2 * hid, hid), act);
    T* h = ptr<T>(hbuf) + (lags.max + t) * batch * hid;
    interpolate<T>(h, h - batch * hid, ap, gh, hid, ap, gh, 2 * hid, batch, hid);
    carry_masked<T>(hbuf, lags.max + t, mp, t);
  }
  return {a, ghn, hbuf};
}

template <typename T>
std::tuple<Tensor, Tensor, Tensor, Tensor> gru_after_backward(
    const Tensor& dys, const Tensor& dh_last, const Tensor& a, const Tensor& ghn, const Tensor& hbuf,
    const Tensor& w, bool has_bias, const Tensor& m, const Tensor& rm, const Lags& lags, int64_t act,
    int64_t ract) {
  const int64_t steps = a.size(0), batch = a.size(1), hid = dys.size(2), gh = 3 * hid;
  Ring<T> ring(dh_last, steps, lags.max);
  Tensor dxw = at::empty_like(a);
  Tensor drec = at::empty({batch, gh}, a.options());  // gradient of h_lags Wᵀ + b_hh, one step
  Tensor dhl = lags.plain ? Tensor() : at::empty({batch, hid * (int64_t)lags.l.size()}, a.options());
  const T* mp = ptr<T>(m);
  T* dr = ptr<T>(drec);
  for (int64_t t = steps - 1; t >= 0; --t) {
    ring.open(t, dys, mp);
    const T* ab0 = ptr<T>(a) + t * batch * gh;
    const T* gn0 = ptr<T>(ghn) + t * batch * hid;
    const T* hp0 = ptr<T>(hbuf) + (lags.max + t - 1) * batch * hid;
    T* dx0 = ptr<T>(dxw) + t * batch * gh;
    for_rows(batch, gh, [&](int64_t b) {
      T* dx = dx0 + b * gh;
      T* drb = dr + b * gh;
      if (!real(mp, t, b, batch)) {
        ring.carry(t, b);
        std::fill_n(dx, gh, T(0));
        std::fill_n(drb, gh, T(0));
        return;
      }
      T* g = ring.row(t, b);
      T* gprev = ring.row(t - 1, b);
      const T* ab = ab0 + b * gh;
      for (int64_t j = 0; j < hid; ++j) {
        const T r = ab[j], z = ab[hid + j], n = ab[2 * hid + j], gj = g[j];
        const T dn = gj * (T(1) - z) * deriv(n, act);
        const T dzp = gj * (hp0[b * hid + j] - n) * deriv(z, ract);
        const T drp = dn * gn0[b * hid + j] * deriv(r, ract);
        dx[j] = drp;
        dx[hid + j] = dzp;
        dx[2 * hid + j] = dn;
        drb[j] = drp;
        drb[hid + j] = dzp;
        drb[2 * hid + j] = dn * r;
        gprev[j] += gj * z;
      }
    });
    ring.recurrent(t, drec, w, lags, rm, dhl);
    ring.close(t);
  }
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
  return {dxw, ring.initial(), dw, db};
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
std::tuple<Tensor, Tensor, Tensor> gru_before_forward(
    const Tensor& xw, const Tensor& h0, const Tensor& w, const Tensor& m, const Tensor& rm,
    const Lags& lags, int64_t act, int64_t ract) {
  const int64_t steps = xw.size(0), batch = xw.size(1), hid = h0.size(1);
  const int64_t nl = static_cast<int64_t>(lags.l.size());
  Tensor hbuf = history(h0, steps, lags.max);
  Tensor arz = at::empty({steps, batch, 2 * hid}, xw.options());
  Tensor an = at::empty({steps, batch, hid}, xw.options());
  Tensor rh = at::empty({batch, nl * hid}, xw.options());
  Tensor hl = lags.plain ? Tensor() : at::empty({batch, nl * hid}, xw.options());
  const Tensor w_rz = w.narrow(0, 0, 2 * hid).t(), w_n = w.narrow(0, 2 * hid, hid).t();
  const T* mp = ptr<T>(m);
  for (int64_t t = 0; t < steps; ++t) {
    Tensor x = xw.select(0, t), rz = arz.select(0, t), n = an.select(0, t);
    Tensor hlt = lag_input<T>(hbuf, t, lags, rm, hl).contiguous();
    at::addmm_out(rz, x.narrow(1, 0, 2 * hid), hlt, w_rz);
    activate_(rz, ract);
    reset_lags<T>(ptr<T>(rh), ptr<T>(rz), 2 * hid, ptr<T>(hlt), batch, hid, nl);
    at::addmm_out(n, x.narrow(1, 2 * hid, hid), rh, w_n);
    activate_(n, act);
    T* h = ptr<T>(hbuf) + (lags.max + t) * batch * hid;
    interpolate<T>(h, h - batch * hid, ptr<T>(rz), 2 * hid, hid, ptr<T>(n), hid, 0, batch, hid);
    carry_masked<T>(hbuf, lags.max + t, mp, t);
  }
  return {arz, an, hbuf};
}

template <typename T>
std::tuple<Tensor, Tensor, Tensor, Tensor> gru_before_backward(
    const Tensor& dys, const Tensor& dh_last, const Tensor& arz, const Tensor& an, const Tensor& hbuf,
    const Tensor& w, const Tensor& m, const Tensor& rm, const Lags& lags, int64_t act, int64_t ract) {
  const int64_t steps = an.size(0), batch = an.size(1), hid = an.size(2), gh = 3 * hid;
  const int64_t nl = static_cast<int64_t>(lags.l.size());
  Ring<T> ring(dh_last, steps, lags.max);
  Tensor dxw = at::empty({steps, batch, gh}, an.options());
  Tensor drh = at::empty({batch, nl * hid}, an.options());  // gradient of r_rep * h_lags, then h_lags
  Tensor hl = lags.plain ? Tensor() : at::empty({batch, nl * hid}, an.options());
  const Tensor w_rz = w.narrow(0, 0, 2 * hid), w_n = w.narrow(0, 2 * hid, hid);
  const T* mp = ptr<T>(m);
  for (int64_t t = steps - 1; t >= 0; --t) {
    ring.open(t, dys, mp);
    const T* rz = ptr<T>(arz) + t * batch * 2 * hid;
    const T* n = ptr<T>(an) + t * batch * hid;
    const T* hp0 = ptr<T>(hbuf) + (lags.max + t - 1) * batch * hid;
    Tensor dx = dxw.select(0, t);
    T* dx0 = ptr<T>(dx);
    for_rows(batch, gh, [&](int64_t b) {
      T* d = dx0 + b * gh;
      if (!real(mp, t, b, batch)) {
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
        d[j] = real(mp, t, b, batch) ? acc * deriv(r, ract) : T(0);
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
  Tensor hl_all = all_lags<T>(hbuf, steps, lags, rm);
  Tensor rh_all = at::empty({steps, batch, nl * hid}, an.options());
  for (int64_t t = 0; t < steps; ++t) {
    reset_lags<T>(ptr<T>(rh_all) + t * batch * nl * hid, ptr<T>(arz) + t * batch * 2 * hid, 2 * hid,
                  ptr<T>(hl_all.select(0, t).contiguous()), batch, hid, nl);
  }
  Tensor dw = at::empty_like(w);
  weight_grad_out(dw.narrow(0, 0, 2 * hid), dxw.narrow(2, 0, 2 * hid), hl_all);
  weight_grad_out(dw.narrow(0, 2 * hid, hid), dxw.narrow(2, 2 * hid, hid), rh_all);
  return {dxw, ring.initial(), dw, Tensor()};
}

// -- the operators -------------------------------------------------------------------------------
Tensor simple_forward(const Tensor& xw, const Tensor& h0, const Tensor& w, const OptTensor& mask,
                      const OptTensor& rmask, at::IntArrayRef lags, int64_t act) {
  const Tensor m = contiguous_or_empty(mask), rm = contiguous_or_empty(rmask);
  const Lags lg = make_lags(lags, rm);
  return AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "simple_forward", [&] {
    return simple_forward_impl<scalar_t>(xw.contiguous(), h0.contiguous(), w.contiguous(), m, rm,
                                         lg, act);
  });
}

std::tuple<Tensor, Tensor, Tensor> simple_backward(
    const Tensor& dys, const Tensor& dh_last, const Tensor& hbuf, const Tensor& w,
    const OptTensor& mask, const OptTensor& rmask, at::IntArrayRef lags, int64_t act) {
  const Tensor m = contiguous_or_empty(mask), rm = contiguous_or_empty(rmask);
  const Lags lg = make_lags(lags, rm);
  return AT_DISPATCH_FLOATING_TYPES(dys.scalar_type(), "simple_backward", [&] {
    return simple_backward_impl<scalar_t>(dys.contiguous(), dh_last.contiguous(), hbuf.contiguous(),
                                          w.contiguous(), m, rm, lg, act);
  });
}

LSTMConfig lstm_config(const Tensor& h0, const Tensor& xw, int64_t act, int64_t ract, bool coupled,
                       int64_t peephole) {
  return {act, ract, coupled, peephole, h0.size(1), xw.size(-1) / h0.size(1)};
}

std::tuple<Tensor, Tensor, Tensor> lstm_forward(
    const Tensor& xw, const Tensor& h0, const Tensor& c0, const Tensor& w, const OptTensor& peep_prev,
    const OptTensor& peep_out, const OptTensor& mask, const OptTensor& rmask, at::IntArrayRef lags,
    int64_t act, int64_t ract, bool coupled, int64_t peephole) {
  const Tensor m = contiguous_or_empty(mask), rm = contiguous_or_empty(rmask);
  const Tensor pp = contiguous_or_empty(peep_prev), po = contiguous_or_empty(peep_out);
  const Lags lg = make_lags(lags, rm);
  const LSTMConfig cfg = lstm_config(h0, xw, act, ract, coupled, peephole);
  return AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "lstm_forward", [&] {
    return lstm_forward_impl<scalar_t>(xw.contiguous(), h0.contiguous(), c0.contiguous(),
                                       w.contiguous(), pp, po, m, rm, lg, cfg);
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward(
    const Tensor& dys, const Tensor& dh_last, const Tensor& dc_last, const Tensor& a,
    const Tensor& hbuf, const Tensor& cbuf, const Tensor& w, const OptTensor& peep_prev,
    const OptTensor& peep_out, const OptTensor& mask, const OptTensor& rmask, at::IntArrayRef lags,
    int64_t act, int64_t ract, bool coupled, int64_t peephole) {
  const Tensor m = contiguous_or_empty(mask), rm = contiguous_or_empty(rmask);
  const Tensor pp = contiguous_or_empty(peep_prev), po = contiguous_or_empty(peep_out);
  const Lags lg = make_lags(lags, rm);
  const LSTMConfig cfg = lstm_config(dh_last, a, act, ract, coupled, peephole);
  return AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "lstm_backward", [&] {
    return lstm_backward_impl<scalar_t>(dys.contiguous(), dh_last.contiguous(), dc_last.contiguous(),
                                        a.contiguous(), hbuf.contiguous(), cbuf.contiguous(),
                                        w.contiguous(), pp, po, m, rm, lg, cfg);
  });
}

std::tuple<Tensor, Tensor, Tensor> gru_forward(
    const Tensor& xw, const Tensor& h0, const Tensor& w, const OptTensor& bias_hh,
    const OptTensor& mask, const OptTensor& rmask, at::IntArrayRef lags, int64_t act, int64_t ract,
    bool reset_after) {
  const Tensor m = contiguous_or_empty(mask), rm = contiguous_or_empty(rmask);
  const Tensor bias = contiguous_or_empty(bias_hh);
  const Lags lg = make_lags(lags, rm);
  return AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "gru_forward", [&] {
    const Tensor x = xw.contiguous(), h = h0.contiguous(), wc = w.contiguous();
    return reset_after ? gru_after_forward<scalar_t>(x, h, wc, bias, m, rm, lg, act, ract)
                       : gru_before_forward<scalar_t>(x, h, wc, m, rm, lg, act, ract);
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor> gru_backward(
    const Tensor& dys, const Tensor& dh_last, const Tensor& a, const Tensor& extra,
    const Tensor& hbuf, const Tensor& w, bool has_bias, const OptTensor& mask, const OptTensor& rmask,
    at::IntArrayRef lags, int64_t act, int64_t ract, bool reset_after) {
  const Tensor m = contiguous_or_empty(mask), rm = contiguous_or_empty(rmask);
  const Lags lg = make_lags(lags, rm);
  return AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "gru_backward", [&] {
    const Tensor dy = dys.contiguous(), dh = dh_last.contiguous(), ac = a.contiguous();
    const Tensor ex = extra.contiguous(), hb = hbuf.contiguous(), wc = w.contiguous();
    return reset_after
               ? gru_after_backward<scalar_t>(dy, dh, ac, ex, hb, wc, has_bias, m, rm, lg, act, ract)
               : gru_before_backward<scalar_t>(dy, dh, ac, ex, hb, wc, m, rm, lg, act, ract);
  });
}

}  // namespace

TORCH_LIBRARY(rnnkit_fused_cells, m) {
  m.def("simple_forward(Tensor xw, Tensor h0, Tensor w, Tensor? mask, Tensor? rmask, int[] lags, "
        "int act) -> Tensor", &simple_forward);
  m.def("simple_backward(Tensor dys, Tensor dh_last, Tensor hbuf, Tensor w, Tensor? mask, "
        "Tensor? rmask, int[] lags, int act) -> (Tensor, Tensor, Tensor)", &simple_backward);
  m.def("lstm_forward(Tensor xw, Tensor h0, Tensor c0, Tensor w, Tensor? peep_prev, "
        "Tensor? peep_out, Tensor? mask, Tensor? rmask, int[] lags, int act, int ract, bool coupled, "
        "int peephole) -> (Tensor, Tensor, Tensor)", &lstm_forward);
  m.def("lstm_backward(Tensor dys, Tensor dh_last, Tensor dc_last, Tensor a, Tensor hbuf, "
        "Tensor cbuf, Tensor w, Tensor? peep_prev, Tensor? peep_out, Tensor? mask, Tensor? rmask, "
        "int[] lags, int act, int ract, bool coupled, int peephole) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)", &lstm_backward);
  m.def("gru_forward(Tensor xw, Tensor h0, Tensor w, Tensor? bias_hh, Tensor? mask, Tensor? rmask, "
        "int[] lags, int act, int ract, bool reset_after) -> (Tensor, Tensor, Tensor)", &gru_forward);
  m.def("gru_backward(Tensor dys, Tensor dh_last, Tensor a, Tensor extra, Tensor hbuf, Tensor w, "
        "bool has_bias, Tensor? mask, Tensor? rmask, int[] lags, int act, int ract, "
        "bool reset_after) -> (Tensor, Tensor, Tensor, Tensor)", &gru_backward);
}
