#pragma once
// Soft cross-entropy (Hinton, Vinyals and Dean 2015): the student's cross-entropy against the
// teacher's softened distribution,
//
//   CE = T^2 * (1/B) * sum_b sum_c -p_t,bc log p_s,bc,   p = softmax(z / T).
//
// It differs from KL by the teacher's entropy, a constant for the student, so both give the same
// gradients; CE's value is not zero when the student matches the teacher.

#include "ardent/core/distill_loss.hpp"
#include "ardent/losses/detail.hpp"

namespace ardent::losses {

struct CEOptions {
  TORCH_ARG(double, temperature) = 1.0;
  TORCH_ARG(bool, scale_by_temperature_squared) = true;
};

class CE {
 public:
  explicit CE(CEOptions options = {}) : options_(options) {
    check_positive("ardent::losses::CE", "temperature", options_.temperature());
  }

  const CEOptions& options() const { return options_; }

  torch::Tensor operator()(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits) const {
    return compute(student_logits, teacher_logits);
  }
  torch::Tensor operator()(const targets::Probabilities& student, const targets::Probabilities& teacher) const {
    return compute(student, teacher);
  }

 private:
  template <typename View>
  torch::Tensor compute(const View& student, const View& teacher) const {
    return detail::distribution_loss("ardent::losses::CE", objectives::soft_cross_entropy, student, teacher,
                                     options_.temperature(), options_.scale_by_temperature_squared());
  }

  CEOptions options_;
};

static_assert(DistillLoss<CE>);

}  // namespace ardent::losses
