#pragma once
// Auto-PGD (Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of
// diverse parameter-free attacks", ICML 2020, arXiv:2003.01690), Linf and L2:
//
//   z^(k+1) = P( x^(k) + eta^(k) d(grad f(x^(k))) ),                  d = sign (Linf), g / ||g||_2 (L2)
//   x^(k+1) = P( x^(k) + alpha (z^(k+1) - x^(k)) + (1 - alpha) (x^(k) - x^(k-1)) ),   alpha = 0.75 (1 at k = 0)
//
// P projects onto the ball and the box; eta^(0) = 2 eps. At the checkpoints w_j = ceil(p_j N),
// p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), a sample's step size is
// halved and its iterate moved back to its best point when
//   1. the loss rose in at most rho (w_j - w_{j-1}) of the steps since w_{j-1}, or
//   2. its step size was not halved at w_{j-1} and its best loss has not improved since.
// Losses: cross-entropy, DLR = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3), and (APGD-T) the
// targeted DLR toward each of the n_target_classes most likely other classes in turn.
// For labels and targets, a sample that is already adversarial is left as it is, each restart
// (and each target class) runs only on the samples not yet adversarial, and a sample comes back
// as the first adversarial point found or, failing that, the point of highest loss.

#include "ardent/attacks/detail/gradient.hpp"
#include "ardent/objectives/targeted_dlr.hpp"

#include <algorithm>
#include <vector>

