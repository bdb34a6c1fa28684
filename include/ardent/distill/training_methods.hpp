#pragma once
// Training methods: what an AdversarialTrainer minimises, a policy type (its last template
// parameter), as the Distiller's attack objective is, so that a method the attack cannot serve
// fails to compile and each method is its own trainer type:
//
//   Madry    Madry et al., ICLR 2018:      min E[ CE(f(x'), y) ],  x' = argmax_{B(x, eps)} CE(f(x'), y)
//   TRADES   Zhang et al., ICML 2019:      min E[ CE(f(x), y) + beta * KL(f(x) || f(x')) ],
//                                          x' = argmax_{B(x, eps)} KL(f(x) || f(x'))
//
// (for TRADES, build the attack with PGDOptions(eps).random_start(false).start_noise(0.001), as
// make_trades_trainer does, to start at x + 0.001 N(0, 1)). A method is a type with the member
//
//   template <typename Attack, ardent::Model M>
//   torch::Tensor loss(Attack& attack, M& model, const torch::Tensor& x, const torch::Tensor& labels,
//                      ardent::StepResult& result) const;
//
// constrained on what it asks of the attack (ardent::TrainingMethodFor). It runs with the model in
// train mode; x and the labels are already checked; it fills the parts of `result` it computes.

#include "ardent/core/attack.hpp"
#include "ardent/core/check.hpp"
#include "ardent/core/divergence.hpp"
#include "ardent/core/mode_guard.hpp"
#include "ardent/distill/options.hpp"

namespace ardent {

/// `Method` can train a model of type `M` with `Attack`.
template <typename Method, typename Attack, typename M>
concept TrainingMethodFor = requires(const Method& method, Attack& attack, M& model, const torch::Tensor& x,
                                     StepResult& result) {
  { method.loss(attack, model, x, x, result) } -> std::same_as<torch::Tensor>;
};

namespace training_methods {

/// Madry adversarial training: cross-entropy on x' = attack.perturb(model, x, labels). Any attack.
struct Madry {
  template <typename Attack, Model M>
  requires HasPerturb<Attack, M> torch::Tensor loss(Attack& attack, M& model, const torch::Tensor& x,
                                                    const torch::Tensor& labels, StepResult& result)
  const {
    const auto x_adv = attack.perturb(model, x, labels);
    auto ce = torch::nn::functional::cross_entropy(forward(model, x_adv), labels);
    result.cross_entropy = ce.template item<double>();
    return ce;
  }
};

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
    const auto kl = kl_divergence(torch::log_softmax(logits, 1), torch::log_softmax(forward(model, x_adv), 1)).mean();
    result.cross_entropy = ce.template item<double>();
    result.adversarial_distill = beta_ * kl.template item<double>();
    return ce + beta_ * kl;
  }

 private:
  double beta_;
};

}  // namespace training_methods

namespace recipes {
/// Madry adversarial training (the AdversarialTrainer's default method).
inline training_methods::Madry madry() { return {}; }
/// TRADES with the trade-off `beta`.
inline training_methods::TRADES trades(double beta = 6.0) { return training_methods::TRADES(beta); }
}  // namespace recipes

}  // namespace ardent
