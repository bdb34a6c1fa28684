#pragma once
// The Square attack (Andriushchenko, Croce, Flammarion and Hein, "Square Attack: a query-efficient
// black-box adversarial attack via random search", ECCV 2020, arXiv:1912.00049), Linf and L2, as
// AutoAttack runs it. It uses the model's outputs only, never its gradients, so gradient masking
// (saturated softmax, non-differentiable layers) does not hide a model from it.
//
// Random search on the margin m(x') = z_y - max_{j != y} z_j (targeted: max_{j != t} z_j - z_t),
// minimising the loss L = m (SquareLoss::Margin) or -CE(z, y) (SquareLoss::CE; targeted: CE(z, t)):
//
//   Linf: start from vertical stripes x + eps * s_col, s_col in {-1, +1}; each query sets one
//         random s x s window of every channel to x +- eps (one sign per channel).
//   L2:   start from a grid of (h / 5)-pixel squares of the pattern eta(s); each query moves the
//         perturbation's mass from a second window into a first one, adds +- eta(s) there and
//         rescales so that ||delta||_2 = eps.
//
// A proposal x_new is accepted where it lowers the loss (strictly) or misclassifies. The square's
// side s = round(sqrt(p h w)) shrinks with p(i) = p_init / 2^j at the iterations of square_p.
// Only correctly classified samples are attacked; every active sample shares one window per
// query, as in the reference; a sample leaves the batch once fooled, and the attack stops when no
// sample is left. A sample never fooled comes back as the clean x. The random numbers come from
// a CPU generator seeded with `seed` at each call (never the global one), drawn in the reference's
// order and kinds (uniform float32; choice = sign(2u - 1); integer(lo, hi) = long(lo + (hi - lo) u)),
// so that two calls agree and a run does not disturb the caller's random stream.

#include "ardent/attacks/detail/gradient.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace ardent::attacks {

enum class SquareLoss {
  Margin,  // the margin z_y - max_{j != y} z_j itself
  CE,      // -CE(z, y) (targeted attacks always minimise CE(z, t))
};

struct SquareOptions {
  /* implicit */ SquareOptions(double epsilon) : epsilon_(epsilon) {}  // NOLINT(google-explicit-constructor)
  TORCH_ARG(double, epsilon);
  /// Queries (iterations) per restart, besides the one of the initialisation.
  TORCH_ARG(int64_t, queries) = 5000;
  /// Fraction of the image the first squares cover.
  TORCH_ARG(double, p_init) = 0.8;
  /// Runs, each on the samples not yet fooled, continuing the same random stream.
  TORCH_ARG(int64_t, restarts) = 1;
  TORCH_ARG(Norm, norm) = Norm::Linf;
  TORCH_ARG(SquareLoss, loss) = SquareLoss::Margin;
  /// Stretch the schedule of p over `queries` as if there were 10000 (AutoAttack's standard
  /// version does not: false).
  TORCH_ARG(bool, rescale_schedule) = false;
  /// Seed of the attack's own generator.
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(double, clip_min) = 0.0;
  TORCH_ARG(double, clip_max) = 1.0;
  TORCH_ARG(bool, eval_mode) = true;
};

/// The fraction p of the image a square covers at 0-based iteration `iteration`: p_init up to
/// iteration 10, then halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000. With
/// `rescale` the iteration is first mapped to int(iteration / queries * 10000).
inline double square_p(int64_t iteration, double p_init, int64_t queries, bool rescale) {
  if (rescale) {
    iteration = static_cast<int64_t>(static_cast<double>(iteration) / static_cast<double>(queries) * 10000);
  }
  constexpr int64_t bounds[] = {10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000};
  double p = p_init;
  for (const int64_t bound : bounds) {
    if (iteration > bound) p /= 2;
  }
  return p;
}

