#pragma once
// Attack objectives: what a Distiller's attack maximises when it makes x', a policy type (the last
// template parameter of ardent::Distiller), so that a recipe is a type and a new one needs no
// edit of the library:
//
//   StudentCrossEntropy      CE(S(x'), y)                                   ARD (Goldblum et al. 2020)
//   KLToCleanTeacher         KL(T(x) || S(x'))                              RSLAD (Zi et al. 2021)
//   KLToAdversarialTeacher   KL(T(x') || S(x')), gradient through both      AdaAD (Huang et al. 2023)
//
// A policy is a type with the member
//
//   template <typename Attack, ardent::Model Teacher, ardent::Model Student>
//   torch::Tensor perturb(Attack& attack, Teacher& teacher, Student& student,
//                         const ardent::AttackInputs& in) const;
//
// constrained on what it asks of the attack, so that a Distiller whose attack cannot serve the
// objective fails to compile with a message saying so (ardent::AttackObjectiveFor). The Distiller
// calls it with the student already in the recipe's attack mode; `in.teacher_logits` holds the
// teacher's clean logits (computed without gradients) when the policy declares
// `static constexpr bool uses_clean_teacher_logits = true`, and is undefined otherwise.

#include "ardent/attacks/kit.hpp"
#include "ardent/core/divergence.hpp"

#include <functional>

namespace ardent {

/// What a Distiller hands its attack objective for one batch.
struct AttackInputs {
  const torch::Tensor& x;               // the clean batch (already checked)
  const torch::Tensor& labels;          // its labels (already checked)
  const torch::Tensor& teacher_logits;  // T(x) without gradients, when the policy uses it
};

/// `O` can make x' with `Attack` for this teacher and student.
template <typename O, typename Attack, typename Teacher, typename Student>
concept AttackObjectiveFor = requires(const O& objective, Attack& attack, Teacher& teacher, Student& student,
                                      const AttackInputs& in) {
  { objective.perturb(attack, teacher, student, in) } -> std::same_as<torch::Tensor>;
};

namespace detail {

/// Teacher and student side by side, as one model whose logits are [T(x), S(x)]: lets any attack
/// maximise an objective of both networks at once (AdaAD's KL(T(x') || S(x'))).
class TeacherStudentImpl : public torch::nn::Module {
 public:
  using Forward = std::function<torch::Tensor(const torch::Tensor&)>;
  TeacherStudentImpl(Forward teacher, Forward student) : teacher_(std::move(teacher)), student_(std::move(student)) {}
  torch::Tensor forward(const torch::Tensor& x) { return torch::cat({teacher_(x), student_(x)}, 1); }

 private:
  Forward teacher_;
  Forward student_;
};
TORCH_MODULE(TeacherStudent);

/// Per-sample KL(softmax(t) || softmax(s)) of logits [T(x), S(x)] laid side by side, with
/// gradients through both halves.
struct SideBySideKL {
  torch::Tensor operator()(const torch::Tensor& logits) const {
    const auto halves = logits.chunk(2, 1);
    return kl_divergence(torch::log_softmax(halves[0], 1), torch::log_softmax(halves[1], 1));
  }
};

template <typename O>
concept DeclaresCleanTeacherLogits = requires {
  { O::uses_clean_teacher_logits } -> std::convertible_to<bool>;
};

}  // namespace detail

/// Whether the policy reads AttackInputs::teacher_logits.
template <typename O>
inline constexpr bool uses_clean_teacher_logits = [] {
  if constexpr (detail::DeclaresCleanTeacherLogits<O>) {
    return static_cast<bool>(O::uses_clean_teacher_logits);
  } else {
    return false;
  }
}();

namespace attack_objectives {

/// x' = argmax CE(S(x'), y): the student attacked against the true labels (ARD). Any attack.
struct StudentCrossEntropy {
  template <typename Attack, Model Teacher, Model Student>
  requires HasPerturb<Attack, Student> torch::Tensor perturb(Attack& attack, Teacher& /*teacher*/, Student& student,
                                                             const AttackInputs& in)
  const { return attack.perturb(student, in.x, in.labels); }
};

/// x' = argmax KL(T(x) || S(x')), T(x) the clean teacher (RSLAD). An attack that maximises an
/// objective (perturb(model, x, objective)): PGD, APGD, FGSM, BIM, MIFGSM.
struct KLToCleanTeacher {
  static constexpr bool uses_clean_teacher_logits = true;

  template <typename Attack, Model Teacher, Model Student>
  requires requires(Attack& a, Student& s, const torch::Tensor& x) {
    { a.perturb(s, x, objectives::KLDivergence{x}) } -> std::same_as<torch::Tensor>;
  }
  torch::Tensor perturb(Attack& attack, Teacher& /*teacher*/, Student& student, const AttackInputs& in) const {
    return attack.perturb(student, in.x, objectives::KLDivergence{in.teacher_logits});
  }
};

/// x' = argmax KL(T(x') || S(x')), gradient through both networks (AdaAD). An attack that
/// maximises an objective. The pair holds no parameters of its own, so the attack cannot take
/// the networks' parameters out of autograd: done here (Speedups::freeze_parameters).
struct KLToAdversarialTeacher {
  template <typename Attack, Model Teacher, Model Student>
  requires requires(Attack& a, detail::TeacherStudent& both, const torch::Tensor& x) {
    { a.perturb(both, x, detail::SideBySideKL{}) } -> std::same_as<torch::Tensor>;
  }
  torch::Tensor perturb(Attack& attack, Teacher& teacher, Student& student, const AttackInputs& in) const {
    const attacks::FrozenParameters frozen_teacher(teacher);
    const attacks::FrozenParameters frozen_student(student);
    detail::TeacherStudent both([&teacher](const torch::Tensor& input) { return forward(teacher, input); },
                                [&student](const torch::Tensor& input) { return forward(student, input); });
    return attack.perturb(both, in.x, detail::SideBySideKL{});
  }
};

}  // namespace attack_objectives
}  // namespace ardent
