// RSLAD's recipe given to a Distiller whose adversary is the default (ARD's).
// clang-format off
// expect: ardent::Distiller: the recipe was written for another adversary than the Distiller's last template parameter
// clang-format on
#include <ardent/distill/distiller.hpp>
#include <ardent/distill/recipes/distiller.hpp>
#include <ardent/models/small_cnn.hpp>

using Model = ardent::models::SmallCNN;

void ardent_compile_check() {
  ardent::Distiller<Model, Model, ardent::attacks::PGD, ardent::losses::KL, ardent::targets::Logits> mismatched(
      Model(), Model(), ardent::attacks::PGD(0.1), ardent::losses::KL(), ardent::targets::Logits{},
      ardent::recipes::rslad());
}