/// The side of the square for fraction p of an h x w image: round(sqrt(p h w)) (half to even),
/// at least 1 (Linf) or at least 3 and odd (L2), at most min(h, w).
inline int64_t square_side(double p, int64_t height, int64_t width, Norm norm) {
  const double area = p * static_cast<double>(height * width);
  auto side = static_cast<int64_t>(std::nearbyint(std::sqrt(area)));
  if (norm == Norm::Linf) {
    side = std::max<int64_t>(side, 1);
  } else {
    side = std::max<int64_t>(side, 3);
    if (side % 2 == 0) ++side;
  }
  return std::min({side, height, width});
}

namespace detail {

/// The attack's random stream: a CPU generator and the reference's three kinds of draw.
class SquareRandom {
 public:
  explicit SquareRandom(uint64_t seed) : generator_(at::make_generator<at::CPUGeneratorImpl>(seed)) {}

  /// Uniform float32 in [0, 1).
  torch::Tensor uniform(at::IntArrayRef shape) { return torch::rand(shape, generator_, torch::kFloat); }
  /// sign(2u - 1): -1 or +1 (0 when u is exactly 1/2).
  torch::Tensor choice(at::IntArrayRef shape) { return (uniform(shape) * 2 - 1).sign(); }
  /// long(lo + (hi - lo) u), in [lo, hi - 1] (lo when hi = lo).
  int64_t integer(int64_t lo, int64_t hi) {
    return (uniform({1}) * static_cast<double>(hi - lo) + static_cast<double>(lo)).to(torch::kLong).item<int64_t>();
  }

