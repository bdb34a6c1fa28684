#pragma once
// Kullback-Leibler distillation loss (Hinton, Vinyals and Dean, "Distilling the Knowledge in a
// Neural Network", 2015; the adversarial term of ARD, Goldblum et al. 2020):
//
//   KL = T^2 * (1/B) * sum_b sum_c p_t,bc (log p_t,bc - log p_s,bc),   p = softmax(z / T)
//
// T^2 keeps the gradient's scale independent of T. KLReduction::ElementMean divides by B * C
// instead of B: that is what the official ARD code computes (PyTorch's nn.KLDivLoss() default,
// reduction='mean'), kept for exact comparison with its published numbers.

#include "ardent/core/distill_loss.hpp"
#include "ardent/losses/detail.hpp"

namespace ardent::losses {

enum class KLReduction { BatchMean, ElementMean };

struct KLOptions {
  /// Softmax temperature T.
  TORCH_ARG(double, temperature) = 1.0;
  /// Multiply by T^2.
  TORCH_ARG(bool, scale_by_temperature_squared) = true;
  TORCH_ARG(KLReduction, reduction) = KLReduction::BatchMean;
};

class KL {
 public:
  explicit KL(KLOptions options = {}) : options_(options) {
    check_positive("ardent::losses::KL", "temperature", options_.temperature());
  }

  const KLOptions& options() const { return options_; }

  torch::Tensor operator()(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits) const {
    return compute(student_logits, teacher_logits);
  }
  torch::Tensor operator()(const targets::Probabilities& student, const targets::Probabilities& teacher) const {
    return compute(student, teacher);
  }

 private:
  template <typename View>
  torch::Tensor compute(const View& student, const View& teacher) const {
    return detail::distribution_loss("ardent::losses::KL", objectives::kl_divergence, student, teacher,
                                     options_.temperature(), options_.scale_by_temperature_squared(),
                                     options_.reduction() == KLReduction::ElementMean);
  }

  KLOptions options_;
};

static_assert(DistillLoss<KL>);

}  // namespace ardent::losses
