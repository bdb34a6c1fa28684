#pragma once
// Momentum iterative FGSM (Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018):
//   g_{k+1} = mu * g_k + grad L(x'_k) / mean|grad L(x'_k)|     (mean over each sample's elements)
//   x'_{k+1} = clip_{x, eps}( x'_k + a * sign(g_{k+1}) )

#include "ardent/attacks/detail/gradient.hpp"

namespace ardent::attacks {

struct MIFGSMOptions {
  /* implicit */ MIFGSMOptions(double epsilon) : epsilon_(epsilon) {}  // NOLINT(google-explicit-constructor)
  TORCH_ARG(double, epsilon);
  TORCH_ARG(double, step_size) = 2.0 / 255;
  TORCH_ARG(int64_t, steps) = 10;
  /// Momentum factor mu.
  TORCH_ARG(double, decay) = 1.0;
  TORCH_ARG(double, clip_min) = 0.0;
  TORCH_ARG(double, clip_max) = 1.0;
  TORCH_ARG(bool, eval_mode) = true;
};

class MIFGSM {
 public:
  explicit MIFGSM(MIFGSMOptions options) : options_(options) {
    constexpr std::string_view name = "ardent::attacks::MIFGSM";
    check_common_options(name, options_.epsilon(), options_.clip_min(), options_.clip_max());
    check_non_negative(name, "step_size", options_.step_size());
    check_non_negative(name, "steps", static_cast<double>(options_.steps()));
    check_non_negative(name, "decay", options_.decay());
  }

  const MIFGSMOptions& options() const { return options_; }

  template <Model M, AttackGoal G>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const G& goal) const {
    const auto& o = options_;
    check_call("ardent::attacks::MIFGSM", model, x, goal, o.clip_min(), o.clip_max());
    AttackScope scope(model, o.eval_mode());
    const auto objective = to_objective(goal);
    const auto clean = attack_copy(x);
    auto x_adv = clean.clone();
    auto momentum = torch::zeros_like(clean);
    for (int64_t step = 0; step < o.steps(); ++step) {
      const auto gradient = loss_and_gradient(model, x_adv, objective).gradient;
      const auto mean_abs = per_sample(gradient.abs().flatten(1).mean(1), gradient).clamp_min(1e-12);
      momentum = o.decay() * momentum + gradient / mean_abs;
      x_adv = project_linf(x_adv + o.step_size() * momentum.sign(), clean, o.epsilon(), o.clip_min(), o.clip_max());
    }
    return x_adv.detach();
  }

 private:
  MIFGSMOptions options_;
};

static_assert(Attack<MIFGSM>);
static_assert(TargetedAttack<MIFGSM>);

/// The attack and its settings as JSON, found by argument-dependent lookup (nlohmann::json's
/// customisation point; `nlohmann::json j = mifgsm;`). ardent::evaluate records it in its report.
template <typename Json>
void to_json(Json& j, const MIFGSM& attack) {
  const auto& o = attack.options();
  j = Json{{"attack", "MIFGSM"},       {"epsilon", o.epsilon()},    {"step_size", o.step_size()},
           {"steps", o.steps()},       {"decay", o.decay()},        {"clip_min", o.clip_min()},
           {"clip_max", o.clip_max()}, {"eval_mode", o.eval_mode()}};
}

}  // namespace ardent::attacks
