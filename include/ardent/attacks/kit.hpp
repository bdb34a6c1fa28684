#pragma once
// The kit for writing an attack: the pieces every built-in attack is made of, public so that a
// user's attack gets the same guarantees with a few lines (docs/attacks.md, "Writing an attack").
//
//   template <ardent::Model M, ardent::AttackGoal G>
//   torch::Tensor perturb(M& model, const torch::Tensor& x, const G& goal) const {
//     ardent::attacks::check_call("MyPGD", model, x, goal, 0.0, 1.0);  // once per call
//     ardent::attacks::AttackScope scope(model);       // autograd on, parameters frozen, eval mode
//     const auto objective = ardent::attacks::to_objective(goal);    // labels copied out of InferenceMode
//     const auto clean = ardent::attacks::attack_copy(x);
//     auto x_adv = ardent::attacks::random_start(ardent::Norm::Linf, clean, eps, 0.0, 1.0);
//     for (int64_t k = 0; k < steps; ++k) {
//       const auto g = ardent::attacks::loss_and_gradient(model, x_adv, objective, k == 0).gradient;
//       x_adv = ardent::attacks::project(ardent::Norm::Linf, x_adv + a * g.sign(), clean, eps, 0.0, 1.0);
//     }
//     return x_adv.detach();
//   }
//
// What each piece guarantees:
//   check_call         the input batch (floating point, finite, in the box, the model's device and
//                      dtype) and the labels or targets (int64, one per sample), with the attack's name
//   AttackScope        autograd on even under NoGradGuard or InferenceMode, the model's parameters
//                      out of autograd (only the input gradient is computed), eval mode unless asked
//                      otherwise; every flag, each submodule's mode included, restored on exit
//   to_objective       labels -> CrossEntropy, Targeted -> TargetedCrossEntropy, an objective as it
//                      is; labels are copied, since the loss saves them for backward
//   loss_and_gradient  the per-sample objective and its gradient with respect to the input alone
//                      (torch::autograd::grad, never backward(): no parameter's .grad() changes);
//                      with check = true it also checks the model's output and the labels' range
//   project, random_start, ascent_direction   the threat model's geometry (Linf and L2)
//   cw_margin, is_adversarial, class_logit, max_other_logit
//                      the Carlini-Wagner margin z_y - max_{i != y} z_i (and its targeted form) and
//                      whether a goal is reached (defined in ardent/objectives/margin.hpp, so that
//                      the objectives share the one definition; the kit brings them into
//                      ardent::attacks)

#include "ardent/core/attack.hpp"
#include "ardent/core/check.hpp"
#include "ardent/core/mode_guard.hpp"
#include "ardent/core/model.hpp"
#include "ardent/objectives/builtins.hpp"
#include "ardent/objectives/margin.hpp"
#include "ardent/runtime/memory.hpp"
#include "ardent/runtime/speedups.hpp"

#include <cmath>
#include <string_view>

namespace ardent::attacks {

using objectives::class_logit;
using objectives::cw_margin;
using objectives::is_adversarial;
using objectives::max_other_logit;

/// Excludes a model's parameters from autograd for a scope: the attack needs the gradient with
/// respect to the input only, and without this, backward also computes every weight gradient
/// (about three times the work on a small CNN). Restores each parameter's flag on exit.
/// Speedups::freeze_parameters switches it off.
class FrozenParameters {
 public:
  template <Model M>
  explicit FrozenParameters(M& model) {
    if (!runtime::speedups().freeze_parameters) return;
    for (auto& p : parameters(model)) {
      if (p.requires_grad()) {
        p.requires_grad_(false);
        frozen_.push_back(p);
      }
    }
  }
  FrozenParameters(const FrozenParameters&) = delete;
  FrozenParameters& operator=(const FrozenParameters&) = delete;
  FrozenParameters(FrozenParameters&&) = delete;
  FrozenParameters& operator=(FrozenParameters&&) = delete;
  ~FrozenParameters() {
    for (auto& p : frozen_) p.requires_grad_(true);
  }

