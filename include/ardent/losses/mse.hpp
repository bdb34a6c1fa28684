#pragma once
// Mean squared error between views: logits (Ba and Caruana, "Do Deep Nets Really Need to be
// Deep?", 2014), probabilities, or feature maps (FitNets, Romero et al. 2015), where it is the
// sum over paired stages of each stage's element mean:
//
//   MSE = sum_k mean((f_s,k - f_t,k)^2)

#include "ardent/core/check.hpp"
#include "ardent/core/distill_loss.hpp"
#include "ardent/targets/views.hpp"

namespace ardent::losses {

class MSE {
 public:
  torch::Tensor operator()(const torch::Tensor& student, const torch::Tensor& teacher) const {
    check_shapes(student, teacher);
    return torch::mse_loss(student, teacher);
  }
  torch::Tensor operator()(const targets::Probabilities& student, const targets::Probabilities& teacher) const {
    return (*this)(student.value, teacher.value);
  }
  torch::Tensor operator()(const targets::FeatureMaps& student, const targets::FeatureMaps& teacher) const {
    TORCH_CHECK(!student.stages.empty() && student.stages.size() == teacher.stages.size(),
                "ardent::losses::MSE: argument 'student_view' has ", student.stages.size(),
                " feature stages, expected the teacher view's ", teacher.stages.size(), " (and at least one)");
    auto total = (*this)(student.stages[0], teacher.stages[0]);
    for (std::size_t k = 1; k < student.stages.size(); ++k)
      total = total + (*this)(student.stages[k], teacher.stages[k]);
    return total;
  }

 private:
  static void check_shapes(const torch::Tensor& student, const torch::Tensor& teacher) {
    if (student.sizes() != teacher.sizes()) {
      fail_argument("ardent::losses::MSE", "student_view",
                    fmt::format("has shape [{}], expected the teacher view's shape [{}]",
                                fmt::join(student.sizes(), ", "), fmt::join(teacher.sizes(), ", ")));
    }
  }
};

static_assert(DistillLoss<MSE>);
static_assert(LossAccepts<MSE, targets::FeatureMaps>);

}  // namespace ardent::losses
