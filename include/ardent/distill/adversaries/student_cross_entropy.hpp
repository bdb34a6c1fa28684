#pragma once
// ARD's adversary (Goldblum et al., AAAI 2020): x' = argmax_{x' in B(x, eps)} CE(S(x'), y), the
// student attacked against the true labels. Any attack.

#include "ardent/core/attack.hpp"
#include "ardent/distill/adversary.hpp"

namespace ardent::adversaries {

struct StudentCrossEntropy {
  template <typename Attack, Model Teacher, Model Student>
  requires HasPerturb<Attack, Student> torch::Tensor perturb(Attack& attack, Teacher& /*teacher*/, Student& student,
                                                             const AdversaryInputs& in)
  const { return attack.perturb(student, in.x, in.labels); }
};

}  // namespace ardent::adversaries
