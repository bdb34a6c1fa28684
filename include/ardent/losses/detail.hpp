#pragma once
// Shared pieces of the distribution losses.

#include "ardent/core/check.hpp"
#include "ardent/objectives/divergence.hpp"
#include "ardent/targets/views.hpp"

namespace ardent::losses::detail {

inline void check_same_shape(std::string_view loss, const torch::Tensor& student, const torch::Tensor& teacher) {
  check_logits(loss, "student_view", student);
  if (student.sizes() != teacher.sizes()) {
    fail_argument(loss, "student_view",
                  fmt::format("has shape [{}], expected the teacher view's shape [{}] (same batch and class count)",
                              fmt::join(student.sizes(), ", "), fmt::join(teacher.sizes(), ", ")));
  }
}

/// log softmax(z / T), stable for any logits.
inline torch::Tensor log_probabilities(const torch::Tensor& logits, double temperature) {
  return torch::log_softmax(logits / temperature, 1);
}

/// The same for a view that already holds probabilities: log softmax(log p / T). Probabilities
/// are clamped at 1e-12 first, the only place a log of probabilities is unavoidable.
inline torch::Tensor log_probabilities(const targets::Probabilities& p, double temperature) {
  return torch::log_softmax(p.value.clamp_min(1e-12).log() / temperature, 1);
}

inline const torch::Tensor& tensor_of(const torch::Tensor& logits) { return logits; }
inline const torch::Tensor& tensor_of(const targets::Probabilities& p) { return p.value; }

/// The body of KL and CE: scale / count * sum_b divergence(log p_t,b, log p_s,b), p = softmax(z / T),
/// scale = T^2 (or 1), count = B (or B * C with `element_mean`).
template <typename Divergence, typename View>
torch::Tensor distribution_loss(std::string_view loss, Divergence divergence, const View& student, const View& teacher,
                                double temperature, bool scale_by_temperature_squared, bool element_mean = false) {
  const auto& s = tensor_of(student);
  check_same_shape(loss, s, tensor_of(teacher));
  const auto log_p_teacher = log_probabilities(teacher, temperature);
  const auto log_p_student = log_probabilities(student, temperature);
  const auto total = divergence(log_p_teacher, log_p_student).sum();
  const double count = element_mean ? static_cast<double>(s.numel()) : static_cast<double>(s.size(0));
  const double scale = scale_by_temperature_squared ? temperature * temperature : 1.0;
  return total * (scale / count);
}

}  // namespace ardent::losses::detail
