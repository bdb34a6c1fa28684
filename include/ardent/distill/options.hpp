#pragma once
// What a Distiller step computes. With S the student, T the teacher, x' the attack's output,
// L the DistillLoss policy on the SoftTarget policy's views, the step minimises
//
//   adversarial_weight * L(S(x'), T(x_t))  +  clean_weight * L(S(x), T(x))  +  ce_weight * CE(S(x), y)
//
// where x_t is x or x' (teacher_input), and x' maximises attack_objective. Terms of weight 0 are
// not computed, and no attack runs when adversarial_weight is 0.

#include "ardent/core/check.hpp"

#include <optional>

namespace ardent {

/// What the attack maximises when it makes x'.
enum class AttackObjective {
  StudentCrossEntropy,     // CE(S(x'), y): ARD (Goldblum et al. 2020)
  KLToCleanTeacher,        // KL(T(x) || S(x')): RSLAD (Zi et al. 2021)
  KLToAdversarialTeacher,  // KL(T(x') || S(x')), gradient through both: AdaAD (Huang et al. 2023)
};

/// The input the teacher sees in the adversarial term.
enum class TeacherInput { Clean, Adversarial };

/// The student's mode while the attack runs. Eval is the default; the official ARD code attacks in
/// train mode (BatchNorm uses, and updates, batch statistics).
enum class AttackMode { Eval, Train };

struct DistillerOptions {
  TORCH_ARG(AttackObjective, attack_objective) = AttackObjective::StudentCrossEntropy;
  TORCH_ARG(TeacherInput, teacher_input) = TeacherInput::Clean;
  TORCH_ARG(double, adversarial_weight) = 1.0;
  TORCH_ARG(double, clean_weight) = 0.0;
  TORCH_ARG(double, ce_weight) = 0.0;
  TORCH_ARG(AttackMode, attack_mode) = AttackMode::Eval;
};

inline void check_options(const DistillerOptions& o) {
  constexpr std::string_view name = "ardent::DistillerOptions";
  check_non_negative(name, "adversarial_weight", o.adversarial_weight());
  check_non_negative(name, "clean_weight", o.clean_weight());
  check_non_negative(name, "ce_weight", o.ce_weight());
  if (o.adversarial_weight() + o.clean_weight() + o.ce_weight() == 0) {
    fail_argument(name, "adversarial_weight/clean_weight/ce_weight", "are all 0, expected at least one term");
  }
}

/// The loss of one step and its terms (each already multiplied by its weight; empty when not computed).
struct StepResult {
  double loss = 0;
  std::optional<double> adversarial_distill;
  std::optional<double> clean_distill;
  std::optional<double> cross_entropy;
  int64_t batch_size = 0;
};

}  // namespace ardent
