#pragma once
// One-line distillers with each paper's defaults, and named aliases for the common compositions.
//
//   auto ard = ardent::make_ard(teacher, student);   // PGD-10 of 2/255 within 8/255, KL at T = 30, alpha 1

#include "ardent/attacks/none.hpp"
#include "ardent/attacks/pgd.hpp"
#include "ardent/distill/adversarial_trainer.hpp"
#include "ardent/distill/distiller.hpp"
#include "ardent/distill/recipes/adversarial_trainer.hpp"
#include "ardent/distill/recipes/distiller.hpp"
#include "ardent/losses/kl.hpp"
#include "ardent/targets/logits.hpp"

namespace ardent {

template <Model Teacher, Model Student>
using ARD = Distiller<Teacher, Student>;
template <Model Teacher, Model Student>
using RSLAD = Distiller<Teacher, Student, attacks::PGD, losses::KL, targets::Logits, adversaries::KLToCleanTeacher>;
template <Model Teacher, Model Student>
using AdaAD =
    Distiller<Teacher, Student, attacks::PGD, losses::KL, targets::Logits, adversaries::KLToAdversarialTeacher>;
template <Model Teacher, Model Student>
using KD = Distiller<Teacher, Student, attacks::None, losses::KL, targets::Logits>;
template <Model M>
using MadryTrainer = AdversarialTrainer<M, attacks::PGD, training_methods::Madry>;
template <Model M>
using TradesTrainer = AdversarialTrainer<M, attacks::PGD, training_methods::TRADES>;

/// ARD with the defaults of its code: PGD-10 (random start) against the labels, KL at T = 30
/// (with the default arguments, the same as `ARD<Teacher, Student> d(teacher, student)`).
template <Model Teacher, Model Student>
ARD<Teacher, Student> make_ard(Teacher teacher, Student student, double alpha = 1.0, double temperature = 30.0,
                               attacks::PGDOptions attack = paper_pgd()) {
  return {std::move(teacher),   std::move(student),
          attacks::PGD(attack), losses::KL(losses::KLOptions().temperature(temperature)),
          targets::Logits{},    recipes::ard(alpha)};
}

/// ARD exactly as its official code runs: train-mode attack and element-mean KL.
template <Model Teacher, Model Student>
ARD<Teacher, Student> make_ard_official(Teacher teacher, Student student, double alpha = 1.0, double temperature = 30.0,
                                        attacks::PGDOptions attack = paper_pgd()) {
  return {std::move(teacher),
          std::move(student),
          attacks::PGD(attack.eval_mode(false)),
          losses::KL(losses::KLOptions().temperature(temperature).reduction(losses::KLReduction::ElementMean)),
          targets::Logits{},
          recipes::ard_official(alpha)};
}

/// RSLAD: PGD-10 from x + 0.001 N(0, 1) maximising KL(T(x) || S(x')), KL at T = 1.
template <Model Teacher, Model Student>
RSLAD<Teacher, Student> make_rslad(Teacher teacher, Student student, attacks::PGDOptions attack = paper_pgd()) {
  return {std::move(teacher),
          std::move(student),
          attacks::PGD(attack.random_start(false).start_noise(0.001)),
          losses::KL(losses::KLOptions().temperature(1.0)),
          targets::Logits{},
          recipes::rslad()};
}

/// AdaAD: PGD-10 maximising KL(T(x') || S(x')), the teacher on x', KL at T = 1.
template <Model Teacher, Model Student>
AdaAD<Teacher, Student> make_adaad(Teacher teacher, Student student, attacks::PGDOptions attack = paper_pgd()) {
  return {std::move(teacher),   std::move(student),
          attacks::PGD(attack), losses::KL(losses::KLOptions().temperature(1.0)),
          targets::Logits{},    recipes::adaad()};
}

/// Hinton KD on clean inputs: KL at T = 4, alpha 0.9.
template <Model Teacher, Model Student>
KD<Teacher, Student> make_kd(Teacher teacher, Student student, double alpha = 0.9, double temperature = 4.0) {
  return {std::move(teacher), std::move(student),
          attacks::None(),    losses::KL(losses::KLOptions().temperature(temperature)),
          targets::Logits{},  recipes::kd(alpha)};
}

/// Madry adversarial training with PGD (by default the paper budget).
template <Model M>
MadryTrainer<M> make_madry_trainer(M model, attacks::PGDOptions attack = paper_pgd()) {
  return {std::move(model), attacks::PGD(attack), recipes::madry()};
}

/// TRADES with the attack started at x + 0.001 N(0, 1).
template <Model M>
TradesTrainer<M> make_trades_trainer(M model, double beta = 6.0, attacks::PGDOptions attack = paper_pgd()) {
  return {std::move(model), attacks::PGD(attack.random_start(false).start_noise(0.001)), recipes::trades(beta)};
}

}  // namespace ardent