 private:
  std::vector<torch::Tensor> frozen_;
};

/// The state an attack needs whatever its caller's: autograd on (even under NoGradGuard or
/// InferenceMode), the parameters out of autograd, and the model in eval mode unless
/// `eval_mode` is false. Every flag is restored on exit.
class AttackScope {
 public:
  template <Model M>
  explicit AttackScope(M& model, bool eval_mode = true) : mode_(model, eval_mode), frozen_(model) {}

 private:
  runtime::MemoryReuseScope reuse_;  // first in, last out: the attack's last temporaries are freed inside it
  c10::InferenceMode inference_off_{false};
  torch::AutoGradMode grad_on_{true};
  ModeGuard mode_;
  FrozenParameters frozen_;
};

/// Checks the options every attack shares: epsilon >= 0, a box clip_min < clip_max, and for Linf
/// an epsilon no wider than the box. A larger Linf ball covers the whole box (any input is in
/// reach): almost always a budget written in pixel levels (8) for a box of fractions (8/255).
inline void check_common_options(std::string_view attack, double epsilon, double clip_min, double clip_max,
                                 Norm norm = Norm::Linf) {
  check_non_negative(attack, "epsilon", epsilon);
  check_box(attack, clip_min, clip_max);
  if (norm == Norm::Linf && epsilon > clip_max - clip_min) {
    fail_argument(attack, "epsilon",
                  fmt::format("is {}, wider than the pixel box [{}, {}]: the Linf ball would cover every input. "
                              "Budgets are in the box's units: for a box of [0, 1], did you mean {}/255 = {:.4g}?",
                              epsilon, clip_min, clip_max, epsilon, epsilon / 255.0));
  }
}

/// Checks the call once: the input batch (see check_input_batch), the model's device and dtype,
/// and labels or targets (int64, one per sample). The labels' range is checked against the model's
/// class count by the first loss_and_gradient(..., check = true).
template <Model M, AttackGoal G>
void check_call(std::string_view attack, M& model, const torch::Tensor& x, const G& goal, double clip_min,
                double clip_max) {
  check_model_input(attack, "model", model, x);
  check_input_batch(attack, "x", x, clip_min, clip_max);
  if constexpr (std::same_as<G, torch::Tensor>) {
    check_labels(attack, "labels", goal, x.size(0));
  } else if constexpr (std::same_as<G, Targeted>) {
    check_labels(attack, "targets", goal.targets, x.size(0));
  }
}

/// Labels become cross-entropy, targets become targeted cross-entropy, objectives stay as they are.
/// Labels are copied: the loss saves them for backward, which an InferenceMode tensor forbids.
template <AttackGoal G>
auto to_objective(const G& goal) {
  if constexpr (std::same_as<G, torch::Tensor>) {
    return objectives::CrossEntropy{goal.clone()};
  } else if constexpr (std::same_as<G, Targeted>) {
    return objectives::TargetedCrossEntropy{goal.targets.clone()};
  } else {
    return goal;
  }
}

/// An ordinary (non-inference) detached copy of x, so that autograd can record operations on it.
inline torch::Tensor attack_copy(const torch::Tensor& x) { return x.detach().clone(); }

/// x as the attack hands it to the model: channels-last (NHWC) for a 4-d batch when
/// Speedups::channels_last, where oneDNN's convolutions, pooling and their backward are faster.
/// (x.contiguous(ChannelsLast) would leave a one-channel batch in NCHW strides, which every layer
/// after it would then keep.)
inline torch::Tensor model_layout(const torch::Tensor& x) {
  if (!runtime::speedups().channels_last || x.dim() != 4) return x;
  return torch::empty(x.sizes(), x.options(), at::MemoryFormat::ChannelsLast).copy_(x);
}

/// The per-sample objective at x_adv and its gradient with respect to x_adv alone.
struct LossAndGradient {
  torch::Tensor loss;      // [B], detached
  torch::Tensor gradient;  // shape and memory layout of x_adv
};

/// torch::autograd::grad, never backward(), so no parameter's .grad() is touched. With `check`
/// (the first call of an attack) the model's output must be logits [B, C] and the objective's
/// own checks run (labels in [0, C)); later calls run the objective unchecked
/// (objectives::evaluate), with no host synchronisation.
template <Model M, Objective O>
LossAndGradient loss_and_gradient(M& model, const torch::Tensor& x_adv, const O& objective, bool check = true) {
  auto input = model_layout(x_adv.detach()).requires_grad_(true);
  const torch::Tensor logits = forward(model, input);
  torch::Tensor loss;
  if (check) {
    check_model_output("ardent attack", "model", logits, x_adv);
    loss = objective(logits);
    TORCH_CHECK(loss.dim() == 1 && loss.size(0) == x_adv.size(0), "ardent attack: the objective returned shape ",
                shape_string(loss), ", expected one loss per sample [", x_adv.size(0), "]");
  } else {
    loss = objectives::evaluate(objective, logits);
  }
  auto gradient = torch::autograd::grad({loss.sum()}, {input}, /*grad_outputs=*/{}, /*retain_graph=*/false,
                                        /*create_graph=*/false, /*allow_unused=*/true)[0];
  // An objective that does not depend on the input (a constant model, say) has zero gradient.
  if (!gradient.defined()) return {loss.detach(), torch::zeros_like(x_adv)};
  return {loss.detach(), gradient.contiguous(x_adv.suggest_memory_format())};
}

/// Shape [B, 1, ..., 1] for broadcasting one value per sample over x.
inline torch::Tensor per_sample(const torch::Tensor& values, const torch::Tensor& like) {
  std::vector<int64_t> shape(static_cast<std::size_t>(like.dim()), 1);
  shape[0] = like.size(0);
  return values.reshape(shape);
}

/// Per-sample L2 norm, as [B, 1, ..., 1].
inline torch::Tensor l2_norm(const torch::Tensor& t) { return per_sample(t.flatten(1).norm(2, /*dim=*/1), t); }

/// delta = clamp(x' - x, -eps, eps); x' = clamp(x + delta, lo, hi).
inline torch::Tensor project_linf(const torch::Tensor& x_adv, const torch::Tensor& x, double epsilon, double clip_min,
                                  double clip_max) {
  const auto delta = (x_adv - x).clamp(-epsilon, epsilon);
  return (x + delta).clamp(clip_min, clip_max);
}

/// delta scaled by min(1, eps / ||delta||_2), then clamped to the box. The box clamp moves every
/// coordinate toward x (which lies in the box), so the result stays in the ball.
inline torch::Tensor project_l2(const torch::Tensor& x_adv, const torch::Tensor& x, double epsilon, double clip_min,
                                double clip_max) {
  const auto delta = x_adv - x;
  const auto factor = (epsilon / l2_norm(delta).clamp_min(1e-12)).clamp_max(1.0);
  return (x + delta * factor).clamp(clip_min, clip_max);
}

/// x_adv projected onto the epsilon ball of `norm` around x, then into the box [clip_min, clip_max].
inline torch::Tensor project(Norm norm, const torch::Tensor& x_adv, const torch::Tensor& x, double epsilon,
                             double clip_min, double clip_max) {
  return norm == Norm::Linf ? project_linf(x_adv, x, epsilon, clip_min, clip_max)
                            : project_l2(x_adv, x, epsilon, clip_min, clip_max);
}

/// A point drawn uniformly from the epsilon ball around x, clamped to the box.
/// Linf: each coordinate uniform in [-eps, eps]. L2: a Gaussian direction with radius eps * u^(1/d),
/// which is uniform in volume (a radius uniform in [0, eps] would crowd the centre).
inline torch::Tensor random_start(Norm norm, const torch::Tensor& x, double epsilon, double clip_min, double clip_max) {
  torch::Tensor delta;
  if (norm == Norm::Linf) {
    delta = torch::empty_like(x).uniform_(-epsilon, epsilon);
  } else {
    const auto direction = torch::randn_like(x);
    const double dimension = static_cast<double>(x[0].numel());
    const auto radius = epsilon * torch::rand({x.size(0)}, x.options()).pow(1.0 / dimension);
    delta = direction / l2_norm(direction).clamp_min(1e-12) * per_sample(radius, x);
  }
  return (x + delta).clamp(clip_min, clip_max);
}

/// The ascent direction of one step: sign(g) for Linf, g / ||g||_2 for L2.
inline torch::Tensor ascent_direction(Norm norm, const torch::Tensor& gradient) {
  return norm == Norm::Linf ? gradient.sign() : gradient / l2_norm(gradient).clamp_min(1e-12);
}

}  // namespace ardent::attacks
