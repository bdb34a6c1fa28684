#pragma once
// targets::Outputs: the networks' softmax probabilities p = softmax(z), for losses that compare
// outputs directly (MSE on probabilities, as in Ba and Caruana 2014's regression on outputs).

#include "ardent/core/soft_target.hpp"
#include "ardent/targets/views.hpp"

namespace ardent::targets {

struct Outputs {
  using View = Probabilities;

  template <Model M>
  View teacher_view(M& teacher, const torch::Tensor& x) const {
    return view_from_logits(forward(teacher, x));
  }
  template <Model M>
  View student_view(M& student, const torch::Tensor& x) const {
    return view_from_logits(forward(student, x));
  }
  View view_from_logits(const torch::Tensor& logits) const { return {torch::softmax(logits, 1)}; }
};

static_assert(SoftTarget<Outputs>);

}  // namespace ardent::targets