 private:
  at::Generator generator_;
};

/// The L2 pattern on an a x b rectangle: around the centre (a / 2, b / 2), the k-th nested square
/// (side 2k + 1, clipped) adds 1 / (k + 1)^2; normalised to Frobenius norm 1. Float32 on the CPU.
inline torch::Tensor square_eta_rectangle(int64_t a, int64_t b) {
  auto rectangle = torch::zeros({a, b}, torch::kFloat);
  if (a == 0 || b == 0) return rectangle;
  const int64_t rings = std::max(a / 2 + 1, b / 2 + 1);
  for (int64_t k = 0; k < rings; ++k) {
    const int64_t top = a / 2 - k;
    const int64_t left = b / 2 - k;
    const float weight = 1.0F / static_cast<float>((k + 1) * (k + 1));
    rectangle.slice(0, std::max<int64_t>(top, 0), std::min(top + 2 * k + 1, a))
        .slice(1, std::max<int64_t>(left, 0), std::min(left + 2 * k + 1, b))
        .add_(weight);
  }
  return rectangle / rectangle.pow(2).sum().sqrt();
}

/// eta(s): the pattern on the top s / 2 rows, its negative on the others, normalised.
inline torch::Tensor square_eta(int64_t s) {
  auto eta = torch::zeros({s, s}, torch::kFloat);
  eta.slice(0, 0, s / 2).copy_(square_eta_rectangle(s / 2, s));
  eta.slice(0, s / 2).copy_(-square_eta_rectangle(s - s / 2, s));
  return eta / eta.pow(2).sum().sqrt();
}

/// What an observer of a run sees after each query (tests check the invariants with it).
struct SquareStep {
  int64_t iteration;            // -1 for the initialisation
  const torch::Tensor& clean;   // the run's clean images (every sample of the run)
  const torch::Tensor& active;  // indices of the samples queried
  const torch::Tensor& x_new;   // the proposals of those samples
  const torch::Tensor& x_best;  // every sample's accepted point
  const torch::Tensor& margin;  // every sample's accepted margin
  const torch::Tensor& loss;    // every sample's least loss
};

/// The margin to minimise (a sample is fooled at <= 0) and the loss, per sample.
inline std::pair<torch::Tensor, torch::Tensor> square_margin_and_loss(const torch::Tensor& logits,
                                                                      const torch::Tensor& classes, bool targeted,
                                                                      SquareLoss loss) {
  const auto ce = [&] {
    return torch::nn::functional::cross_entropy(
        logits, classes, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  };
  if (targeted) return {cw_margin(logits, Targeted{classes}), ce()};
  auto margin = cw_margin(logits, classes);
  if (loss == SquareLoss::CE) return {margin, -ce()};
  return {margin, margin.clone()};
}

/// One run of the attack on images x [B, c, h, w] (all attacked): the accepted points.
template <Model M, typename Observer>
torch::Tensor square_run(M& model, const torch::Tensor& x, const torch::Tensor& classes, bool targeted,
                         const SquareOptions& o, SquareRandom& random, const Observer& observe) {
  torch::NoGradGuard no_grad;
  const int64_t batch = x.size(0);
  const int64_t c = x.size(1);
  const int64_t h = x.size(2);
  const int64_t w = x.size(3);
  const double eps = o.epsilon();
  const double lo = o.clip_min();
  const double hi = o.clip_max();
  const auto on_x = [&](const torch::Tensor& t) { return t.to(x.options()); };
  // sqrt of the sum of squares, as the reference computes it (not torch::norm, which rounds differently).
  const auto image_norm = [](const torch::Tensor& t) { return per_sample(t.pow(2).flatten(1).sum(1).sqrt(), t); };
  const auto l2_normalised = [&](const torch::Tensor& delta) { return delta / (image_norm(delta) + 1e-12); };
  const auto evaluate = [&](const torch::Tensor& points, const torch::Tensor& wanted) {
    return square_margin_and_loss(forward(model, model_layout(points)), wanted, targeted, o.loss());
  };
  std::map<int64_t, torch::Tensor> patterns;
  const auto eta = [&](int64_t s) {  // eta(s), transposed with probability 1/2
    auto& pattern = patterns[s];
    if (!pattern.defined()) pattern = square_eta(s);
    return random.uniform({1}).item<float>() > 0.5F ? pattern.t() : pattern;
  };

  torch::Tensor x_best;
  if (o.norm() == Norm::Linf) {
    x_best = (x + eps * on_x(random.choice({batch, c, 1, w}))).clamp(lo, hi);
  } else {
    const int64_t s = h / 5;
    const int64_t offset = (h - 5 * s) / 2;
    auto delta = torch::zeros_like(x);
    for (int64_t i = 0, top = offset; i < h / s; ++i, top += s) {
      for (int64_t j = 0, left = offset; j < w / s; ++j, left += s) {
        // Two statements: the reference draws the pattern's transposition before the signs.
        const auto pattern = on_x(eta(s)).reshape({1, 1, s, s});
        const auto cell = pattern * on_x(random.choice({batch, c, 1, 1}));
        const int64_t rows = std::min(s, h - top);
        const int64_t cols = std::min(s, w - left);
        if (rows <= 0 || cols <= 0) continue;
        delta.slice(2, top, top + rows).slice(3, left, left + cols).add_(cell.slice(2, 0, rows).slice(3, 0, cols));
      }
    }
    x_best = (x + l2_normalised(delta) * eps).clamp(lo, hi);
  }
  auto [margin_min, loss_min] = evaluate(x_best, classes);
  const auto everyone = torch::arange(batch, classes.options());
  observe(SquareStep{-1, x, everyone, x_best, x_best, margin_min, loss_min});

  for (int64_t i = 0; i < o.queries(); ++i) {
    const auto active = margin_min.gt(0).nonzero().squeeze(1);
    const int64_t n = active.numel();
    if (n == 0) break;
    const bool all = n == batch;
    const auto x_a = all ? x : x.index_select(0, active);
    const auto best_a = all ? x_best : x_best.index_select(0, active);
    const auto wanted = all ? classes : classes.index_select(0, active);
    const int64_t s = square_side(square_p(i, o.p_init(), o.queries(), o.rescale_schedule()), h, w, o.norm());

    torch::Tensor x_new;
    if (o.norm() == Norm::Linf) {
      const int64_t vh = random.integer(0, h - s);
      const int64_t vw = random.integer(0, w - s);
      const auto sign = on_x(random.choice({c, 1, 1}));
      x_new = best_a.clone();
      const auto window = [&](const torch::Tensor& t) { return t.slice(2, vh, vh + s).slice(3, vw, vw + s); };
      const auto x_window = window(x_a);
      window(x_new).copy_(
          torch::minimum(torch::maximum(window(best_a) + sign * (2 * eps), x_window - eps), x_window + eps)
              .clamp(lo, hi));
    } else {
      auto delta = best_a - x_a;
      const int64_t vh = random.integer(0, h - s);
      const int64_t vw = random.integer(0, w - s);
      const int64_t vh2 = random.integer(0, h - s);
      const int64_t vw2 = random.integer(0, w - s);
      const auto first = [&](const torch::Tensor& t) { return t.slice(2, vh, vh + s).slice(3, vw, vw + s); };
      const auto second = [&](const torch::Tensor& t) { return t.slice(2, vh2, vh2 + s).slice(3, vw2, vw2 + s); };
      const auto channel_norm = [](const torch::Tensor& t) { return t.pow(2).sum({-2, -1}, true).sqrt(); };
      auto both = torch::zeros({1, 1, h, w}, x.options());
      first(both).fill_(1.0);
      second(both).fill_(1.0);
      const auto n_first = channel_norm(first(delta));
      const auto n_image = image_norm(delta);
      const auto n_windows = channel_norm(delta * both);
      const auto pattern = on_x(eta(s)).reshape({1, 1, s, s});
      auto update = pattern * on_x(random.choice({n, c, 1, 1}));
      update = update + first(delta) / (n_first + 1e-12);
      const auto budget = (torch::full_like(n_image, eps).pow(2) - n_image.pow(2)).clamp_min(0.0) /
                              static_cast<double>(c) +
                          n_windows.pow(2);
      update = update / (channel_norm(update) + 1e-12) * budget.sqrt();
      second(delta).zero_();
      first(delta).copy_(update);
      x_new = (x_a + l2_normalised(delta) * eps).clamp(lo, hi);
    }

    const auto [margin, loss] = evaluate(x_new, wanted);
    const auto margin_a = all ? margin_min : margin_min.index_select(0, active);
    const auto loss_a = all ? loss_min : loss_min.index_select(0, active);
    const auto improved = loss < loss_a;
    const auto accepted = improved.logical_or(margin <= 0);
    const auto next_loss = torch::where(improved, loss, loss_a);
    const auto next_margin = torch::where(accepted, margin, margin_a);
    const auto next_best = torch::where(per_sample(accepted, x_new), x_new, best_a);
    if (all) {
      loss_min = next_loss;
      margin_min = next_margin;
      x_best = next_best;
    } else {
      loss_min.index_copy_(0, active, next_loss);
      margin_min.index_copy_(0, active, next_margin);
      x_best.index_copy_(0, active, next_best);
    }
    observe(SquareStep{i, x, active, x_new, x_best, margin_min, loss_min});
  }
  return x_best;
}

}  // namespace detail

class Square {
 public:
  /// Capabilities ardent::evaluate reads from the type (core/attack.hpp): it queries the model's
  /// outputs only, and searches at random.
  static constexpr bool gradient_free = true;
  static constexpr bool randomised = true;

