#pragma once
// Fast gradient sign method (Goodfellow, Shlens and Szegedy, "Explaining and Harnessing
// Adversarial Examples", ICLR 2015):  x' = clamp(x + eps * sign(grad_x L(x)), lo, hi).

#include "ardent/attacks/detail/gradient.hpp"

namespace ardent::attacks {

struct FGSMOptions {
  /* implicit */ FGSMOptions(double epsilon) : epsilon_(epsilon) {}  // NOLINT(google-explicit-constructor)
  TORCH_ARG(double, epsilon);
  TORCH_ARG(double, clip_min) = 0.0;
  TORCH_ARG(double, clip_max) = 1.0;
  TORCH_ARG(bool, eval_mode) = true;
};

class FGSM {
 public:
  explicit FGSM(FGSMOptions options) : options_(options) {
    check_common_options("ardent::attacks::FGSM", options_.epsilon(), options_.clip_min(), options_.clip_max());
  }

  const FGSMOptions& options() const { return options_; }

  template <Model M, AttackGoal G>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const G& goal) const {
    const auto& o = options_;
    check_call("ardent::attacks::FGSM", model, x, goal, o.clip_min(), o.clip_max());
    AttackScope scope(model, o.eval_mode());
    const auto clean = attack_copy(x);
    const auto gradient = loss_and_gradient(model, clean, to_objective(goal)).gradient;
    return (clean + o.epsilon() * gradient.sign()).clamp(o.clip_min(), o.clip_max()).detach();
  }

 private:
  FGSMOptions options_;
};

static_assert(Attack<FGSM>);
static_assert(TargetedAttack<FGSM>);

/// The attack and its settings as JSON, found by argument-dependent lookup (nlohmann::json's
/// customisation point; `nlohmann::json j = fgsm;`). ardent::evaluate records it in its report.
template <typename Json>
void to_json(Json& j, const FGSM& attack) {
  const auto& o = attack.options();
  j = Json{{"attack", "FGSM"},
           {"epsilon", o.epsilon()},
           {"clip_min", o.clip_min()},
           {"clip_max", o.clip_max()},
           {"eval_mode", o.eval_mode()}};
}

}  // namespace ardent::attacks
