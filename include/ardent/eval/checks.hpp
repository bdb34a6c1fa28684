#pragma once
// The sanity checks of the AutoAttack protocol (Croce and Hein, ICML 2020; the reference code's
// checks), run by ardent::evaluate on its first batch and, for gradient masking, after the
// attacks. Each returns a warning that says what the finding means and what to do, or none. They
// warn and never stop an evaluation: a model can pass every check and still be evaluated wrongly,
// and one that fails a check may still be robust; the warning says where to look.
//
//   randomised        repeated forward passes of the same batch disagree
//   probabilities     the outputs lie in [0, 1] and sum to 1: a softmax, not logits
//   classes           an attack tries more target classes than the model has, or DLR lacks classes
//   zero_gradients    points whose input gradient of the margin z_y - max_{j != y} z_j is exactly 0
//   gradient_masking  a gradient-free attack (Square) broke more than 0.2% of the points every
//                     gradient attack failed on
//
// What an attack can do (gradient-free, target classes, classes its loss needs) comes from its
// type (ardent::AttackCapabilities, core/attack.hpp), never from its report's JSON.

#include "ardent/core/attack.hpp"
#include "ardent/core/model.hpp"
#include "ardent/eval/report.hpp"
#include "ardent/objectives/margin.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace ardent::eval {

namespace checks {

/// Repeated forward passes compared (the reference code uses 5).
inline constexpr int kForwardPasses = 5;
/// Largest change of the L2-normalised outputs between passes that counts as equal.
inline constexpr double kRandomTolerance = 1e-5;
/// How close to 1 the rows of a probability output sum.
inline constexpr double kProbabilityTolerance = 1e-4;
/// Fraction of all points a gradient-free attack must break beyond the gradient attacks (0.2
/// percentage points, as the reference code's check_square_sr).
inline constexpr double kMaskingFraction = 0.002;

template <Model M>
std::optional<EvalWarning> randomised(M& model, const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  const auto normalised = [&] {
    const auto z = forward(model, x).to(torch::kDouble);
    return z / (z.flatten(1).norm(2, 1).reshape({-1, 1}) + 1e-10);
  };
  const auto first = normalised();
  double change = 0.0;
  for (int pass = 1; pass < kForwardPasses; ++pass) {
    change = std::max(change, (normalised() - first).abs().max().template item<double>());
  }
  if (change <= kRandomTolerance) return std::nullopt;
  return EvalWarning{
      "randomised",
      fmt::format("the model's outputs changed between {} forward passes of the same batch in eval mode (largest "
                  "change {:.3g} of the normalised outputs): its forward pass is random (dropout or noise left on, "
                  "random preprocessing). Attacks then aim at a moving target, and the numbers change from run to "
                  "run. Evaluate it also with eval::autoattack_rand (APGD with expectation over transformation), "
                  "and report the lower worst case; if the randomness is unintended, remove it.",
                  kForwardPasses, change)};
}

inline std::optional<EvalWarning> probabilities(const torch::Tensor& logits) {
  const auto z = logits.detach().to(torch::kDouble);
  const bool in_unit = z.min().item<double>() >= -kProbabilityTolerance &&
                       z.max().item<double>() <= 1.0 + kProbabilityTolerance;
  if (!in_unit || (z.sum(1) - 1.0).abs().max().item<double>() > kProbabilityTolerance) return std::nullopt;
  return EvalWarning{"probabilities",
                     "the model's outputs lie in [0, 1] and sum to 1 for every point: they look like probabilities "
                     "(a softmax at the end of the network), not logits. Cross-entropy and DLR on probabilities "
                     "saturate, their gradients vanish, and gradient attacks then overstate robustness. Evaluate "
                     "the network without its final softmax (the attacks expect logits)."};
}

/// `attacks`: (name, capabilities) of each attack of the list.
inline std::optional<EvalWarning> classes(int64_t num_classes,
                                          const std::vector<std::pair<std::string, AttackCapabilities>>& attacks) {
  std::vector<std::string> problems;
  for (const auto& [name, capabilities] : attacks) {
    const int64_t targets = capabilities.target_classes;
    if (targets > 0 && num_classes < targets + 1) {
      problems.push_back(
          fmt::format("'{}' tries {} target classes, which needs {} classes; it will try only the {} "
                      "there are",
                      name, targets, targets + 1, num_classes - 1));
    }
    if (num_classes < capabilities.classes_needed) {
      problems.push_back(
          fmt::format("'{}' needs at least {} classes (its loss, e.g. DLR, divides by a gap between "
                      "ranked logits): it cannot run; use APGD-CE, FAB and Square instead",
                      name, capabilities.classes_needed));
    }
  }
  if (problems.empty()) return std::nullopt;
  return EvalWarning{"classes", fmt::format("the model has {} classes, and {}. The worst case is then measured "
                                            "with fewer attacks than the list promises.",
                                            num_classes, fmt::join(problems, "; "))};
}

/// The points of (x, y) whose input gradient of the margin z_y - max_{j != y} z_j is exactly zero.
template <Model M>
std::optional<EvalWarning> zero_gradients(M& model, const torch::Tensor& x, const torch::Tensor& y) {
  c10::InferenceMode inference_off(false);
  torch::AutoGradMode grad_on(true);
  auto input = x.detach().clone().requires_grad_(true);
  const auto logits = forward(model, input);
  const auto margin = objectives::cw_margin(logits, y);
  int64_t zero = x.size(0);
  if (margin.requires_grad()) {
    const auto gradient = torch::autograd::grad({margin.sum()}, {input}, /*grad_outputs=*/{}, /*retain_graph=*/false,
                                                /*create_graph=*/false, /*allow_unused=*/true)[0];
    zero = gradient.defined() ? gradient.flatten(1).abs().amax(1).eq(0).sum().template item<int64_t>() : x.size(0);
  }
  if (zero == 0) return std::nullopt;
  return EvalWarning{
      "zero_gradients",
      fmt::format("{} of {} points of the first batch have an input gradient of exactly zero (of the margin "
                  "z_y - max_j z_j): gradient attacks (APGD, FAB, PGD) cannot move them, so their robustness is "
                  "unverified. Zero gradients come from non-differentiable steps in the forward pass (rounding, "
                  "thresholds, quantisation, argmax) or saturated activations. Trust the gradient-free Square "
                  "attack (eval::square, part of eval::autoattack) for these points, or attack a differentiable "
                  "approximation of the model (BPDA, Athalye et al. 2018).",
                  zero, x.size(0))};
}

/// `broken`: points a gradient-free attack broke and no gradient attack did, out of `samples`.
inline std::optional<EvalWarning> gradient_masking(int64_t broken, int64_t samples,
                                                   const std::vector<std::string>& free_attacks) {
  if (samples == 0 || static_cast<double>(broken) <= kMaskingFraction * static_cast<double>(samples)) {
    return std::nullopt;
  }
  return EvalWarning{
      "gradient_masking",
      fmt::format("the gradient-free attacks ({}) broke {} points ({:.2f}% of all) that every gradient attack "
                  "failed on: a sign of gradient masking (the gradients mislead the attacks; the model is less "
                  "robust than they say). Report the worst case over all attacks, never a gradient attack's "
                  "number alone, and look for the cause (see the zero_gradients and probabilities checks); "
                  "evaluate with more Square queries (eval::square(eps, 10000)) to see how far the accuracy falls.",
                  fmt::join(free_attacks, ", "), broken,
                  100.0 * static_cast<double>(broken) / static_cast<double>(samples))};
}

}  // namespace checks

}  // namespace ardent::eval
