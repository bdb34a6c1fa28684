#pragma once
// What compile.attacks instantiates for each built-in attack: a Distiller with every recipe the attack
// can serve (ARD and KD always; RSLAD and AdaAD when it maximises objectives) and an
// AdversarialTrainer (Madry always; TRADES when it maximises objectives), each with step() and fit().

#include <ardent/attacks/apgd.hpp>
#include <ardent/attacks/bim.hpp>
#include <ardent/attacks/cw.hpp>
#include <ardent/attacks/cw_linf.hpp>
#include <ardent/attacks/fab.hpp>
#include <ardent/attacks/fgsm.hpp>
#include <ardent/attacks/mifgsm.hpp>
#include <ardent/attacks/nfgsm.hpp>
#include <ardent/attacks/square.hpp>
#include <ardent/attacks/warm_start.hpp>
#include <ardent/distill/factories.hpp>
#include <ardent/models/small_cnn.hpp>

#include <utility>
#include <vector>

namespace ardent_compile {

using Model = ardent::models::SmallCNN;

template <typename Trainer>
void train(Trainer trainer) {
  torch::optim::SGD optimizer(trainer.parameters(), 0.1);
  const auto x = torch::rand({2, 1, 28, 28});
  const auto y = torch::zeros({2}, torch::kLong);
  (void)trainer.step(x, y, optimizer, torch::arange(2));
  std::vector<ardent::Batch> loader(1, {x, y, torch::arange(2)});
  (void)trainer.fit(loader, optimizer, 1);
}

template <typename A>
void instantiate(A attack) {
  static_assert(ardent::Attack<A, Model>);
  const auto kl = ardent::losses::KL(ardent::losses::KLOptions().temperature(4.0));
  train(ardent::Distiller(Model(), Model(), attack, kl, ardent::targets::Logits{}, ardent::recipes::ard(0.9)));
  train(ardent::Distiller(Model(), Model(), attack, kl, ardent::targets::Logits{}, ardent::recipes::kd()));
  if constexpr (ardent::AdversaryFor<ardent::adversaries::KLToCleanTeacher, A, Model, Model>) {
    train(ardent::Distiller(Model(), Model(), attack, kl, ardent::targets::Logits{}, ardent::recipes::rslad()));
    train(ardent::Distiller(Model(), Model(), attack, kl, ardent::targets::Logits{}, ardent::recipes::adaad()));
  }
  train(ardent::AdversarialTrainer<Model, A>(Model(), attack, ardent::recipes::madry()));
  if constexpr (ardent::TrainingMethodFor<ardent::training_methods::TRADES, A, Model>) {
    train(ardent::AdversarialTrainer(Model(), attack, ardent::recipes::trades()));
  }
}

}  // namespace ardent_compile
