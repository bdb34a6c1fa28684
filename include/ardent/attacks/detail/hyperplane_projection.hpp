#pragma once
// The projections of FAB (Croce and Hein, "Minimally distorted adversarial examples with a fast
// adaptive boundary attack", ICML 2020, arXiv:1907.02044, section 3.1): for each row, the smallest
// displacement d (in the Linf or the L2 norm) that moves the point t onto the hyperplane
// <w, t + d> = b while keeping t + d inside the box [lo, hi]^D,
//
//   d* = argmin ||d||_p   subject to   <w, t + d> = b,   lo <= t + d <= hi.
//
// With the sign of (w, b) chosen so that <w, t> >= b, the constraint asks <w, d> = beta <= 0, and
// for a multiplier lambda >= 0 the solutions have the form
//
//   Linf:  d_i(lambda) = clip(-lambda sign(w_i), lo - t_i, hi - t_i)
//   L2:    d_i(lambda) = clip(-lambda w_i,       lo - t_i, hi - t_i)
//
// with <w, d(lambda)> decreasing in lambda. Coordinate i saturates at the box once lambda passes
// its own breakpoint; between two consecutive breakpoints <w, d(lambda)> is affine, so sorting the
// breakpoints, accumulating the slopes and searching for the segment that contains beta gives
// lambda in O(D log D) per row. A hyperplane the box cannot reach (beta below <w, corner>, corner
// = the box vertex that minimises <w, .>) leaves d at that corner. Coordinates with w_i = 0 (L2:
// |w_i| < 1e-8) do not move. Every row is solved at once: sorts, cumulative sums and a binary
// search of ceil(log2 D) gathers over [R, D] tensors.

#include "ardent/core/attack.hpp"

#include <torch/torch.h>

#include <cmath>

