#pragma once
// Adversaries: how a Distiller makes x', the input its attack builds for the adversarial term. An
// adversary is a policy type (the last template parameter of ardent::Distiller) that decides which
// networks the attack sees and what it maximises, so that a recipe is a type and a new one needs
// no edit of the library. The built-ins are in namespace ardent::adversaries
// (ardent/distill/adversaries/):
//
//   StudentCrossEntropy      CE(S(x'), y)                                   ARD (Goldblum et al. 2020)
//   KLToCleanTeacher         KL(T(x) || S(x'))                              RSLAD (Zi et al. 2021)
//   KLToAdversarialTeacher   KL(T(x') || S(x')), gradient through both      AdaAD (Huang et al. 2023)
//
// An adversary is a type with the member
//
//   template <typename Attack, ardent::Model Teacher, ardent::Model Student>
//   torch::Tensor perturb(Attack& attack, Teacher& teacher, Student& student,
//                         const ardent::AdversaryInputs& in) const;
//
// constrained on what it asks of the attack, so that a Distiller whose attack cannot serve the
// adversary fails to compile with a message saying so (ardent::AdversaryFor). The Distiller calls
// it with the student already in the recipe's attack mode; `in.teacher_logits` holds the
// teacher's clean logits (computed without gradients) when the adversary declares
// `static constexpr bool uses_clean_teacher_logits = true`, and is undefined otherwise.
//
// (An adversary is not an objective: ardent::objectives are per-sample losses of one network's
// logits, which an adversary may hand its attack to maximise.)

#include "ardent/core/model.hpp"

#include <concepts>

namespace ardent {

/// What a Distiller hands its adversary for one batch.
struct AdversaryInputs {
  const torch::Tensor& x;               // the clean batch (already checked)
  const torch::Tensor& labels;          // its labels (already checked)
  const torch::Tensor& teacher_logits;  // T(x) without gradients, when the adversary uses it
};

/// `A` can make x' with `Attack` for this teacher and student.
template <typename A, typename Attack, typename Teacher, typename Student>
concept AdversaryFor = requires(const A& adversary, Attack& attack, Teacher& teacher, Student& student,
                                const AdversaryInputs& in) {
  { adversary.perturb(attack, teacher, student, in) } -> std::same_as<torch::Tensor>;
};

namespace detail {
template <typename A>
concept DeclaresCleanTeacherLogits = requires {
  { A::uses_clean_teacher_logits } -> std::convertible_to<bool>;
};
}  // namespace detail

/// Whether the adversary reads AdversaryInputs::teacher_logits.
template <typename A>
inline constexpr bool uses_clean_teacher_logits = [] {
  if constexpr (detail::DeclaresCleanTeacherLogits<A>) {
    return static_cast<bool>(A::uses_clean_teacher_logits);
  } else {
    return false;
  }
}();

}  // namespace ardent
