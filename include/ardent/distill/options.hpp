#pragma once
// What a Distiller step computes. With S the student, T the teacher, x' the attack's output,
// L the DistillLoss policy on the SoftTarget policy's views, the step minimises
//
//   adversarial_weight * L(S(x'), T(x_t))  +  clean_weight * L(S(x), T(x))  +  ce_weight * CE(S(x), y)
//
// where x_t is x or x' (teacher_input), and x' is made by the Distiller's adversary (a policy type,
// ardent/distill/adversary.hpp). Terms of weight 0 are not computed, and no attack runs when
// adversarial_weight is 0. A recipe (ardent/distill/recipes/distiller.hpp) is a Recipe<Adversary>:
// these options together with the adversary they were written for.

#include "ardent/core/check.hpp"
#include "ardent/train/fit.hpp"

namespace ardent {

/// The input the teacher sees in the adversarial term.
enum class TeacherInput { Clean, Adversarial };

/// The student's mode while the attack runs. Eval is the default; the official ARD code attacks in
/// train mode (BatchNorm uses, and updates, batch statistics).
enum class AttackMode { Eval, Train };

struct DistillerOptions {
  TORCH_ARG(TeacherInput, teacher_input) = TeacherInput::Clean;
  TORCH_ARG(double, adversarial_weight) = 1.0;
  TORCH_ARG(double, clean_weight) = 0.0;
  TORCH_ARG(double, ce_weight) = 0.0;
  TORCH_ARG(AttackMode, attack_mode) = AttackMode::Eval;
};

/// Options together with the adversary they belong to: what the recipes return. It is a
/// DistillerOptions, and its setters keep the type, so `recipes::rslad().clean_weight(0.2)` is
/// still RSLAD's adversary; a Distiller built from it takes that adversary as its type (CTAD), and
/// one whose adversary differs refuses it at compile time.
template <typename AdversaryPolicy>
struct Recipe : DistillerOptions {
  using Adversary = AdversaryPolicy;
  Recipe() = default;
  explicit Recipe(const DistillerOptions& options) : DistillerOptions(options) {}

#define ARDENT_RECIPE_SETTER(T, name)         \
  using DistillerOptions::name;               \
  Recipe& name(const T& value) {              \
    DistillerOptions::name(value);            \
    return *this;                             \
  }                                           \
  Recipe& name(T&& value) {                   \
    DistillerOptions::name(std::move(value)); \
    return *this;                             \
  }
  ARDENT_RECIPE_SETTER(TeacherInput, teacher_input)
  ARDENT_RECIPE_SETTER(double, adversarial_weight)
  ARDENT_RECIPE_SETTER(double, clean_weight)
  ARDENT_RECIPE_SETTER(double, ce_weight)
  ARDENT_RECIPE_SETTER(AttackMode, attack_mode)
#undef ARDENT_RECIPE_SETTER
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

/// What step() returns; defined with the loop that consumes it (ardent/train/fit.hpp).
using train::StepResult;

}  // namespace ardent
