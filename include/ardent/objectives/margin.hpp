#pragma once
// The Carlini-Wagner margin of the classes (Carlini and Wagner, "Towards Evaluating the Robustness
// of Neural Networks", IEEE S&P 2017), the one definition every attack, objective and check uses:
//
//   cw_margin(z, y)              = z_y - max_{i != y} z_i      > 0 while the model still predicts y
//   cw_margin(z, Targeted{t})    = max_{i != t} z_i - z_t      > 0 while the model does not yet predict t
//
// so that in both forms an attack drives the margin below zero. The maximum over the other classes
// masks the class with -inf, not by multiplying by zero, which is wrong when every logit is
// negative. is_adversarial(z, goal) says whether the goal is reached: argmax != y, or argmax == t.
// The attack kit (ardent/attacks/kit.hpp) offers these to every attack, a user's included.

#include "ardent/core/attack.hpp"

#include <torch/torch.h>

#include <limits>

namespace ardent::objectives {

/// z_c per sample: the logit of each sample's class `classes` [B], from logits [B, C].
inline torch::Tensor class_logit(const torch::Tensor& logits, const torch::Tensor& classes) {
  return logits.gather(1, classes.unsqueeze(1)).squeeze(1);
}

/// max_{i != c} z_i per sample: the largest logit among the classes other than `classes`.
inline torch::Tensor max_other_logit(const torch::Tensor& logits, const torch::Tensor& classes) {
  const auto own = torch::one_hot(classes, logits.size(1)).to(torch::kBool);
  return logits.masked_fill(own, -std::numeric_limits<double>::infinity()).amax(1);
}

/// z_y - max_{i != y} z_i per sample: positive while the model predicts y.
inline torch::Tensor cw_margin(const torch::Tensor& logits, const torch::Tensor& labels) {
  return class_logit(logits, labels) - max_other_logit(logits, labels);
}

/// max_{i != t} z_i - z_t per sample: positive while the model does not predict t.
inline torch::Tensor cw_margin(const torch::Tensor& logits, const Targeted& goal) {
  return max_other_logit(logits, goal.targets) - class_logit(logits, goal.targets);
}

/// Per sample, whether the goal is reached: argmax != y for labels, argmax == t for targets.
inline torch::Tensor is_adversarial(const torch::Tensor& logits, const torch::Tensor& labels) {
  return logits.argmax(1).ne(labels);
}
inline torch::Tensor is_adversarial(const torch::Tensor& logits, const Targeted& goal) {
  return logits.argmax(1).eq(goal.targets);
}

}  // namespace ardent::objectives
