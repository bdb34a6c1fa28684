#pragma once
// N-FGSM (de Jorge, Bibi, Volpi, Sanyal, Torr, Rogez and Dokania, "Make Some Noise: Reliable and
// Efficient Single-Step Adversarial Training", NeurIPS 2022): a single signed-gradient step from a
// strongly noised point, without projecting back to the ball:
//   x_0 = clamp_box(x + U(-k, k)),   x' = clamp_box( x_0 + a sign(grad L(x_0)) ),   k = 2 eps, a = eps.
// The larger noise, and the step not clipped to the ball, are what avoid the catastrophic
// overfitting of FGSM training; the perturbation can reach k + a (3 eps) in the Linf norm.
// project(true) clips it to the eps ball as FGSM-RS does.

#include "ardent/attacks/detail/gradient.hpp"

namespace ardent::attacks {

struct NFGSMOptions {
  /// The noise defaults to 2 eps and the step size to eps (the paper's settings).
  /* implicit */ NFGSMOptions(double epsilon)  // NOLINT(google-explicit-constructor)
      : epsilon_(epsilon), noise_(2 * epsilon), step_size_(epsilon) {}
  /// Radius of the threat model the training aims at (the ball of project(true)).
  TORCH_ARG(double, epsilon);
  /// Half-width k of the uniform noise added to x before the step.
  TORCH_ARG(double, noise);
  /// Length a of the signed gradient step.
  TORCH_ARG(double, step_size);
  /// Clip the perturbation to the epsilon ball after the step (the paper does not).
  TORCH_ARG(bool, project) = false;
  TORCH_ARG(double, clip_min) = 0.0;
  TORCH_ARG(double, clip_max) = 1.0;
  TORCH_ARG(bool, eval_mode) = true;
};

class NFGSM {
 public:
  explicit NFGSM(NFGSMOptions options) : options_(options) {
    constexpr std::string_view name = "ardent::attacks::NFGSM";
    check_common_options(name, options_.epsilon(), options_.clip_min(), options_.clip_max());
    check_non_negative(name, "noise", options_.noise());
    check_non_negative(name, "step_size", options_.step_size());
  }

  const NFGSMOptions& options() const { return options_; }

  /// The largest Linf distance of a result from x: eps with project(true), else noise + step_size.
  double radius() const {
    const auto& o = options_;
    return o.project() ? o.epsilon() : o.noise() + o.step_size();
  }

  template <Model M, AttackGoal G>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const G& goal) const {
    return perturb_from(model, x, torch::Tensor(), goal);
  }

  /// The noised point: clamp_box(x + U(-k, k)).
  torch::Tensor start(const torch::Tensor& x) const {
    const auto& o = options_;
    return (x.detach() + torch::empty_like(x).uniform_(-o.noise(), o.noise())).clamp(o.clip_min(), o.clip_max());
  }

  /// One step from `from` (kept within noise of x and in the box; an undefined `from` is start(x)):
  /// the warm-start entry point.
  template <Model M, AttackGoal G>
  torch::Tensor perturb_from(M& model, const torch::Tensor& x, const torch::Tensor& from, const G& goal) const {
    const auto& o = options_;
    check_call("ardent::attacks::NFGSM", model, x, goal, o.clip_min(), o.clip_max());
    AttackScope scope(model, o.eval_mode());
    const auto clean = attack_copy(x);
    const auto origin = from.defined() ? project_linf(from.detach(), clean, o.noise(), o.clip_min(), o.clip_max())
                                       : start(clean);
    const auto gradient = loss_and_gradient(model, origin, to_objective(goal)).gradient;
    auto x_adv = origin + o.step_size() * gradient.sign();
    if (o.project()) return project_linf(x_adv, clean, o.epsilon(), o.clip_min(), o.clip_max()).detach();
    return x_adv.clamp(o.clip_min(), o.clip_max()).detach();
  }

 private:
  NFGSMOptions options_;
};

static_assert(Attack<NFGSM>);
static_assert(TargetedAttack<NFGSM>);

template <typename Json>
void to_json(Json& j, const NFGSM& attack) {
  const auto& o = attack.options();
  j = Json{{"attack", "N-FGSM"},         {"epsilon", o.epsilon()},    {"noise", o.noise()},
           {"step_size", o.step_size()}, {"project", o.project()},    {"clip_min", o.clip_min()},
           {"clip_max", o.clip_max()},   {"eval_mode", o.eval_mode()}};
}

}  // namespace ardent::attacks
