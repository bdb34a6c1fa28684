#pragma once
// Shared pieces of the distribution losses.

#include "ardent/core/check.hpp"
#include "ardent/core/divergence.hpp"
#include "ardent/targets/soft_target.hpp"

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

}  // namespace ardent::losses::detail
