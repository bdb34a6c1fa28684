#pragma once
// RSLAD's adversary (Zi et al., ICCV 2021): x' = argmax_{x' in B(x, eps)} KL(T(x) || S(x')), T(x)
// the clean teacher. An attack that maximises an objective (perturb(model, x, objective)): PGD,
// APGD, FGSM, BIM, MIFGSM.

#include "ardent/core/model.hpp"
#include "ardent/distill/adversary.hpp"
#include "ardent/objectives/builtins.hpp"

namespace ardent::adversaries {

struct KLToCleanTeacher {
  static constexpr bool uses_clean_teacher_logits = true;

  template <typename Attack, Model Teacher, Model Student>
  requires requires(Attack& a, Student& s, const torch::Tensor& x) {
    { a.perturb(s, x, objectives::KLDivergence{x}) } -> std::same_as<torch::Tensor>;
  }
  torch::Tensor perturb(Attack& attack, Teacher& /*teacher*/, Student& student, const AdversaryInputs& in) const {
    return attack.perturb(student, in.x, objectives::KLDivergence{in.teacher_logits});
  }
};

}  // namespace ardent::adversaries
