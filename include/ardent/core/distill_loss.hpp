#pragma once
// The ardent::DistillLoss concept: how far the student's view of a batch is from the teacher's.
//
//   torch::Tensor loss = policy(student_view, teacher_view);   // a scalar, differentiable in student_view
//
// A view is what a soft target extracts from a network (ardent/core/soft_target.hpp): logits
// (torch::Tensor), probabilities (targets::Probabilities) or intermediate features
// (targets::FeatureMaps; both in ardent/targets/views.hpp). A loss supports a view by having a call
// operator for it; KL and CE compare class distributions and so have none for feature maps. The
// built-ins are in namespace ardent::losses (ardent/losses/).

#include <torch/torch.h>

#include <concepts>

namespace ardent {

/// `Loss` can compare two views of type `View`.
template <typename Loss, typename View>
concept LossAccepts = requires(const Loss& loss, const View& student, const View& teacher) {
  { loss(student, teacher) } -> std::convertible_to<torch::Tensor>;
};

/// A distillation loss: compares at least raw logits, the view of targets::Logits.
template <typename Loss>
concept DistillLoss = std::copy_constructible<Loss> && LossAccepts<Loss, torch::Tensor>;

}  // namespace ardent
