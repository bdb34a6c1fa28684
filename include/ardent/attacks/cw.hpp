#pragma once
// Carlini and Wagner's L2 attack ("Towards Evaluating the Robustness of Neural Networks",
// IEEE S&P 2017, arXiv:1608.04644). With x' = lo + (tanh(w) + 1) / 2 * (hi - lo), Adam minimises
// over w, per sample,
//
//   ||x' - x||_2^2 + c * f(x'),   f = max(Z_y - max_{i != y} Z_i, -kappa)        (untargeted)
//                                 f = max(max_{i != t} Z_i - Z_t, -kappa)        (targeted)
//
// The tanh change of variables keeps x' in the box without clipping. w starts at
// atanh((2 (x - lo) / (hi - lo) - 1) * (1 - 1e-6)): the shrink keeps pixels at exactly lo or hi
// at a finite w where the gradient of tanh is not zero, so they can still move.
// Each sample keeps the adversarial point of smallest L2 distance found; one never made
// adversarial comes back unchanged. binary_search_steps(n) > 1 searches c per sample: tenfold
// while no adversarial is found, bisection between the largest failing and the smallest
// succeeding c once one is.

#include "ardent/attacks/detail/gradient.hpp"

#include <limits>
#include <type_traits>

namespace ardent::attacks {

struct CWOptions {
  /// Initial weight of the margin term (the constant searched by binary search).
  TORCH_ARG(double, c) = 1.0;
  /// Confidence: the margin the adversarial must reach (0: just misclassified).
  TORCH_ARG(double, kappa) = 0.0;
  /// Adam steps per value of c.
  TORCH_ARG(int64_t, steps) = 50;
  /// Adam's learning rate (betas 0.9, 0.999, eps 1e-8).
  TORCH_ARG(double, lr) = 0.01;
  /// Values of c tried per sample; 1 uses c alone.
  TORCH_ARG(int64_t, binary_search_steps) = 1;
  /// Stop a run of Adam when the total loss has not fallen by 0.01% over a tenth of the steps.
  TORCH_ARG(bool, abort_early) = true;
  TORCH_ARG(double, clip_min) = 0.0;
  TORCH_ARG(double, clip_max) = 1.0;
  TORCH_ARG(bool, eval_mode) = true;
};

class CW {
 public:
  CW() : CW(CWOptions()) {}
  explicit CW(CWOptions options) : options_(options) {
    constexpr std::string_view name = "ardent::attacks::CW";
    check_box(name, options_.clip_min(), options_.clip_max());
    check_non_negative(name, "c", options_.c());
    check_non_negative(name, "kappa", options_.kappa());
    check_positive(name, "lr", options_.lr());
    check_non_negative(name, "steps", static_cast<double>(options_.steps()));
    if (options_.binary_search_steps() < 1) {
      fail_argument(name, "binary_search_steps",
                    fmt::format("is {}, expected at least 1", options_.binary_search_steps()));
    }
  }

  const CWOptions& options() const { return options_; }

  /// The term Adam minimises besides the distance, per sample:
  /// max(Z_y - max_{i != y} Z_i, -kappa), or for targets t max(max_{i != t} Z_i - Z_t, -kappa).
  /// The other classes' maximum masks the class with -inf, which stays right when every logit is negative.
  static torch::Tensor margin(const torch::Tensor& logits, const torch::Tensor& classes, double kappa,
                              bool targeted = false) {
    return (targeted ? cw_margin(logits, Targeted{classes}) : cw_margin(logits, classes)).clamp_min(-kappa);
  }

