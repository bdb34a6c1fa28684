// CW takes labels only: TRADES' attack maximises KL(f(x) || f(x')), which CW cannot. The training
// method is the trainer's policy type, so this is a compile error at the AdversarialTrainer, not
// a run-time error at the first step.
// clang-format off
// expect: ardent::AdversarialTrainer: the attack cannot serve the training method
// clang-format on
#include <ardent/attacks/cw.hpp>
#include <ardent/distill/factories.hpp>
#include <ardent/models/small_cnn.hpp>

using Model = ardent::models::SmallCNN;

static_assert(!ardent::TrainingMethodFor<ardent::training_methods::TRADES, ardent::attacks::CW, Model>);
static_assert(ardent::TrainingMethodFor<ardent::training_methods::Madry, ardent::attacks::CW, Model>);

void ardent_compile_check() {
  ardent::AdversarialTrainer trades(Model(), ardent::attacks::CW(), ardent::recipes::trades(6.0));
}
