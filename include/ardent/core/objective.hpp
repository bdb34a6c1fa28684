#pragma once
// The ardent::Objective concept: what a gradient attack maximises in place of the labels. An
// objective maps logits [B, C] to one loss per sample [B], so that each sample's gradient is
// independent of the batch. The built-ins are in namespace ardent::objectives
// (ardent/objectives/builtins.hpp).

#include <torch/torch.h>

#include <concepts>
#include <type_traits>

namespace ardent {

/// Anything that maps logits to a per-sample loss.
template <typename O>
concept Objective = std::invocable<const O&, const torch::Tensor&> &&
    std::convertible_to<std::invoke_result_t<const O&, const torch::Tensor&>, torch::Tensor>;

}  // namespace ardent