  /// `goal`: labels (untargeted) or ardent::Targeted{targets}. CW minimises the Carlini-Wagner
  /// margin of the classes, and an arbitrary objective has no notion of success for its
  /// smallest-distance search, so the constraint admits no objective (and
  /// `requires { attack.perturb(model, x, objective); }` is false): use ardent::attacks::PGD or
  /// ardent::attacks::APGD to maximise an objective.
  template <Model M, LabelsOrTargets G>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const G& goal) const {
    constexpr bool targeted = std::same_as<G, Targeted>;
    const auto& o = options_;
    check_call("ardent::attacks::CW", model, x, goal, o.clip_min(), o.clip_max());
    AttackScope scope(model, o.eval_mode());
    const auto clean = attack_copy(x);
    torch::Tensor classes;
    if constexpr (targeted) {
      classes = goal.targets.clone();
    } else {
      classes = goal.clone();
    }
    const int64_t batch = clean.size(0);
    const double lo = o.clip_min();
    const double range = o.clip_max() - o.clip_min();
    const auto double_options = clean.options().dtype(torch::kDouble);

    // Adversarial when the goal is reached with margin kappa; at kappa 0 this is exactly
    // argmax != y (untargeted) or argmax == t (targeted).
    const auto adversarial = [&](const torch::Tensor& logits) {
      if constexpr (targeted) {
        const Targeted wanted{classes};
        return is_adversarial(logits, wanted).logical_and(cw_margin(logits, wanted) <= -o.kappa());
      } else {
        return is_adversarial(logits, classes).logical_and(cw_margin(logits, classes) <= -o.kappa());
      }
    };

    // A sample adversarial already is its own best answer, at distance 0.
    auto best_l2 = torch::full({batch}, std::numeric_limits<double>::infinity(), double_options);
    auto best = clean.clone();
    {
      torch::NoGradGuard no_grad;
      const auto logits = forward(model, clean);
      check_model_output("ardent::attacks::CW", "model", logits, clean);
      check_labels("ardent::attacks::CW", targeted ? "targets" : "labels", classes, batch, logits.size(1));
      const auto already = adversarial(logits);
      best_l2.masked_fill_(already, 0.0);
    }

    const auto w_start = ((clean - lo) / range * 2 - 1).mul(1 - 1e-6).atanh();
    auto c = torch::full({batch}, o.c(), double_options);
    auto lower = torch::zeros({batch}, double_options);
    auto upper = torch::full({batch}, 1e10, double_options);
    const int64_t check_every = std::max<int64_t>(o.steps() / 10, 1);

    for (int64_t search = 0; search < o.binary_search_steps(); ++search) {
      // LibTorch's Adam on w alone (betas 0.9, 0.999, eps 1e-8); the gradient comes from
      // torch::autograd::grad, so the model's parameters never receive one.
      auto w = w_start.clone().requires_grad_(true);
      torch::optim::Adam adam({w}, torch::optim::AdamOptions(o.lr()).betas({0.9, 0.999}).eps(1e-8));
      auto succeeded = torch::zeros({batch}, clean.options().dtype(torch::kBool));
      const auto c_input = c.to(clean.scalar_type());
      double previous = std::numeric_limits<double>::infinity();
      for (int64_t step = 0; step < o.steps(); ++step) {
        const auto x_adv = lo + (w.tanh() + 1) / 2 * range;
        const auto logits = forward(model, x_adv);
        const auto l2_squared = (x_adv - clean).pow(2).flatten(1).sum(1);
        const auto loss = l2_squared + c_input * margin(logits, classes, o.kappa(), targeted);
        const auto total = loss.sum();
        w.mutable_grad() = torch::autograd::grad({total}, {w})[0];

        torch::NoGradGuard no_grad;
        const auto fooled = adversarial(logits.detach());
        const auto l2 = l2_squared.detach().sqrt().to(torch::kDouble);
        const auto improved = fooled.logical_and(l2 < best_l2);
        best_l2 = torch::where(improved, l2, best_l2);
        best = torch::where(per_sample(improved, clean), x_adv.detach(), best);
        succeeded.logical_or_(fooled);

        adam.step();

        if (o.abort_early() && (step + 1) % check_every == 0) {
          const double current = total.template item<double>();
          if (current > previous * 0.9999) break;
          previous = current;
        }
      }
      // Per sample: success bounds c from above, failure from below.
      upper = torch::where(succeeded, torch::minimum(upper, c), upper);
      lower = torch::where(succeeded, lower, torch::maximum(lower, c));
      c = torch::where(upper < 1e9, (lower + upper) / 2, c * 10);
    }
    return torch::where(per_sample(best_l2.isfinite(), clean), best, clean).detach();
  }

 private:
  CWOptions options_;
};

static_assert(Attack<CW>);
static_assert(TargetedAttack<CW>);

/// The attack and its settings as JSON, found by argument-dependent lookup (nlohmann::json's
/// customisation point; `nlohmann::json j = cw;`). ardent::evaluate records it in its report.
template <typename Json>
void to_json(Json& j, const CW& attack) {
  const auto& o = attack.options();
  j = Json{{"attack", "CW"},
           {"norm", "L2"},
           {"c", o.c()},
           {"kappa", o.kappa()},
           {"steps", o.steps()},
           {"lr", o.lr()},
           {"binary_search_steps", o.binary_search_steps()},
           {"abort_early", o.abort_early()},
           {"clip_min", o.clip_min()},
           {"clip_max", o.clip_max()},
           {"eval_mode", o.eval_mode()}};
}

}  // namespace ardent::attacks
