#pragma once
// The built-in objectives (ardent::Objective, ardent/core/objective.hpp): what a gradient attack
// maximises. Each maps logits [B, C] to one loss per sample [B]; the attack ascends their sum.
//
//   CrossEntropy{y}           CE(z, y)                                   (untargeted attacks)
//   TargetedCrossEntropy{t}   -CE(z, t)                                  (move toward class t)
//   KLDivergence{r, T}        sum_c p_r,c (log p_r,c - log p_z,c), p = softmax(./T)  (TRADES, RSLAD)
//   CWMargin{y, kappa}        min(max_{i != y} z_i - z_y, kappa)         (Carlini and Wagner 2017)
//   TargetedCWMargin{t, kappa} min(z_t - max_{i != t} z_i, kappa)        (its targeted form)
//   DLR{y}                    -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)  (Croce and Hein 2020)
//
// objective(logits) checks its arguments (logits [B, C], labels in [0, C)); the built-ins also have
// objective.unchecked(logits), which an attack's inner loop calls through objectives::evaluate
// once the first call has checked them.

#include "ardent/core/attack.hpp"
#include "ardent/core/check.hpp"
#include "ardent/objectives/divergence.hpp"
#include "ardent/objectives/margin.hpp"

#include <concepts>
#include <limits>

namespace ardent::objectives {

namespace detail {
inline void check(std::string_view objective, const torch::Tensor& logits, const torch::Tensor& labels,
                  std::string_view name = "labels") {
  check_logits(objective, "logits", logits);
  check_labels(objective, name, labels, logits.size(0), logits.size(1));
}
}  // namespace detail

struct CrossEntropy {
  torch::Tensor labels;

  torch::Tensor operator()(const torch::Tensor& logits) const {
    detail::check("ardent::objectives::CrossEntropy", logits, labels);
    return unchecked(logits);
  }
  torch::Tensor unchecked(const torch::Tensor& logits) const {
    return torch::nn::functional::cross_entropy(
        logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  }
};

struct TargetedCrossEntropy {
  torch::Tensor targets;

  torch::Tensor operator()(const torch::Tensor& logits) const {
    detail::check("ardent::objectives::TargetedCrossEntropy", logits, targets, "targets");
    return unchecked(logits);
  }
  torch::Tensor unchecked(const torch::Tensor& logits) const {
    return -torch::nn::functional::cross_entropy(
        logits, targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  }
};

struct KLDivergence {
  torch::Tensor reference_logits;
  double temperature = 1.0;

  torch::Tensor operator()(const torch::Tensor& logits) const {
    check_logits("ardent::objectives::KLDivergence", "logits", logits);
    check_positive("ardent::objectives::KLDivergence", "temperature", temperature);
    TORCH_CHECK(reference_logits.defined() && reference_logits.sizes() == logits.sizes(),
                "ardent::objectives::KLDivergence: argument 'reference_logits' has shape [",
                reference_logits.defined() ? reference_logits.sizes() : c10::IntArrayRef{}, "], expected [",
                logits.sizes(), "] (the shape of the logits)");
    return unchecked(logits);
  }
  torch::Tensor unchecked(const torch::Tensor& logits) const {
    return kl_divergence(torch::log_softmax(reference_logits.detach() / temperature, 1),
                         torch::log_softmax(logits / temperature, 1));
  }
};

struct CWMargin {
  torch::Tensor labels;
  double kappa = 0.0;

  torch::Tensor operator()(const torch::Tensor& logits) const {
    detail::check("ardent::objectives::CWMargin", logits, labels);
    check_non_negative("ardent::objectives::CWMargin", "kappa", kappa);
    return unchecked(logits);
  }
  torch::Tensor unchecked(const torch::Tensor& logits) const { return (-cw_margin(logits, labels)).clamp_max(kappa); }
};

struct TargetedCWMargin {
  torch::Tensor targets;
  double kappa = 0.0;

  torch::Tensor operator()(const torch::Tensor& logits) const {
    detail::check("ardent::objectives::TargetedCWMargin", logits, targets, "targets");
    check_non_negative("ardent::objectives::TargetedCWMargin", "kappa", kappa);
    return unchecked(logits);
  }
  torch::Tensor unchecked(const torch::Tensor& logits) const {
    return (-cw_margin(logits, Targeted{targets})).clamp_max(kappa);
  }
};

struct DLR {
  torch::Tensor labels;

  torch::Tensor operator()(const torch::Tensor& logits) const {
    detail::check("ardent::objectives::DLR", logits, labels);
    TORCH_CHECK(logits.size(1) >= 3, "ardent::objectives::DLR: argument 'logits' has ", logits.size(1),
                " classes, expected at least 3 (DLR divides by z_pi1 - z_pi3)");
    return unchecked(logits);
  }
  torch::Tensor unchecked(const torch::Tensor& logits) const {
    const auto sorted = std::get<0>(logits.sort(/*dim=*/1, /*descending=*/true));
    const auto scale = sorted.select(1, 0) - sorted.select(1, 2) + 1e-12;
    return -cw_margin(logits, labels) / scale;
  }
};

static_assert(Objective<CrossEntropy>);
static_assert(Objective<TargetedCrossEntropy>);
static_assert(Objective<KLDivergence>);
static_assert(Objective<CWMargin>);
static_assert(Objective<TargetedCWMargin>);
static_assert(Objective<DLR>);

/// objective.unchecked(logits) where the objective has it, else objective(logits): for an
/// attack's steps after the first, whose call has checked the arguments.
template <Objective O>
torch::Tensor evaluate(const O& objective, const torch::Tensor& logits) {
  if constexpr (requires {
                  { objective.unchecked(logits) } -> std::convertible_to<torch::Tensor>;
                }) {
    return objective.unchecked(logits);
  } else {
    return objective(logits);
  }
}

}  // namespace ardent::objectives
