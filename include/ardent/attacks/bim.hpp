#pragma once
// Basic iterative method (Kurakin, Goodfellow and Bengio, "Adversarial examples in the physical
// world", ICLR workshop 2017): PGD in Linf without random start,
//   x'_0 = x,  x'_{k+1} = clip_{x, eps}( x'_k + a * sign(grad L(x'_k)) ).
// steps(0) picks Kurakin's rule, steps = floor(min(255 eps + 4, 1.25 * 255 eps)) (eps on a [0, 1] scale).

#include "ardent/attacks/detail/projected_ascent.hpp"

#include <algorithm>

namespace ardent::attacks {

struct BIMOptions {
  /* implicit */ BIMOptions(double epsilon) : epsilon_(epsilon) {}  // NOLINT(google-explicit-constructor)
  TORCH_ARG(double, epsilon);
  TORCH_ARG(double, step_size) = 1.0 / 255;
  /// Number of steps; 0 picks Kurakin's rule.
  TORCH_ARG(int64_t, steps) = 0;
  TORCH_ARG(double, clip_min) = 0.0;
  TORCH_ARG(double, clip_max) = 1.0;
  TORCH_ARG(bool, eval_mode) = true;
};

class BIM {
 public:
  explicit BIM(BIMOptions options) : options_(options) {
    constexpr std::string_view name = "ardent::attacks::BIM";
    check_common_options(name, options_.epsilon(), options_.clip_min(), options_.clip_max());
    check_non_negative(name, "step_size", options_.step_size());
    check_non_negative(name, "steps", static_cast<double>(options_.steps()));
  }

  const BIMOptions& options() const { return options_; }

  /// The number of steps the attack takes: options().steps(), or Kurakin's rule when that is 0.
  int64_t steps() const {
    if (options_.steps() > 0) return options_.steps();
    const double scaled = 255.0 * options_.epsilon();
    return static_cast<int64_t>(std::min(scaled + 4.0, 1.25 * scaled));
  }

  template <Model M, AttackGoal G>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const G& goal) const {
    const auto& o = options_;
    check_call("ardent::attacks::BIM", model, x, goal, o.clip_min(), o.clip_max());
    AttackScope scope(model, o.eval_mode());
    const auto clean = attack_copy(x);
    return detail::projected_ascent(model, clean, clean.clone(), to_objective(goal),
                                    {Norm::Linf, o.epsilon(), o.step_size(), steps(), o.clip_min(), o.clip_max()})
        .detach();
  }

 private:
  BIMOptions options_;
};

static_assert(Attack<BIM>);
static_assert(TargetedAttack<BIM>);

/// The attack and its settings as JSON, found by argument-dependent lookup (nlohmann::json's
/// customisation point; `nlohmann::json j = bim;`). ardent::evaluate records it in its report.
template <typename Json>
void to_json(Json& j, const BIM& attack) {
  const auto& o = attack.options();
  j = Json{{"attack", "BIM"},           {"epsilon", o.epsilon()},   {"step_size", o.step_size()},
           {"steps", attack.steps()},   {"clip_min", o.clip_min()}, {"clip_max", o.clip_max()},
           {"eval_mode", o.eval_mode()}};
}

}  // namespace ardent::attacks
