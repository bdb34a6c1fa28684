#pragma once
// Machinery shared by the built-in attacks: the public kit (ardent/attacks/kit.hpp) under the
// names the attacks use, and the pieces only they need.

#include "ardent/attacks/kit.hpp"

namespace ardent::attacks::detail {

using attacks::ascent_direction;
using attacks::attack_copy;
using attacks::AttackScope;
using attacks::check_call;
using attacks::check_common_options;
using attacks::FrozenParameters;
using attacks::l2_norm;
using attacks::loss_and_gradient;
using attacks::LossAndGradient;
using attacks::model_layout;
using attacks::per_sample;
using attacks::project;
using attacks::project_l2;
using attacks::project_linf;
using attacks::random_start;
using attacks::to_objective;

/// The per-sample objective at x, without building a graph or checking.
template <Model M, Objective O>
torch::Tensor loss_only(M& model, const torch::Tensor& x, const O& objective) {
  torch::NoGradGuard no_grad;
  return objectives::evaluate(objective, forward(model, model_layout(x)));
}

/// Across restarts, keeps for each sample the adversarial point with the highest loss.
class BestPerSample {
 public:
  void offer(const torch::Tensor& x_adv, const torch::Tensor& loss) {
    if (!best_.defined()) {
      best_ = x_adv;
      best_loss_ = loss;
      return;
    }
    const auto improved = loss > best_loss_;
    best_ = torch::where(per_sample(improved, x_adv), x_adv, best_);
    best_loss_ = torch::where(improved, loss, best_loss_);
  }
  torch::Tensor result() const { return best_.detach(); }

 private:
  torch::Tensor best_;
  torch::Tensor best_loss_;
};

}  // namespace ardent::attacks::detail