namespace ardent::attacks::detail {

/// The binary search shared by both projections: per row, with `below(m)` true for a prefix of
/// the indices 0 .. D - 1 (up to rounding), the last index lb with below(lb) once ub - lb <= 1.
/// Runs ceil(log2 D) halvings on every row together.
template <typename Below>
torch::Tensor last_index_below(int64_t rows, int64_t dimension, const torch::TensorOptions& options,
                               const Below& below) {
  auto lb = torch::zeros({rows, 1}, options.dtype(torch::kLong));
  auto ub = torch::full({rows, 1}, dimension - 1, options.dtype(torch::kLong));
  const auto halvings = static_cast<int64_t>(std::ceil(std::log2(static_cast<double>(dimension))));
  for (int64_t i = 0; i < halvings; ++i) {
    const auto middle = torch::div(lb + ub, 2, "floor");
    const auto go_up = below(middle);
    lb = torch::where(go_up, middle, lb);
    ub = torch::where(go_up, ub, middle);
  }
  return lb;
}

/// Linf: the displacements d [R, D] of the rows t [R, D] (in the box) onto <w, .> = b (w [R, D],
/// b [R]), each of least Linf norm, d_i = clip(-lambda sign(w_i), lo - t_i, hi - t_i).
/// lambda comes from the descending order of each coordinate's room p_i (the distance to the box
/// face it moves toward): with s_k the sum of |w| over the k + 1 largest rooms and sb_k the value
/// of <w, d> contributed by the other coordinates (at their corners), <w, d(p_(k))> = sb_k - s_k p_(k).
inline torch::Tensor hyperplane_projection_linf(const torch::Tensor& t, const torch::Tensor& w_in,
                                                const torch::Tensor& b_in, double lo = 0.0, double hi = 1.0) {
  const int64_t rows = t.size(0);
  const int64_t dimension = t.size(1);
  const auto sign = torch::where((w_in * t).sum(1) >= b_in, 1.0, -1.0).to(t.scalar_type());
  const auto w = w_in * sign.unsqueeze(1);
  const auto b = b_in * sign;
  const auto moves_up = w < 0;  // these coordinates increase (toward hi), the others decrease
  const auto weighted = w != 0;
  const auto corner = torch::where(moves_up, hi - t, lo - t) * weighted;
  const auto room = torch::where(moves_up, hi - t, t - lo);

  const auto beta = b - (w * t).sum(1);        // the required <w, d>, <= 0
  const auto at_corner = (w * corner).sum(1);  // the smallest reachable <w, d>

  const auto order = std::get<1>(room.sort(/*dim=*/1, /*descending=*/true));
  const auto w_sorted = w.gather(1, order);
  const auto room_sorted = room.gather(1, order);
  const auto s = w_sorted.abs().cumsum(1);
  const auto sb = at_corner.unsqueeze(1) - (w_sorted * corner.gather(1, order)).cumsum(1);
  const auto value_at = [&](const torch::Tensor& k) {  // <w, d(p_(k))>, k [R, 1]
    return (sb.gather(1, k) - s.gather(1, k) * room_sorted.gather(1, k)).squeeze(1);
  };

  // lambda below every room: no coordinate saturates, <w, d> = -s_{D-1} lambda.
  const auto last = torch::full({rows, 1}, dimension - 1, t.options().dtype(torch::kLong));
  const auto all_free = beta > value_at(last);
  const auto s_last = s.select(1, dimension - 1);
  const auto safe = [](const torch::Tensor& v) { return torch::where(v == 0, torch::ones_like(v), v); };
  const auto lambda_free = ((beta - sb.select(1, dimension - 1)) / -safe(s_last)).clamp_min(0.0);
  // Otherwise, if reachable, the segment between two breakpoints that contains beta.
  const auto bracketed = (beta > at_corner).logical_and(all_free.logical_not());
  const auto lb = last_index_below(rows, dimension, t.options(),
                                   [&](const torch::Tensor& m) { return (beta > value_at(m)).unsqueeze(1); });
  const auto lambda_segment =
      ((beta - sb.gather(1, lb).squeeze(1)) / -safe(s.gather(1, lb).squeeze(1))).clamp_min(0.0).unsqueeze(1);

  const auto up = moves_up.to(t.scalar_type());
  const auto d_free = (2 * up - 1) * lambda_free.unsqueeze(1);
  const auto d_segment = torch::where(moves_up, torch::minimum(lambda_segment, corner),
                                      torch::maximum(-lambda_segment, corner));
  const auto d = torch::where(all_free.unsqueeze(1), d_free, torch::where(bracketed.unsqueeze(1), d_segment, corner));
  return d * weighted;
}

/// L2: the displacements d [R, D] of least L2 norm, d_i = clip(-mu w_i, lo - t_i, hi - t_i).
/// Coordinate i saturates at mu = r_i; with the r sorted ascending and ws_k the sum of w^2 over
/// the coordinates still free after the k + 1 smallest, S_k = <w, d(r_(k))> follows from
/// S_0 = -W r_(0), S_{k+1} = S_k - (r_(k+1) - r_(k)) ws_k.
inline torch::Tensor hyperplane_projection_l2(const torch::Tensor& t, const torch::Tensor& w_in,
                                              const torch::Tensor& b_in, double lo = 0.0, double hi = 1.0) {
  constexpr double tiny = 1e-8;
  constexpr double never = 1e12;
  const int64_t rows = t.size(0);
  const int64_t dimension = t.size(1);
  auto c = (w_in * t).sum(1) - b_in;
  const auto sign = torch::where(c >= 0, 1.0, -1.0).to(t.scalar_type());
  const auto w = w_in * sign.unsqueeze(1);
  c = c * sign;  // <w, d> = -c <= 0 is required
  const auto weighted = w.abs() > tiny;

  auto r = torch::maximum((t - lo) / w, (t - hi) / w).clamp(-never, never);
  r = torch::where(weighted, r, torch::full_like(r, never));
  r = torch::where(r == -never, torch::full_like(r, never), r);
  const auto [r_sorted_raw, order] = r.sort(/*dim=*/1);
  auto next_sorted = torch::nn::functional::pad(r_sorted_raw.slice(1, 1),
                                                torch::nn::functional::PadFuncOptions({0, 1}));
  const auto r_sorted = torch::where(r_sorted_raw == never, torch::zeros_like(r_sorted_raw), r_sorted_raw);
  next_sorted = torch::where(next_sorted == never, torch::zeros_like(next_sorted), next_sorted);

  const auto w2_sorted = w.pow(2).gather(1, order);
  const auto w2_total = w2_sorted.sum(1, /*keepdim=*/true);
  const auto ws = w2_total - w2_sorted.cumsum(1);
  const auto corner = -(r * w) * weighted;  // every coordinate saturated
  const auto s0 = -w2_total * r_sorted.slice(1, 0, 1);
  const auto s = torch::cat({s0, ((r_sorted - next_sorted) * ws).cumsum(1) + s0}, 1);

  const auto before_first = (s.select(1, 0) + c) < 0;  // mu below every breakpoint
  const auto unreachable = ((corner * w).sum(1) + c) > 0;
  const auto bracketed = before_first.logical_or(unreachable).logical_not();

  const auto d_free = -(c / w2_total.squeeze(1).clamp_min(1e-30)).unsqueeze(1) * w;
  const auto lb = last_index_below(rows, dimension, t.options(),
                                   [&](const torch::Tensor& m) { return (s.gather(1, m) + c.unsqueeze(1)) > 0; });
  const auto ws_lb = ws.gather(1, lb);
  auto mu = (s.gather(1, lb) + c.unsqueeze(1)) / torch::where(ws_lb == 0, torch::ones_like(ws_lb), ws_lb) +
            r_sorted.gather(1, lb);
  mu = torch::where(ws_lb == 0, torch::zeros_like(mu), mu);
  const auto d_segment = torch::where(mu > r, corner, -mu * w);

  const auto d = torch::where(before_first.unsqueeze(1), d_free,
                              torch::where(bracketed.unsqueeze(1), d_segment, corner));
  return d * weighted;
}

/// The projection of `norm`.
inline torch::Tensor hyperplane_projection(Norm norm, const torch::Tensor& t, const torch::Tensor& w,
                                           const torch::Tensor& b, double lo = 0.0, double hi = 1.0) {
  return norm == Norm::Linf ? hyperplane_projection_linf(t, w, b, lo, hi) : hyperplane_projection_l2(t, w, b, lo, hi);
}

}  // namespace ardent::attacks::detail
