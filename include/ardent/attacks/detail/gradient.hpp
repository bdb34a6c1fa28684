#pragma once
// Pieces only the built-in attacks need, beside the public kit (ardent/attacks/kit.hpp) that they
// use as a user's attack does.

#include "ardent/attacks/kit.hpp"

namespace ardent::attacks::detail {

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
