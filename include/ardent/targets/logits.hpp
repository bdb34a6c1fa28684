#pragma once
// targets::Logits: the networks' raw logits z. The loss applies its temperature (Hinton et al. 2015).

#include "ardent/core/soft_target.hpp"

namespace ardent::targets {

struct Logits {
  using View = torch::Tensor;

  template <Model M>
  View teacher_view(M& teacher, const torch::Tensor& x) const {
    return forward(teacher, x);
  }
  template <Model M>
  View student_view(M& student, const torch::Tensor& x) const {
    return forward(student, x);
  }
  View view_from_logits(const torch::Tensor& logits) const { return logits; }
};

static_assert(SoftTarget<Logits>);

}  // namespace ardent::targets
