#pragma once
// TRADES (Zhang et al., ICML 2019):
//   min E[ CE(f(x), y) + beta * KL(f(x) || f(x')) ],  x' = argmax_{x' in B(x, eps)} KL(f(x) || f(x')).
// Build the attack with PGDOptions(eps).random_start(false).start_noise(0.001), as
// make_trades_trainer does, to start at x + 0.001 N(0, 1).

#include "ardent/core/check.hpp"
#include "ardent/core/mode_guard.hpp"
#include "ardent/distill/training_method.hpp"
#include "ardent/objectives/builtins.hpp"

namespace ardent::training_methods {

/// TRADES: CE(f(x), y) + beta * KL(f(x) || f(x')), x' maximising KL to the clean outputs f(x)
/// (computed in eval mode, without gradients). An attack that maximises an objective
/// (perturb(model, x, objective)): PGD, APGD, FGSM, BIM, MIFGSM.
class TRADES {
 public:
  /// `beta`: the trade-off between accuracy (0) and robustness; the paper uses 6.
  explicit TRADES(double beta = 6.0) : beta_(beta) {
    check_non_negative("ardent::training_methods::TRADES", "beta", beta);
  }

  double beta() const { return beta_; }

  template <typename Attack, Model M>
  requires requires(Attack& a, M& m, const torch::Tensor& x) {
    { a.perturb(m, x, objectives::KLDivergence{x}) } -> std::same_as<torch::Tensor>;
  }
  torch::Tensor loss(Attack& attack, M& model, const torch::Tensor& x, const torch::Tensor& labels,
                     StepResult& result) const {
    torch::Tensor clean_logits;
    {
      torch::NoGradGuard no_grad;
      const ModeGuard eval(model);
      clean_logits = forward(model, x);
    }
    const auto x_adv = attack.perturb(model, x, objectives::KLDivergence{clean_logits});
    const auto logits = forward(model, x);
    const auto ce = torch::nn::functional::cross_entropy(logits, labels);
    const auto kl =
        objectives::kl_divergence(torch::log_softmax(logits, 1), torch::log_softmax(forward(model, x_adv), 1)).mean();
    result.cross_entropy = ce.template item<double>();
    result.adversarial_distill = beta_ * kl.template item<double>();
    return ce + beta_ * kl;
  }

 private:
  double beta_;
};

}  // namespace ardent::training_methods