namespace ardent::attacks {

enum class APGDLoss {
  CE,           // cross-entropy (APGD-CE)
  DLR,          // difference of logits ratio (APGD-DLR)
  TargetedDLR,  // targeted DLR over the top other classes (APGD-T)
};

struct APGDOptions {
  /* implicit */ APGDOptions(double epsilon) : epsilon_(epsilon) {}  // NOLINT(google-explicit-constructor)
  TORCH_ARG(double, epsilon);
  /// Iterations per run (N).
  TORCH_ARG(int64_t, steps) = 100;
  TORCH_ARG(APGDLoss, loss) = APGDLoss::CE;
  TORCH_ARG(Norm, norm) = Norm::Linf;
  /// Runs from fresh random starts, each on the samples not yet adversarial (per target class for APGD-T).
  TORCH_ARG(int64_t, restarts) = 1;
  /// APGD-T: how many of the most likely other classes are tried as targets (at most classes - 1).
  TORCH_ARG(int64_t, n_target_classes) = 9;
  /// Fraction of rising steps below which the step size is halved (condition 1).
  TORCH_ARG(double, rho) = 0.75;
  /// Weight alpha of the new step against the previous one.
  TORCH_ARG(double, momentum) = 0.75;
  /// Expectation over transformation (Athalye et al., ICML 2018) for randomised models: the loss
  /// and gradient at each iterate are the means over this many forward and backward passes.
  TORCH_ARG(int64_t, eot_samples) = 1;
  TORCH_ARG(double, clip_min) = 0.0;
  TORCH_ARG(double, clip_max) = 1.0;
  TORCH_ARG(bool, eval_mode) = true;
};

/// The iterations w_j = ceil(p_j N) after which APGD checks its step size, w_0 = 0 included.
/// p_j is carried in hundredths so that ceil sees exact values (0.41 * 100 is 41.000000000000007
/// in floating point).
inline std::vector<int64_t> apgd_checkpoints(int64_t steps) {
  check_non_negative("ardent::attacks::apgd_checkpoints", "steps", static_cast<double>(steps));
  std::vector<int64_t> checkpoints{0};
  int64_t previous = 0;
  int64_t current = 22;
  while (current <= 100) {
    const int64_t w = (current * steps + 99) / 100;
    if (w > checkpoints.back() && w <= steps) checkpoints.push_back(w);
    const int64_t next = current + std::max<int64_t>(current - previous - 3, 6);
    previous = current;
    current = next;
  }
  return checkpoints;
}

namespace detail {

/// One run of APGD from a random start on a batch: each sample's first successful point (where
/// `success` held) and its point of highest objective.
struct APGDRun {
  torch::Tensor x;      // the successful point where there is one, else the best point
  torch::Tensor found;  // bool [B]
};

/// The objective, keeping the last logits it saw (for the success test without another forward).
template <Objective O>
struct RecordingObjective {
  const O& objective;
  torch::Tensor& logits;
  torch::Tensor operator()(const torch::Tensor& z) const {
    logits = z;
    return objective(z);
  }
  torch::Tensor unchecked(const torch::Tensor& z) const {
    logits = z;
    return objectives::evaluate(objective, z);
  }
};

template <Model M, Objective O, typename Success>
APGDRun apgd_run(M& model, const torch::Tensor& clean, const O& objective, const Success& success,
                 const APGDOptions& o) {
  const auto checkpoints = apgd_checkpoints(o.steps());
  const auto project_ = [&](const torch::Tensor& point) {
    return project(o.norm(), point, clean, o.epsilon(), o.clip_min(), o.clip_max());
  };
  torch::Tensor logits;
  const RecordingObjective<O> recording{objective, logits};

  // With eot_samples = n > 1: the mean loss and gradient of n passes; success is judged on the
  // logits of the last one.
  // `check`: validate the objective's output (the first call only; the inner loop runs unchecked).
  const auto loss_and_gradient_ = [&](const torch::Tensor& point, bool check) {
    auto result = loss_and_gradient(model, point, recording, check);
    for (int64_t s = 1; s < o.eot_samples(); ++s) {
      const auto more = loss_and_gradient(model, point, recording, /*check=*/false);
      result.loss += more.loss;
      result.gradient += more.gradient;
    }
    if (o.eot_samples() > 1) {
      result.loss /= static_cast<double>(o.eot_samples());
      result.gradient /= static_cast<double>(o.eot_samples());
    }
    return result;
  };

  auto x_adv = random_start(o.norm(), clean, o.epsilon(), o.clip_min(), o.clip_max());
  auto [loss, gradient] = loss_and_gradient_(x_adv, /*check=*/true);
  auto found = success(logits.detach());
  auto x_found = x_adv.clone();
  auto x_best = x_adv.clone();
  auto gradient_best = gradient.clone();
  auto loss_best = loss.clone();
  auto loss_previous = loss.clone();
  auto x_previous = x_adv.clone();
  auto eta = torch::full({clean.size(0)}, 2 * o.epsilon(), clean.options());
  auto rises = torch::zeros({clean.size(0)}, clean.options().dtype(torch::kLong));
  auto loss_best_at_checkpoint = loss_best.clone();
  auto halved_at_checkpoint = torch::zeros({clean.size(0)}, clean.options().dtype(torch::kBool));
  std::size_t next = 1;

  for (int64_t k = 0; k < o.steps(); ++k) {
    const auto z = project_(x_adv + per_sample(eta, clean) * ascent_direction(o.norm(), gradient));
    const double alpha = k == 0 ? 1.0 : o.momentum();
    auto x_next = project_(x_adv + alpha * (z - x_adv) + (1 - alpha) * (x_adv - x_previous));
    x_previous = x_adv;
    x_adv = std::move(x_next);

    auto step = loss_and_gradient_(x_adv, /*check=*/false);
    loss = step.loss;
    gradient = step.gradient;
    const auto now = success(logits.detach());
    x_found = torch::where(per_sample(now.logical_and(found.logical_not()), clean), x_adv, x_found);
    found.logical_or_(now);

    rises += loss.gt(loss_previous);
    loss_previous = loss;
    const auto improved = loss.gt(loss_best);
    x_best = torch::where(per_sample(improved, clean), x_adv, x_best);
    gradient_best = torch::where(per_sample(improved, clean), gradient, gradient_best);
    loss_best = torch::where(improved, loss, loss_best);

    if (next < checkpoints.size() && k + 1 == checkpoints[next]) {
      const auto span = static_cast<double>(checkpoints[next] - checkpoints[next - 1]);
      // Condition 1 with <=, as in the authors' code (the paper writes <).
      const auto oscillating = rises.to(torch::kDouble).le(o.rho() * span);
      const auto stalled = halved_at_checkpoint.logical_not().logical_and(loss_best.le(loss_best_at_checkpoint));
      const auto halve = oscillating.logical_or(stalled);
      const auto halve_x = per_sample(halve, clean);
      eta = torch::where(halve, eta / 2, eta);
      // Restart from the best point, without momentum.
      x_adv = torch::where(halve_x, x_best, x_adv);
      x_previous = torch::where(halve_x, x_best, x_previous);
      gradient = torch::where(halve_x, gradient_best, gradient);
      loss_previous = torch::where(halve, loss_best, loss_previous);
      halved_at_checkpoint = halve;
      loss_best_at_checkpoint = loss_best.clone();
      rises.zero_();
      ++next;
    }
  }
  return {torch::where(per_sample(found, clean), x_found, x_best), found};
}

}  // namespace detail

class APGD {
 public:
  explicit APGD(APGDOptions options) : options_(options) {
    constexpr std::string_view name = "ardent::attacks::APGD";
    check_common_options(name, options_.epsilon(), options_.clip_min(), options_.clip_max(), options_.norm());
    if (options_.steps() < 1) {
      fail_argument(name, "steps",
                    fmt::format("is {}, expected at least 1 (steps(0) would return the random start; "
                                "use ardent::attacks::None for the clean input)",
                                options_.steps()));
    }
    if (options_.restarts() < 1) {
      fail_argument(name, "restarts", fmt::format("is {}, expected at least 1", options_.restarts()));
    }
    if (options_.n_target_classes() < 1) {
      fail_argument(name, "n_target_classes", fmt::format("is {}, expected at least 1", options_.n_target_classes()));
    }
    if (!(options_.rho() >= 0.0 && options_.rho() <= 1.0)) {
      fail_argument(name, "rho", fmt::format("is {}, expected a value in [0, 1]", options_.rho()));
    }
    if (!(options_.momentum() > 0.0 && options_.momentum() <= 1.0)) {
      fail_argument(name, "momentum", fmt::format("is {}, expected a value in (0, 1]", options_.momentum()));
    }
    if (options_.eot_samples() < 1) {
      fail_argument(name, "eot_samples", fmt::format("is {}, expected at least 1", options_.eot_samples()));
    }
  }

