#pragma once
// Recipes: the options that make a Distiller one method of the family. Each returns a
// Recipe<Adversary>: the loss terms' weights, what the teacher sees and the student's mode during
// the attack, with the adversary (how x' is made) as the type. The temperature belongs to the loss
// policy and the budget to the attack policy; the factories in ardent/distill/factories.hpp build
// all of them with each paper's defaults. A new recipe is a function (or a type) like these,
// with its own adversary if it needs one: no edit of the library.

#include "ardent/distill/adversaries/kl_to_adversarial_teacher.hpp"
#include "ardent/distill/adversaries/kl_to_clean_teacher.hpp"
#include "ardent/distill/adversaries/student_cross_entropy.hpp"
#include "ardent/distill/options.hpp"

namespace ardent::recipes {

namespace detail {
inline void check_alpha(std::string_view recipe, double alpha) {
  if (!(alpha >= 0.0 && alpha <= 1.0)) {
    fail_argument(recipe, "alpha", fmt::format("is {}, expected a value in [0, 1]", alpha));
  }
}
}  // namespace detail

/// ARD (Goldblum et al., "Adversarially Robust Distillation", AAAI 2020):
///   x' = argmax_{x' in B(x, eps)} CE(S(x'), y),
///   loss = alpha * T^2 KL(T(x) || S(x')) + (1 - alpha) * CE(S(x), y).
inline Recipe<adversaries::StudentCrossEntropy> ard(double alpha = 1.0) {
  detail::check_alpha("ardent::recipes::ard", alpha);
  return Recipe<adversaries::StudentCrossEntropy>()
      .teacher_input(TeacherInput::Clean)
      .adversarial_weight(alpha)
      .clean_weight(0.0)
      .ce_weight(1.0 - alpha)
      .attack_mode(AttackMode::Eval);
}

/// ARD as its official code runs it: the attack in train mode. Pair it with
/// losses::KLOptions().reduction(KLReduction::ElementMean) (make_ard_official does) and an attack
/// built with eval_mode(false).
inline Recipe<adversaries::StudentCrossEntropy> ard_official(double alpha = 1.0) {
  detail::check_alpha("ardent::recipes::ard_official", alpha);
  return ard(alpha).attack_mode(AttackMode::Train);
}

/// RSLAD (Zi et al., "Revisiting Adversarial Robustness Distillation: Robust Soft Labels Make
/// Student Better", ICCV 2021): x' = argmax KL(T(x) || S(x')) from x + 0.001 N(0, 1),
///   loss = 5/6 KL(T(x) || S(x')) + 1/6 KL(T(x) || S(x)),   T = 1, no label term.
inline Recipe<adversaries::KLToCleanTeacher> rslad() {
  return Recipe<adversaries::KLToCleanTeacher>()
      .teacher_input(TeacherInput::Clean)
      .adversarial_weight(5.0 / 6.0)
      .clean_weight(1.0 / 6.0)
      .ce_weight(0.0);
}

/// AdaAD (Huang et al., "Boosting Accuracy and Robustness of Student Models via Adaptive
/// Adversarial Distillation", CVPR 2023): x' = argmax KL(T(x') || S(x')), the teacher sees x',
///   loss = KL(T(x') || S(x')).
inline Recipe<adversaries::KLToAdversarialTeacher> adaad() {
  return Recipe<adversaries::KLToAdversarialTeacher>()
      .teacher_input(TeacherInput::Adversarial)
      .adversarial_weight(1.0)
      .clean_weight(0.0)
      .ce_weight(0.0);
}

/// Knowledge distillation (Hinton, Vinyals and Dean 2015), no attack:
///   loss = alpha * T^2 KL(T(x) || S(x)) + (1 - alpha) * CE(S(x), y).
inline Recipe<adversaries::StudentCrossEntropy> kd(double alpha = 0.9) {
  detail::check_alpha("ardent::recipes::kd", alpha);
  return Recipe<adversaries::StudentCrossEntropy>().adversarial_weight(0.0).clean_weight(alpha).ce_weight(1.0 - alpha);
}

}  // namespace ardent::recipes