  explicit Square(SquareOptions options) : options_(options) {
    constexpr std::string_view name = "ardent::attacks::Square";
    check_common_options(name, options_.epsilon(), options_.clip_min(), options_.clip_max(), options_.norm());
    check_non_negative(name, "queries", static_cast<double>(options_.queries()));
    if (!(options_.p_init() > 0.0 && options_.p_init() <= 1.0)) {
      fail_argument(name, "p_init", fmt::format("is {}, expected a value in (0, 1]", options_.p_init()));
    }
    if (options_.restarts() < 1) {
      fail_argument(name, "restarts", fmt::format("is {}, expected at least 1", options_.restarts()));
    }
  }

  const SquareOptions& options() const { return options_; }

  /// `goal`: labels (untargeted) or ardent::Targeted{targets}. Images [B, c, h, w].
  template <Model M, LabelsOrTargets G>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const G& goal) const {
    return perturb_observed(model, x, goal, [](const detail::SquareStep&) {});
  }

  /// perturb, calling `observe(const detail::SquareStep&)` after every query of every run.
  template <Model M, LabelsOrTargets G, typename Observer>
  torch::Tensor perturb_observed(M& model, const torch::Tensor& x, const G& goal, const Observer& observe) const {
    constexpr bool targeted = std::same_as<G, Targeted>;
    constexpr std::string_view name = "ardent::attacks::Square";
    const auto& o = options_;
    check_call(name, model, x, goal, o.clip_min(), o.clip_max());
    if (x.dim() != 4) {
      fail_argument(name, "x", fmt::format("has shape [{}], expected images [B, C, H, W]", fmt::join(x.sizes(), ", ")));
    }
    if (o.norm() == Norm::L2 && x.size(2) < 5) {
      fail_argument(name, "x",
                    fmt::format("has height {}, expected at least 5 for the L2 Square attack (its start tiles the "
                                "image with squares of side height / 5)",
                                x.size(2)));
    }
    AttackScope scope(model, o.eval_mode());
    torch::NoGradGuard no_grad;
    const auto clean = attack_copy(x);
    torch::Tensor classes;
    if constexpr (targeted) {
      classes = goal.targets.clone();
    } else {
      classes = goal.clone();
    }
    const auto clean_logits = forward(model, model_layout(clean));
    check_labels(name, targeted ? "targets" : "labels", classes, clean.size(0), clean_logits.size(1));
    if (o.epsilon() == 0.0) return clean;

    const auto succeeded = [&](const torch::Tensor& logits, const torch::Tensor& wanted) {
      return targeted ? is_adversarial(logits, Targeted{wanted}) : is_adversarial(logits, wanted);
    };
    auto robust = succeeded(clean_logits, classes).logical_not();
    auto result = clean.clone();
    detail::SquareRandom random(o.seed());
    for (int64_t run = 0; run < o.restarts(); ++run) {
      const auto index = robust.nonzero().squeeze(1);
      if (index.numel() == 0) break;
      const auto wanted = classes.index_select(0, index);
      const auto x_run = detail::square_run(model, clean.index_select(0, index), wanted, targeted, o, random, observe);
      const auto fooled = succeeded(forward(model, model_layout(x_run)), wanted);
      const auto fooled_index = index.masked_select(fooled);
      result.index_copy_(0, fooled_index, x_run.index_select(0, fooled.nonzero().squeeze(1)));
      robust.index_fill_(0, fooled_index, false);
    }
    return result.detach();
  }

 private:
  SquareOptions options_;
};

static_assert(Attack<Square>);
static_assert(TargetedAttack<Square>);

/// The attack and its settings as JSON, found by argument-dependent lookup (nlohmann::json's
/// customisation point; `nlohmann::json j = square;`). "gradient_free" tells ardent::evaluate's
/// gradient-masking check that this attack does not follow the gradient.
template <typename Json>
void to_json(Json& j, const Square& attack) {
  const auto& o = attack.options();
  j = Json{{"attack", "Square"},
           {"gradient_free", true},
           {"norm", o.norm() == Norm::Linf ? "Linf" : "L2"},
           {"epsilon", o.epsilon()},
           {"queries", o.queries()},
           {"p_init", o.p_init()},
           {"restarts", o.restarts()},
           {"loss", o.loss() == SquareLoss::Margin ? "Margin" : "CE"},
           {"rescale_schedule", o.rescale_schedule()},
           {"seed", o.seed()},
           {"clip_min", o.clip_min()},
           {"clip_max", o.clip_max()},
           {"eval_mode", o.eval_mode()}};
}

}  // namespace ardent::attacks
