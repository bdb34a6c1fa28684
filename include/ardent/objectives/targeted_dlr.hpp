#pragma once
// The targeted difference of logits ratio (Croce and Hein, "Reliable evaluation of adversarial
// robustness with an ensemble of diverse parameter-free attacks", ICML 2020, eq. 7):
//
//   TargetedDLR{y, t}(z) = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)
//
// with z_pi1 >= z_pi2 >= ... the sorted logits. Like DLR it is invariant to shifting and
// rescaling the logits, so a model cannot hide from it by inflating them; the denominator uses
// pi3 and pi4 because the target t may be the runner-up pi2. APGD-T maximises it.

#include "ardent/objectives/builtins.hpp"

namespace ardent::objectives {

struct TargetedDLR {
  torch::Tensor labels;
  torch::Tensor targets;

  torch::Tensor operator()(const torch::Tensor& logits) const {
    constexpr std::string_view name = "ardent::objectives::TargetedDLR";
    check_logits(name, "logits", logits);
    TORCH_CHECK(logits.size(1) >= 4, name, ": argument 'logits' has ", logits.size(1),
                " classes, expected at least 4 (targeted DLR divides by z_pi1 - (z_pi3 + z_pi4) / 2)");
    detail::check(name, logits, labels);
    detail::check(name, logits, targets, "targets");
    return unchecked(logits);
  }
  torch::Tensor unchecked(const torch::Tensor& logits) const {
    const auto sorted = std::get<0>(logits.sort(/*dim=*/1, /*descending=*/true));
    const auto scale = sorted.select(1, 0) - (sorted.select(1, 2) + sorted.select(1, 3)) / 2 + 1e-12;
    return -(class_logit(logits, labels) - class_logit(logits, targets)) / scale;
  }
};

static_assert(Objective<TargetedDLR>);

}  // namespace ardent::objectives
