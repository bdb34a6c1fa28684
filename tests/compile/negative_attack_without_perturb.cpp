// An attack policy whose member is misnamed (attack instead of perturb): the Distiller and the
// AdversarialTrainer name what is missing.
// clang-format off
// expect: ardent::Distiller: the attack policy is not an ardent::Attack for this student: it needs a member perturb(student, x, labels) returning torch::Tensor
// expect: ardent::AdversarialTrainer: the attack policy is not an ardent::Attack for this model: it needs a member perturb(model, x, labels) returning torch::Tensor
// clang-format on
#include <ardent/distill/factories.hpp>
#include <ardent/models/small_cnn.hpp>

struct Misnamed {
  template <ardent::Model M>
  torch::Tensor attack(M& /*model*/, const torch::Tensor& x, const torch::Tensor& /*labels*/) const {
    return x;
  }
};

using Model = ardent::models::SmallCNN;

void ardent_compile_check() {
  ardent::Distiller<Model, Model, Misnamed> distiller(Model(), Model(), Misnamed{}, ardent::losses::KL(),
                                                      ardent::targets::Logits{});
  ardent::AdversarialTrainer<Model, Misnamed> trainer(Model(), Misnamed{});
}
