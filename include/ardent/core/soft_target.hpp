#pragma once
// The ardent::SoftTarget concept: what of each network the distillation loss compares.
//
//   View v_t = target.teacher_view(teacher, x);   // computed without gradients
//   View v_s = target.student_view(student, x);   // differentiable in the student's parameters
//
// Optional members, detected at compile time:
//   bind(teacher, student)      called once when the Distiller is built (create connectors, ...)
//   parameters()                trainable tensors the optimizer must update with the student's
//   view_from_logits(logits)    derives the view from logits already computed, saving a forward
//   train(on)                   follows the student's train/eval mode (connectors with BatchNorm)
// View must be default-constructible and copyable. The built-ins are in namespace ardent::targets
// (ardent/targets/), their views in ardent/targets/views.hpp.

#include "ardent/core/model.hpp"

#include <concepts>
#include <vector>

namespace ardent {

template <typename T, typename Teacher, typename Student>
concept SoftTargetFor = Model<Teacher> && Model<Student> &&
    requires(T& target, Teacher& teacher, Student& student, const torch::Tensor& x) {
  typename T::View;
  { target.teacher_view(teacher, x) } -> std::same_as<typename T::View>;
  { target.student_view(student, x) } -> std::same_as<typename T::View>;
};

/// A soft target usable with any pair of ardent models (checked with TorchScript models).
template <typename T>
concept SoftTarget = std::copy_constructible<T> && SoftTargetFor<T, torch::jit::Module, torch::jit::Module>;

namespace detail {
template <typename T, typename Teacher, typename Student>
concept HasBind = requires(T& target, Teacher& teacher, Student& student) {
  target.bind(teacher, student);
};

template <typename T>
concept HasTargetParameters = requires(T& target) {
  { target.parameters() } -> std::convertible_to<std::vector<torch::Tensor>>;
};

template <typename T>
concept HasViewFromLogits = requires(const T& target, const torch::Tensor& logits) {
  { target.view_from_logits(logits) } -> std::same_as<typename T::View>;
};
}  // namespace detail

}  // namespace ardent
