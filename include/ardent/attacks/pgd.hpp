#pragma once
// Projected gradient descent (Madry et al., "Towards Deep Learning Models Resistant to Adversarial
// Attacks", ICLR 2018), Linf and L2:
//   x'_0 ~ U(B(x, eps)) clamped to the box (or x'_0 = x without random start, or x + s N(0, 1))
//   x'_{k+1} = clamp_[lo, hi]( Proj_B(x, eps)( x'_k + a * d(grad L(x'_k)) ) ),  d = sign (Linf), g / ||g||_2 (L2)
// With restarts(n) the attack runs n times and keeps, per sample, the run with the highest loss.

#include "ardent/attacks/detail/projected_ascent.hpp"

namespace ardent::attacks {

/// Madry et al.'s step size for `steps` steps within epsilon: 2.5 eps / steps, so that a run can
/// cross the ball and back (the presets and the examples use it).
inline double madry_step_size(double epsilon, int64_t steps) {
  if (steps < 1)
    fail_argument("ardent::attacks::madry_step_size", "steps", fmt::format("is {}, expected at least 1", steps));
  return 2.5 * epsilon / static_cast<double>(steps);
}

struct PGDOptions {
  /* implicit */ PGDOptions(double epsilon) : epsilon_(epsilon) {}  // NOLINT(google-explicit-constructor)
  /// Radius of the threat model's ball.
  TORCH_ARG(double, epsilon);
  /// Length a of one step (in the norm of the ball).
  TORCH_ARG(double, step_size) = 2.0 / 255;
  /// Number of steps, at least 1 (for the clean input use attacks::None).
  TORCH_ARG(int64_t, steps) = 10;
  /// Start from a uniform point of the ball instead of x.
  TORCH_ARG(bool, random_start) = true;
  /// With random_start(false): start from x + s * N(0, 1) (clamped to the ball and the box) for
  /// s > 0, the start of TRADES (Zhang et al. 2019) and RSLAD (Zi et al. 2021).
  TORCH_ARG(double, start_noise) = 0.0;
  TORCH_ARG(Norm, norm) = Norm::Linf;
  /// Independent runs; each sample keeps the one with the highest final loss.
  TORCH_ARG(int64_t, restarts) = 1;
  /// Pixel box.
  TORCH_ARG(double, clip_min) = 0.0;
  TORCH_ARG(double, clip_max) = 1.0;
  /// Run the model in eval mode during the attack (false: leave every submodule's mode as it is).
  TORCH_ARG(bool, eval_mode) = true;
};

class PGD {
 public:
  explicit PGD(PGDOptions options) : options_(options) {
    constexpr std::string_view name = "ardent::attacks::PGD";
    check_common_options(name, options_.epsilon(), options_.clip_min(), options_.clip_max(), options_.norm());
    check_non_negative(name, "step_size", options_.step_size());
    if (options_.steps() < 1) {
      fail_argument(name, "steps",
                    fmt::format("is {}, expected at least 1 (steps(0) would return the start point; "
                                "use ardent::attacks::None for the clean input)",
                                options_.steps()));
    }
    check_non_negative(name, "start_noise", options_.start_noise());
    if (options_.start_noise() > 0 && options_.random_start()) {
      fail_argument(name, "start_noise",
                    fmt::format("is {} with random_start(true), expected one start: set "
                                "random_start(false) for a Gaussian start",
                                options_.start_noise()));
    }
    if (options_.restarts() < 1) {
      fail_argument(name, "restarts", fmt::format("is {}, expected at least 1", options_.restarts()));
    }
    if (options_.restarts() > 1 && !options_.random_start() && options_.start_noise() == 0) {
      fail_argument(name, "restarts",
                    fmt::format("is {} without random_start, expected 1 (every restart would "
                                "repeat the same deterministic run)",
                                options_.restarts()));
    }
  }

  const PGDOptions& options() const { return options_; }

  /// `goal`: labels (untargeted), ardent::Targeted{targets}, or an objective to maximise.
  template <Model M, AttackGoal G>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const G& goal) const {
    const auto& o = options_;
    if (o.restarts() == 1) return perturb_from(model, x, torch::Tensor(), goal);
    check_call("ardent::attacks::PGD", model, x, goal, o.clip_min(), o.clip_max());
    AttackScope scope(model, o.eval_mode());
    const auto objective = to_objective(goal);
    const auto clean = attack_copy(x);
    detail::BestPerSample best;
    for (int64_t run = 0; run < o.restarts(); ++run) {
      auto x_adv = detail::projected_ascent(model, clean, start(clean), objective, ascent_settings());
      best.offer(x_adv, detail::loss_only(model, x_adv, objective));
    }
    return best.result();
  }

  /// The first iterate of a run: uniform in the ball with random_start, x + start_noise N(0, 1)
  /// projected with start_noise, else x.
  torch::Tensor start(const torch::Tensor& x) const {
    const auto& o = options_;
    const auto clean = x.detach();
    if (o.random_start()) return random_start(o.norm(), clean, o.epsilon(), o.clip_min(), o.clip_max());
    if (o.start_noise() > 0) {
      return project(o.norm(), clean + o.start_noise() * torch::randn_like(clean), clean, o.epsilon(), o.clip_min(),
                     o.clip_max());
    }
    return clean.clone();
  }

  /// One run of `steps` steps from `from` (projected onto the ball around x and the box first; an
  /// undefined `from` is start(x)): the warm-start entry point (attacks::WarmStart).
  template <Model M, AttackGoal G>
  torch::Tensor perturb_from(M& model, const torch::Tensor& x, const torch::Tensor& from, const G& goal) const {
    const auto& o = options_;
    check_call("ardent::attacks::PGD", model, x, goal, o.clip_min(), o.clip_max());
    TORCH_CHECK(!from.defined() || from.sizes() == x.sizes(),
                "ardent::attacks::PGD::perturb_from: argument 'from' has shape ",
                from.defined() ? shape_string(from) : "", ", expected the shape of x ", shape_string(x));
    AttackScope scope(model, o.eval_mode());
    const auto clean = attack_copy(x);
    auto first = from.defined() ? project(o.norm(), from.detach(), clean, o.epsilon(), o.clip_min(), o.clip_max())
                                : start(clean);
    return detail::projected_ascent(model, clean, std::move(first), to_objective(goal), ascent_settings()).detach();
  }

 private:
  detail::AscentSettings ascent_settings() const {
    const auto& o = options_;
    return {o.norm(), o.epsilon(), o.step_size(), o.steps(), o.clip_min(), o.clip_max()};
  }

  PGDOptions options_;
};

static_assert(Attack<PGD>);
static_assert(TargetedAttack<PGD>);

/// The attack and its settings as JSON, found by argument-dependent lookup (nlohmann::json's
/// customisation point; `nlohmann::json j = pgd;`). ardent::evaluate records it in its report.
template <typename Json>
void to_json(Json& j, const PGD& attack) {
  const auto& o = attack.options();
  j = Json{{"attack", "PGD"},          {"norm", o.norm() == Norm::Linf ? "Linf" : "L2"},
           {"epsilon", o.epsilon()},   {"step_size", o.step_size()},
           {"steps", o.steps()},       {"random_start", o.random_start()},
           {"restarts", o.restarts()}, {"clip_min", o.clip_min()},
           {"clip_max", o.clip_max()}, {"eval_mode", o.eval_mode()}};
}

}  // namespace ardent::attacks
