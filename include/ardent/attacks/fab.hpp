#pragma once
// FAB, the fast adaptive boundary attack (Croce and Hein, "Minimally distorted adversarial
// examples with a fast adaptive boundary attack", ICML 2020, arXiv:1907.02044), Linf and L2, and
// FAB-T, its targeted version as AutoAttack runs it (Croce and Hein, ICML 2020, arXiv:2003.01690).
//
// FAB looks for the adversarial point closest to x. At the iterate x1 it linearises the decision
// boundary of one class pair, F(z) ~ F(x1) + <w, z - x1> with F = z_t - z_y and w = grad F(x1),
// projects both x1 and the clean x0 onto that hyperplane intersected with the box
// (detail/hyperplane_projection.hpp), d1 = Proj(x1) - x1 and d2 = Proj(x0) - x0, and steps
//
//   alpha = clamp(||d1|| / (||d1|| + ||d2||), 0, alpha_max)
//   x1 <- clip((1 - alpha) (x1 + eta d1) + alpha (x0 + eta d2))
//
// (eta > 1 overshoots the boundary; the pull toward x0 keeps the point close). Whenever x1 is
// misclassified it is kept if closer than the best so far, and pulled back, x1 <- x0 + beta (x1 - x0).
// Untargeted FAB takes, at each step, the class t != y whose linearised boundary is nearest,
// |F_t| / ||grad F_t||_q (q the dual norm: 1 for Linf, 2 for L2), which costs one backward per
// class; FAB-T fixes t to the k-th most likely class of the clean prediction, k = 2 .. targets + 1,
// one backward per step, and stops trying targets for a sample once it is broken. Success is any
// misclassification in both cases. A sample counts as broken only when its closest adversarial
// lies within epsilon; the others come back unchanged. Restarts after the first start from
// x0 + (eps / 2) u / ||u|| (u uniform in [-1, 1] for Linf, Gaussian for L2); without restarts the
// attack draws no random numbers and is deterministic.

#include "ardent/attacks/detail/gradient.hpp"
#include "ardent/attacks/detail/hyperplane_projection.hpp"

#include <algorithm>
#include <limits>

