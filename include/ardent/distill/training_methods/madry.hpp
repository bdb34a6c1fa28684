#pragma once
// Madry adversarial training (Madry et al., ICLR 2018):
//   min E[ CE(f(x'), y) ],  x' = argmax_{x' in B(x, eps)} CE(f(x'), y).

#include "ardent/core/attack.hpp"
#include "ardent/distill/training_method.hpp"

namespace ardent::training_methods {

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

}  // namespace ardent::training_methods
