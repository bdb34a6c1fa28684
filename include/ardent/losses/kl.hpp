#pragma once
// Kullback-Leibler distillation loss (Hinton, Vinyals and Dean, "Distilling the Knowledge in a
// Neural Network", 2015; the adversarial term of ARD, Goldblum et al. 2020):
//
//   KL = T^2 * (1/B) * sum_b sum_c p_t,bc (log p_t,bc - log p_s,bc),   p = softmax(z / T)
//
// T^2 keeps the gradient's scale independent of T. KLReduction::ElementMean divides by B * C
// instead of B: that is what the official ARD code computes (PyTorch's nn.KLDivLoss() default,
// reduction='mean'), kept for exact comparison with its published numbers.

#include "ardent/losses/detail.hpp"
#include "ardent/losses/distill_loss.hpp"

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
    const auto& s = detail::tensor_of(student);
    const auto& t = detail::tensor_of(teacher);
    detail::check_same_shape("ardent::losses::KL", s, t);
    const double temperature = options_.temperature();
    const auto log_p_teacher = detail::log_probabilities(teacher, temperature);
    const auto log_p_student = detail::log_probabilities(student, temperature);
    const auto total = kl_divergence(log_p_teacher, log_p_student).sum();
    const double count = options_.reduction() == KLReduction::BatchMean ? static_cast<double>(s.size(0))
                                                                        : static_cast<double>(s.numel());
    const double scale = options_.scale_by_temperature_squared() ? temperature * temperature : 1.0;
    return total * (scale / count);
  }

  KLOptions options_;
};

static_assert(DistillLoss<KL>);

}  // namespace ardent::losses