namespace ardent::attacks {

struct FABOptions {
  /* implicit */ FABOptions(double epsilon) : epsilon_(epsilon) {}  // NOLINT(google-explicit-constructor)
  /// Radius within which a found adversarial counts (and the radius of the restarts' starts).
  TORCH_ARG(double, epsilon);
  /// Iterations per run.
  TORCH_ARG(int64_t, steps) = 100;
  /// Runs per target (or per attack, untargeted); runs after the first start at random points.
  TORCH_ARG(int64_t, restarts) = 1;
  /// FAB-T (AutoAttack's version, one backward per step) instead of untargeted FAB (one per class).
  TORCH_ARG(bool, targeted) = true;
  /// FAB-T: how many of the most likely other classes are tried as targets (at most classes - 1).
  TORCH_ARG(int64_t, target_classes) = 9;
  /// Largest weight of the step from x0 against the step from the iterate.
  TORCH_ARG(double, alpha_max) = 0.1;
  /// Overshoot of the projection step.
  TORCH_ARG(double, eta) = 1.05;
  /// Backward step toward x0 after an adversarial iterate.
  TORCH_ARG(double, beta) = 0.9;
  TORCH_ARG(Norm, norm) = Norm::Linf;
  TORCH_ARG(double, clip_min) = 0.0;
  TORCH_ARG(double, clip_max) = 1.0;
  TORCH_ARG(bool, eval_mode) = true;
};

namespace detail {

/// Which boundary a FAB run linearises, and what counts as success.
enum class FABMode {
  Untargeted,  // nearest linearised boundary of any class t != y; success: argmax != y
  Ranked,      // the boundary of the given target t against y; success: argmax != y (FAB-T)
  Chosen,      // the boundary of t against the strongest other class; success: argmax == t
};

/// The per-sample norm of rows [B, D] in `norm`.
inline torch::Tensor row_norm(Norm norm, const torch::Tensor& rows) {
  return norm == Norm::Linf ? rows.abs().amax(1) : rows.pow(2).sum(1).sqrt();
}

/// F [B] and w = grad F [B, D] at x (flattened), for the boundary of the mode.
struct Linearisation {
  torch::Tensor f;
  torch::Tensor w;
};

/// Untargeted: the logits' gradients class by class (one backward each, retaining the graph),
/// keeping per sample the class t != y of least |z_t - z_y| / ||grad (z_t - z_y)||_q.
template <Model M>
Linearisation nearest_boundary(M& model, const torch::Tensor& x, const torch::Tensor& labels, Norm norm) {
  const int64_t batch = x.size(0);
  auto input = model_layout(x.detach()).requires_grad_(true);
  const auto logits = forward(model, input);
  const int64_t classes = logits.size(1);
  const auto flat_gradient = [&](const torch::Tensor& output, bool keep) {
    auto g = torch::autograd::grad({output.sum()}, {input}, /*grad_outputs=*/{}, /*retain_graph=*/keep,
                                   /*create_graph=*/false, /*allow_unused=*/true)[0];
    if (!g.defined()) return torch::zeros({batch, x[0].numel()}, x.options());
    return g.contiguous().reshape({batch, -1});
  };
  const auto z = logits.detach();
  const auto z_y = class_logit(z, labels);
  const auto g_y = flat_gradient(class_logit(logits, labels), /*keep=*/true);

  auto best_distance = torch::full({batch}, std::numeric_limits<double>::infinity(), z.options());
  auto f = torch::zeros({batch}, z.options());
  auto w = torch::zeros_like(g_y);
  for (int64_t c = 0; c < classes; ++c) {
    const auto dg = flat_gradient(logits.select(1, c), /*keep=*/c + 1 < classes) - g_y;
    const auto df = z.select(1, c) - z_y;
    const auto dual = norm == Norm::Linf ? dg.abs().sum(1) : dg.pow(2).sum(1).sqrt();
    const auto distance = df.abs() / (dual + 1e-12);
    const auto closer = distance.lt(best_distance).logical_and(labels.ne(c));
    best_distance = torch::where(closer, distance, best_distance);
    f = torch::where(closer, df, f);
    w = torch::where(closer.unsqueeze(1), dg, w);
  }
  return {f, w};
}

/// F = z_t - z_other, other = y (Ranked) or the strongest class other than t (Chosen): one backward.
template <Model M>
Linearisation target_boundary(M& model, const torch::Tensor& x, const torch::Tensor& labels,
                              const torch::Tensor& targets, FABMode mode) {
  const auto objective = [&](const torch::Tensor& logits) {
    return mode == FABMode::Ranked ? class_logit(logits, targets) - class_logit(logits, labels)
                                   : cw_margin(logits, targets);
  };
  auto [f, gradient] = loss_and_gradient(model, x, objective);
  return {f, gradient.contiguous().reshape({x.size(0), -1})};
}

/// One FAB run on a batch of samples: each sample's closest adversarial found and its distance
/// (1e10 where none was found).
struct FABRun {
  torch::Tensor x;         // closest adversarial, or x0
  torch::Tensor distance;  // [B]
};

template <Model M>
FABRun fab_run(M& model, const torch::Tensor& x0, const torch::Tensor& labels, const torch::Tensor& targets,
               FABMode mode, bool random_start, const FABOptions& o) {
  const int64_t batch = x0.size(0);
  const auto lo = o.clip_min();
  const auto hi = o.clip_max();
  const auto x0_flat = x0.reshape({batch, -1});
  auto x1 = x0.clone();
  if (random_start) {
    const auto u = o.norm() == Norm::Linf ? torch::rand_like(x0) * 2 - 1 : torch::randn_like(x0);
    const auto size = per_sample(row_norm(o.norm(), u.reshape({batch, -1})), x0);
    x1 = (x0 + o.epsilon() * u / size * 0.5).clamp(lo, hi);
  }
  auto adversarial = x0.clone();
  auto distance = torch::full({batch}, 1e10, x0.options());
  const auto succeeded = [&](const torch::Tensor& logits) {
    return mode == FABMode::Chosen ? is_adversarial(logits, Targeted{targets}) : is_adversarial(logits, labels);
  };

  for (int64_t step = 0; step < o.steps(); ++step) {
    const auto [f, w] = mode == FABMode::Untargeted ? nearest_boundary(model, x1, labels, o.norm())
                                                    : target_boundary(model, x1, labels, targets, mode);
    torch::NoGradGuard no_grad;
    const auto x1_flat = x1.reshape({batch, -1});
    const auto b = (w * x1_flat).sum(1) - f;
    const auto d = hyperplane_projection(o.norm(), torch::cat({x1_flat, x0_flat}), torch::cat({w, w}),
                                         torch::cat({b, b}), lo, hi);
    const auto d1 = d.slice(0, 0, batch).reshape(x0.sizes());
    const auto d2 = d.slice(0, batch).reshape(x0.sizes());
    const auto a = row_norm(o.norm(), d).clamp_min(1e-8);
    const auto a1 = a.slice(0, 0, batch);
    const auto a2 = a.slice(0, batch);
    const auto alpha = per_sample((a1 / (a1 + a2)).clamp(0.0, o.alpha_max()), x0);
    x1 = ((x1 + o.eta() * d1) * (1 - alpha) + (x0 + d2 * o.eta()) * alpha).clamp(lo, hi);

    const auto fooled = succeeded(forward(model, model_layout(x1)));
    const auto now = row_norm(o.norm(), (x1 - x0).reshape({batch, -1}));
    const auto closer = fooled.logical_and(now < distance);
    adversarial = torch::where(per_sample(closer, x0), x1, adversarial);
    distance = torch::where(closer, now, distance);
    x1 = torch::where(per_sample(fooled, x0), x0 + (x1 - x0) * o.beta(), x1);
  }
  return {adversarial, distance};
}

}  // namespace detail

class FAB {
 public:
  explicit FAB(FABOptions options) : options_(options) {
    constexpr std::string_view name = "ardent::attacks::FAB";
    check_common_options(name, options_.epsilon(), options_.clip_min(), options_.clip_max(), options_.norm());
    check_non_negative(name, "steps", static_cast<double>(options_.steps()));
    if (options_.restarts() < 1) {
      fail_argument(name, "restarts", fmt::format("is {}, expected at least 1", options_.restarts()));
    }
    if (options_.target_classes() < 1) {
      fail_argument(name, "target_classes", fmt::format("is {}, expected at least 1", options_.target_classes()));
    }
    if (!(options_.alpha_max() >= 0.0 && options_.alpha_max() <= 1.0)) {
      fail_argument(name, "alpha_max", fmt::format("is {}, expected a value in [0, 1]", options_.alpha_max()));
    }
    check_positive(name, "eta", options_.eta());
    if (!(options_.beta() >= 0.0 && options_.beta() <= 1.0)) {
      fail_argument(name, "beta", fmt::format("is {}, expected a value in [0, 1]", options_.beta()));
    }
  }

