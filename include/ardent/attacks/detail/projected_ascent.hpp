#pragma once
// The iteration shared by PGD and BIM (Madry et al. 2018; Kurakin et al. 2017):
//   x' <- clamp_box( Proj_B(x, eps)( x' + a * d(grad_x' L(x')) ) ),   d = sign (Linf) or g / ||g||_2 (L2).
// (Linf: the exact projection onto the ball ∩ box; L2: scaled into the ball, then clamped to the box,
// which keeps it in the ball because x lies in the box.)

#include "ardent/attacks/detail/gradient.hpp"

namespace ardent::attacks::detail {

struct AscentSettings {
  Norm norm;
  double epsilon;
  double step_size;
  int64_t steps;
  double clip_min;
  double clip_max;
};

/// With Speedups::fused_linf_step a Linf step is x' <- clamp(x' + a sign(g), lower, upper) with
/// lower = max(x - eps, lo) and upper = min(x + eps, hi) computed once: the same point as the
/// projection followed by the box clamp, in three passes over memory instead of seven.
template <Model M, Objective O>
torch::Tensor projected_ascent(M& model, const torch::Tensor& x, torch::Tensor x_adv, const O& objective,
                               const AscentSettings& s) {
  if (s.norm == Norm::Linf && runtime::speedups().fused_linf_step) {
    const auto lower = (x - s.epsilon).clamp_min_(s.clip_min);
    const auto upper = (x + s.epsilon).clamp_max_(s.clip_max);
    for (int64_t step = 0; step < s.steps; ++step) {
      auto gradient = loss_and_gradient(model, x_adv, objective, /*check=*/step == 0).gradient;
      x_adv = torch::add(x_adv, gradient.sign_(), s.step_size).clamp_(lower, upper);
    }
    return x_adv;
  }
  for (int64_t step = 0; step < s.steps; ++step) {
    const auto gradient = loss_and_gradient(model, x_adv, objective, /*check=*/step == 0).gradient;
    x_adv = project(s.norm, x_adv + s.step_size * ascent_direction(s.norm, gradient), x, s.epsilon, s.clip_min,
                    s.clip_max);
  }
  return x_adv;
}

}  // namespace ardent::attacks::detail
