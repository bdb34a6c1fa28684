#pragma once
// The identity attack: x' = x. Plugging it into the Distiller gives plain knowledge distillation
// (Hinton, Vinyals and Dean 2015). It checks its input like every attack, so that swapping
// attacks never hides bad input.

#include "ardent/attacks/detail/gradient.hpp"

namespace ardent::attacks {

struct NoneOptions {
  TORCH_ARG(double, clip_min) = 0.0;
  TORCH_ARG(double, clip_max) = 1.0;
};

class None {
 public:
  None() = default;
  explicit None(NoneOptions options) : options_(options) {
    check_box("ardent::attacks::None", options_.clip_min(), options_.clip_max());
  }

  const NoneOptions& options() const { return options_; }

  /// A detached copy of x.
  template <Model M, AttackGoal G>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const G& goal) const {
    check_call("ardent::attacks::None", model, x, goal, options_.clip_min(), options_.clip_max());
    return x.detach().clone();
  }

 private:
  NoneOptions options_{};
};

static_assert(Attack<None>);
static_assert(TargetedAttack<None>);

/// The attack and its settings as JSON, found by argument-dependent lookup (nlohmann::json's
/// customisation point). ardent::evaluate records it in its report.
template <typename Json>
void to_json(Json& j, const None& attack) {
  j = Json{{"attack", "None"}, {"clip_min", attack.options().clip_min()}, {"clip_max", attack.options().clip_max()}};
}

}  // namespace ardent::attacks
