#pragma once
// Machinery shared by the gradient attacks: argument checks, the scope an attack runs in, the
// gradient of an objective with respect to the input only, and projections onto the threat model.

#include "ardent/core/attack.hpp"
#include "ardent/core/check.hpp"
#include "ardent/core/memory.hpp"
#include "ardent/core/mode_guard.hpp"
#include "ardent/core/model.hpp"
#include "ardent/core/objectives.hpp"
#include "ardent/core/speedups.hpp"

#include <cmath>
#include <string_view>

namespace ardent::attacks::detail {

/// Excludes a model's parameters from autograd for a scope: the attack needs the gradient with
/// respect to the input only, and without this, backward also computes every weight gradient
/// (about three times the work on a small CNN). Restores each parameter's flag on exit.
/// Speedups::freeze_parameters switches it off.
class FrozenParameters {
 public:
  template <Model M>
  explicit FrozenParameters(M& model) {
    if (!speedups().freeze_parameters) return;
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
/// InferenceMode), the parameters out of autograd, and the model in eval mode unless asked
/// otherwise. Every flag is restored on exit. The first scope also applies
/// Speedups::keep_freed_memory.
class AttackScope {
 public:
  template <Model M>
  AttackScope(M& model, bool eval_mode) : mode_(model, eval_mode), frozen_(model) {
    if (speedups().keep_freed_memory) {
      [[maybe_unused]] static const bool kept = keep_freed_memory();
    }
  }

 private:
  c10::InferenceMode inference_off_{false};
  torch::AutoGradMode grad_on_{true};
  ModeGuard mode_;
  FrozenParameters frozen_;
};

/// Checks the options every attack shares.
inline void check_common_options(std::string_view attack, double epsilon, double clip_min, double clip_max) {
  check_non_negative(attack, "epsilon", epsilon);
  check_box(attack, clip_min, clip_max);
}

/// Checks the call: the input batch, the device of model and input, and labels or targets.
template <Model M, AttackGoal G>
void check_call(std::string_view attack, M& model, const torch::Tensor& x, const G& goal, double clip_min,
                double clip_max) {
  if (const auto device = device_of(model); device && x.defined() && *device != x.device()) {
    fail_argument(attack, "x",
                  fmt::format("is on device {}, expected the model's device {}", x.device().str(), device->str()));
  }
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
  if (!speedups().channels_last || x.dim() != 4) return x;
  return torch::empty(x.sizes(), x.options(), at::MemoryFormat::ChannelsLast).copy_(x);
}

/// The per-sample objective at x_adv and its gradient with respect to x_adv alone:
/// torch::autograd::grad, never backward(), so no parameter's .grad() is touched. The gradient has
/// x_adv's memory layout.
struct LossAndGradient {
  torch::Tensor loss;      // [B], detached
  torch::Tensor gradient;  // shape of x_adv
};

template <Model M, Objective O>
LossAndGradient loss_and_gradient(M& model, const torch::Tensor& x_adv, const O& objective) {
  auto input = model_layout(x_adv.detach()).requires_grad_(true);
  const torch::Tensor loss = objective(forward(model, input));
  TORCH_CHECK(loss.dim() == 1 && loss.size(0) == x_adv.size(0), "ardent attack: the objective returned shape [",
              loss.sizes(), "], expected one loss per sample [", x_adv.size(0), "]");
  auto gradient = torch::autograd::grad({loss.sum()}, {input}, /*grad_outputs=*/{}, /*retain_graph=*/false,
                                        /*create_graph=*/false, /*allow_unused=*/true)[0];
  // An objective that does not depend on the input (a constant model, say) has zero gradient.
  if (!gradient.defined()) return {loss.detach(), torch::zeros_like(x_adv)};
  return {loss.detach(), gradient.contiguous(x_adv.suggest_memory_format())};
}

/// The per-sample objective at x, without building a graph.
template <Model M, Objective O>
torch::Tensor loss_only(M& model, const torch::Tensor& x, const O& objective) {
  torch::NoGradGuard no_grad;
  return objective(forward(model, model_layout(x)));
}

/// Shape [B, 1, ..., 1] for broadcasting one value per sample over x.
inline torch::Tensor per_sample(const torch::Tensor& values, const torch::Tensor& like) {
  std::vector<int64_t> shape(static_cast<std::size_t>(like.dim()), 1);
  shape[0] = like.size(0);
  return values.reshape(shape);
}

/// Across restarts, keeps for each sample the adversarial point with the highest loss.
class BestPerSample {
 public:
  void offer(const torch::Tensor& x_adv, const torch::Tensor& loss) {
    if (!best_.defined()) {
      best_ = x_adv;
      best_loss_ = loss;
      return;
    }
    const auto improved = loss > best_loss_;
    best_ = torch::where(per_sample(improved, x_adv), x_adv, best_);
    best_loss_ = torch::where(improved, loss, best_loss_);
  }
  torch::Tensor result() const { return best_.detach(); }

 private:
  torch::Tensor best_;
  torch::Tensor best_loss_;
};

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

}  // namespace ardent::attacks::detail
