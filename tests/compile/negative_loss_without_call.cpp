// A loss policy with a named member instead of a call operator, and KL with feature maps.
// clang-format off
// expect: ardent::Distiller: the loss policy is not an ardent::DistillLoss: it needs a call operator loss(student_view, teacher_view) returning a scalar torch::Tensor
// expect: ardent::Distiller: the loss has no call operator for the views of this soft target. KL and CE compare class distributions and cannot be used with targets::Features: use ardent::losses::MSE
// clang-format on
#include <ardent/distill/distiller.hpp>
#include <ardent/models/small_cnn.hpp>
#include <ardent/targets/features.hpp>

struct NamedLoss {
  torch::Tensor loss(const torch::Tensor& s, const torch::Tensor& t) const { return (s - t).abs().mean(); }
};

using Model = ardent::models::SmallCNN;

void ardent_compile_check() {
  ardent::Distiller<Model, Model, ardent::attacks::PGD, NamedLoss> named(Model(), Model(), ardent::attacks::PGD(0.1),
                                                                         NamedLoss{}, ardent::targets::Logits{});
  ardent::Distiller<Model, Model, ardent::attacks::PGD, ardent::losses::KL, ardent::targets::Features> features(
      Model(), Model(), ardent::attacks::PGD(0.1), ardent::losses::KL(), ardent::targets::Features{});
}
