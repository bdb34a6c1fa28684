// CW takes labels only: RSLAD's adversary (KL to the clean teacher) cannot use it. CW's
// constrained perturb makes this a compile error at the Distiller, not in CW's body.
// clang-format off
// expect: ardent::Distiller: the attack cannot serve the recipe's adversary
// clang-format on
#include <ardent/attacks/cw.hpp>
#include <ardent/distill/factories.hpp>
#include <ardent/models/small_cnn.hpp>

using Model = ardent::models::SmallCNN;

static_assert(!requires(const ardent::attacks::CW& cw, Model& m, const torch::Tensor& x) {
  cw.perturb(m, x, ardent::objectives::KLDivergence{x});
});

void ardent_compile_check() {
  ardent::Distiller rslad(Model(), Model(), ardent::attacks::CW(), ardent::losses::KL(), ardent::targets::Logits{},
                          ardent::recipes::rslad());
}
