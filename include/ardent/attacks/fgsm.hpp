#pragma once
// Fast gradient sign method (Goodfellow, Shlens and Szegedy, "Explaining and Harnessing
// Adversarial Examples", ICLR 2015):  x' = clamp(x + eps * sign(grad_x L(x)), lo, hi).
//
// With random_start(true) and step_size(a), FGSM with a random start (FGSM-RS; Wong, Rice and
// Kolter, "Fast is better than free: Revisiting adversarial training", ICLR 2020), whose
// adversarial training matches PGD's at the cost of one gradient (a = 1.25 eps in the paper):
//   x_0 ~ U(B_inf(x, eps)) clamped to the box,  x' = clamp_box( Proj_B(x, eps)( x_0 + a sign(grad L(x_0)) ) ).
// The defaults (no random start, a = eps) are the original FGSM.

#include "ardent/attacks/detail/gradient.hpp"

namespace ardent::attacks {

struct FGSMOptions {
  /// The step size defaults to epsilon.
  /* implicit */ FGSMOptions(double epsilon)  // NOLINT(google-explicit-constructor)
      : epsilon_(epsilon), step_size_(epsilon) {}
  TORCH_ARG(double, epsilon);
  /// Length a of the signed gradient step (Wong et al. use 1.25 eps with a random start).
  TORCH_ARG(double, step_size);
  /// Take the step from a uniform point of the Linf ball instead of from x.
  TORCH_ARG(bool, random_start) = false;
  TORCH_ARG(double, clip_min) = 0.0;
  TORCH_ARG(double, clip_max) = 1.0;
  TORCH_ARG(bool, eval_mode) = true;
};

class FGSM {
 public:
  explicit FGSM(FGSMOptions options) : options_(options) {
    constexpr std::string_view name = "ardent::attacks::FGSM";
    check_common_options(name, options_.epsilon(), options_.clip_min(), options_.clip_max());
    check_non_negative(name, "step_size", options_.step_size());
  }

  const FGSMOptions& options() const { return options_; }

  template <Model M, AttackGoal G>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const G& goal) const {
    return perturb_from(model, x, torch::Tensor(), goal);
  }

  /// The point the step is taken from: x, or a uniform point of the ball with random_start.
  torch::Tensor start(const torch::Tensor& x) const {
    const auto& o = options_;
    if (!o.random_start()) return x.detach();
    return random_start(Norm::Linf, x.detach(), o.epsilon(), o.clip_min(), o.clip_max());
  }

  /// One step from `from` (projected onto the ball around x and the box first; an undefined
  /// `from` is start(x)): the warm-start entry point (attacks::WarmStart).
  template <Model M, AttackGoal G>
  torch::Tensor perturb_from(M& model, const torch::Tensor& x, const torch::Tensor& from, const G& goal) const {
    const auto& o = options_;
    check_call("ardent::attacks::FGSM", model, x, goal, o.clip_min(), o.clip_max());
    AttackScope scope(model, o.eval_mode());
    const auto clean = attack_copy(x);
    const auto origin = from.defined() ? project_linf(from.detach(), clean, o.epsilon(), o.clip_min(), o.clip_max())
                                       : start(clean);
    const auto gradient = loss_and_gradient(model, origin, to_objective(goal)).gradient;
    return project_linf(origin + o.step_size() * gradient.sign(), clean, o.epsilon(), o.clip_min(), o.clip_max())
        .detach();
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
  j = Json{{"attack", "FGSM"},           {"epsilon", o.epsilon()},
           {"step_size", o.step_size()}, {"random_start", o.random_start()},
           {"clip_min", o.clip_min()},   {"clip_max", o.clip_max()},
           {"eval_mode", o.eval_mode()}};
}

}  // namespace ardent::attacks