  const FABOptions& options() const { return options_; }
  /// The target classes FAB-T tries (when targeted), 0 otherwise.
  int64_t target_class_count() const { return options_.targeted() ? options_.target_classes() : 0; }

  /// `goal`: labels (FAB-T with targeted(true), untargeted FAB with targeted(false)) or
  /// ardent::Targeted{targets} (the closest point classified as t, whatever targeted() says).
  /// A sample already misclassified (or already classified as its target) comes back unchanged.
  template <Model M, LabelsOrTargets G>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const G& goal) const {
    constexpr bool chosen = std::same_as<G, Targeted>;
    constexpr std::string_view name = "ardent::attacks::FAB";
    const auto& o = options_;
    check_call(name, model, x, goal, o.clip_min(), o.clip_max());
    AttackScope scope(model, o.eval_mode());
    const auto clean = attack_copy(x);
    torch::Tensor classes;
    if constexpr (chosen) {
      classes = goal.targets.clone();
    } else {
      classes = goal.clone();
    }
    torch::Tensor clean_logits;
    {
      torch::NoGradGuard no_grad;
      clean_logits = forward(model, model_layout(clean));
    }
    check_labels(name, chosen ? "targets" : "labels", classes, clean.size(0), clean_logits.size(1));
    if (o.epsilon() == 0.0) return clean;

    const auto predicted = clean_logits.argmax(1);
    auto robust = chosen ? predicted.ne(classes) : predicted.eq(classes);
    auto result = clean.clone();
    // Runs restarts() times on the samples still robust; `targets` [B] is the target of each sample.
    const auto attack_remaining = [&](detail::FABMode mode, const torch::Tensor& targets) {
      for (int64_t run = 0; run < o.restarts(); ++run) {
        const auto index = robust.nonzero().squeeze(1);
        if (index.numel() == 0) return;
        const auto outcome = detail::fab_run(model, clean.index_select(0, index), classes.index_select(0, index),
                                             targets.index_select(0, index), mode, run > 0, o);
        const auto broken = outcome.distance.le(o.epsilon());
        const auto broken_index = index.masked_select(broken);
        result.index_copy_(0, broken_index, outcome.x.index_select(0, broken.nonzero().squeeze(1)));
        robust.index_fill_(0, broken_index, false);
      }
    };

    if constexpr (chosen) {
      attack_remaining(detail::FABMode::Chosen, classes);
    } else if (o.targeted()) {
      const auto ranked = std::get<1>(clean_logits.sort(/*dim=*/1, /*descending=*/true));
      const int64_t targets = std::min(o.target_classes(), clean_logits.size(1) - 1);
      for (int64_t k = 1; k <= targets; ++k) attack_remaining(detail::FABMode::Ranked, ranked.select(1, k));
    } else {
      attack_remaining(detail::FABMode::Untargeted, classes);
    }
    return result.detach();
  }

 private:
  FABOptions options_;
};

static_assert(Attack<FAB>);
static_assert(TargetedAttack<FAB>);

/// The attack and its settings as JSON, found by argument-dependent lookup (nlohmann::json's
/// customisation point; `nlohmann::json j = fab;`). ardent::evaluate records it in its report.
template <typename Json>
void to_json(Json& j, const FAB& attack) {
  const auto& o = attack.options();
  j = Json{{"attack", "FAB"},
           {"norm", o.norm() == Norm::Linf ? "Linf" : "L2"},
           {"epsilon", o.epsilon()},
           {"steps", o.steps()},
           {"restarts", o.restarts()},
           {"targeted", o.targeted()},
           {"target_classes", o.target_classes()},
           {"alpha_max", o.alpha_max()},
           {"eta", o.eta()},
           {"beta", o.beta()},
           {"clip_min", o.clip_min()},
           {"clip_max", o.clip_max()},
           {"eval_mode", o.eval_mode()}};
}

}  // namespace ardent::attacks