  const APGDOptions& options() const { return options_; }
  /// The target classes APGD-T tries (its loss TargetedDLR), 0 otherwise.
  int64_t target_class_count() const {
    return options_.loss() == APGDLoss::TargetedDLR ? options_.n_target_classes() : 0;
  }
  /// DLR divides by z_pi1 - z_pi3 (3 classes), targeted DLR by z_pi1 - (z_pi3 + z_pi4) / 2 (4).
  int64_t classes_needed() const {
    return options_.loss() == APGDLoss::DLR ? 3 : options_.loss() == APGDLoss::TargetedDLR ? 4 : 0;
  }

  /// `goal`: labels (untargeted; APGDLoss::TargetedDLR makes it APGD-T), ardent::Targeted{targets}
  /// (CE: targeted cross-entropy; DLR losses: targeted DLR from the clean prediction toward t),
  /// or an objective to maximise (the point of highest objective over the restarts).
  template <Model M, AttackGoal G>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const G& goal) const {
    const auto& o = options_;
    check_call("ardent::attacks::APGD", model, x, goal, o.clip_min(), o.clip_max());
    AttackScope scope(model, o.eval_mode());
    const auto clean = attack_copy(x);
    if (o.epsilon() == 0.0) return clean;

    if constexpr (!std::same_as<G, torch::Tensor> && !std::same_as<G, Targeted>) {
      const auto never = [](const torch::Tensor& logits) {
        return torch::zeros({logits.size(0)}, logits.options().dtype(torch::kBool));
      };
      detail::BestPerSample best;
      for (int64_t run = 0; run < o.restarts(); ++run) {
        auto x_adv = detail::apgd_run(model, clean, goal, never, o).x;
        if (o.restarts() == 1) return x_adv.detach();
        best.offer(x_adv, detail::loss_only(model, x_adv, goal));
      }
      return best.result();
    } else {
      constexpr bool targeted = std::same_as<G, Targeted>;
      torch::Tensor classes;
      if constexpr (targeted) {
        classes = goal.targets.clone();
      } else {
        classes = goal.clone();
      }
      torch::Tensor clean_logits;
      {
        torch::NoGradGuard no_grad;
        clean_logits = forward(model, clean);
      }
      check_model_output("ardent::attacks::APGD", "model", clean_logits, clean);
      check_labels("ardent::attacks::APGD", targeted ? "targets" : "labels", classes, clean.size(0),
                   clean_logits.size(1));
      const auto succeeded = [](const torch::Tensor& logits, const torch::Tensor& wanted) {
        if constexpr (targeted) {
          return is_adversarial(logits, Targeted{wanted});
        } else {
          return is_adversarial(logits, wanted);
        }
      };
      auto found = succeeded(clean_logits, classes);
      auto result = clean.clone();

      // Runs restarts() times on the samples not yet adversarial; `make_objective(index)` builds
      // the objective for the samples at `index`.
      const auto attack_remaining = [&](const auto& make_objective) {
        for (int64_t run = 0; run < o.restarts(); ++run) {
          const auto index = found.logical_not().nonzero().squeeze(1);
          if (index.numel() == 0) return;
          const auto wanted = classes.index_select(0, index);
          const auto outcome = detail::apgd_run(
              model, clean.index_select(0, index), make_objective(index),
              [&](const torch::Tensor& logits) { return succeeded(logits, wanted); }, o);
          result.index_copy_(0, index, outcome.x);
          found.index_copy_(0, index, outcome.found);
        }
      };

      if constexpr (targeted) {
        const auto predicted = clean_logits.argmax(1);
        if (o.loss() == APGDLoss::CE) {
          attack_remaining(
              [&](const torch::Tensor& i) { return objectives::TargetedCrossEntropy{classes.index_select(0, i)}; });
        } else {
          attack_remaining([&](const torch::Tensor& i) {
            return objectives::TargetedDLR{predicted.index_select(0, i), classes.index_select(0, i)};
          });
        }
      } else if (o.loss() == APGDLoss::CE) {
        attack_remaining([&](const torch::Tensor& i) { return objectives::CrossEntropy{classes.index_select(0, i)}; });
      } else if (o.loss() == APGDLoss::DLR) {
        attack_remaining([&](const torch::Tensor& i) { return objectives::DLR{classes.index_select(0, i)}; });
      } else {
        // APGD-T: the r-th most likely class of the clean prediction, r = 2, 3, ...
        const auto ranked = std::get<1>(clean_logits.sort(/*dim=*/1, /*descending=*/true));
        const int64_t targets = std::min(o.n_target_classes(), clean_logits.size(1) - 1);
        for (int64_t r = 1; r <= targets; ++r) {
          const auto target = ranked.select(1, r);
          attack_remaining([&](const torch::Tensor& i) {
            return objectives::TargetedDLR{classes.index_select(0, i), target.index_select(0, i)};
          });
        }
      }
      return result.detach();
    }
  }

 private:
  APGDOptions options_;
};

static_assert(Attack<APGD>);
static_assert(TargetedAttack<APGD>);

/// The attack and its settings as JSON, found by argument-dependent lookup (nlohmann::json's
/// customisation point; `nlohmann::json j = apgd;`). ardent::evaluate records it in its report.
template <typename Json>
void to_json(Json& j, const APGD& attack) {
  const auto& o = attack.options();
  const char* loss = o.loss() == APGDLoss::CE ? "CE" : o.loss() == APGDLoss::DLR ? "DLR" : "TargetedDLR";
  j = Json{{"attack", "APGD"},
           {"loss", loss},
           {"norm", o.norm() == Norm::Linf ? "Linf" : "L2"},
           {"epsilon", o.epsilon()},
           {"steps", o.steps()},
           {"restarts", o.restarts()},
           {"n_target_classes", o.n_target_classes()},
           {"eot_samples", o.eot_samples()},
           {"rho", o.rho()},
           {"momentum", o.momentum()},
           {"clip_min", o.clip_min()},
           {"clip_max", o.clip_max()},
           {"eval_mode", o.eval_mode()}};
}

}  // namespace ardent::attacks
