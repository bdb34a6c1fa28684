#pragma once
// eval::deployed(eps): the robustness of a deployed (int8) network, measured without its gradients,
// which are zero almost everywhere - a gradient attack on it measures gradient masking:
//   1. transfer APGD-CE and 2. transfer APGD-T (Croce and Hein 2020), crafted on a source model with
//      useful gradients - by default the int8 network's float twin, the same arithmetic in floating
//      point with fake quantization and straight-through gradients (Int8Model::reference_forward);
//      or a source the caller gives (the float student);
//   3. Square (Andriushchenko et al. 2020), gradient-free, on the int8 network itself;
// and the worst case over them (ardent::evaluate's chain). The report is marked as not white-box.

#include "ardent/attacks/square.hpp"
#include "ardent/deploy/int8_model.hpp"
#include "ardent/eval/autoattack.hpp"
#include "ardent/eval/presets.hpp"
#include "ardent/eval/transfer.hpp"

#include <fmt/format.h>
#include <torch/torch.h>

#include <vector>

namespace ardent::eval {
namespace detail {

/// The Int8Model an evaluation runs: the module itself, or the one a Forwarding wrapper holds.
inline std::shared_ptr<deploy::Int8ModelImpl> int8_model_in(torch::nn::Module* evaluated) {
  if (evaluated != nullptr) {
    if (auto* self = evaluated->as<deploy::Int8ModelImpl>()) {
      return std::dynamic_pointer_cast<deploy::Int8ModelImpl>(self->shared_from_this());
    }
    for (const auto& child : evaluated->children()) {
      if (auto q = std::dynamic_pointer_cast<deploy::Int8ModelImpl>(child)) return q;
    }
  }
  TORCH_CHECK(false,
              "ardent::eval::deployed: the evaluated model is not an ardent::deploy::Int8Model, so it has no float "
              "twin to transfer from; give the source model: eval::deployed(eps, source)");
}

/// The int8 network's float twin (fake quantization, straight-through gradients) as a module.
class FloatTwinImpl : public torch::nn::Module {
 public:
  explicit FloatTwinImpl(std::shared_ptr<deploy::Int8ModelImpl> model) : model_(std::move(model)) {}
  torch::Tensor forward(const torch::Tensor& x) { return model_->reference_forward(x); }

 private:
  std::shared_ptr<deploy::Int8ModelImpl> model_;
};
TORCH_MODULE(FloatTwin);

inline std::vector<Preset> deployed_list(double epsilon, int64_t square_queries, int64_t apgd_steps,
                                         const std::function<Preset(const Preset&)>& transfer_of) {
  TORCH_CHECK(epsilon > 0, "ardent::eval::deployed: argument 'epsilon' is ", epsilon, ", expected > 0");
  return {transfer_of(apgd_ce(epsilon, apgd_steps)), transfer_of(apgd_t(epsilon, apgd_steps)),
          square(epsilon, square_queries)};
}

}  // namespace detail

/// Transfer APGD-CE and APGD-T from the int8 network's float twin, then Square on the int8 network.
inline std::vector<Preset> deployed(double epsilon, int64_t square_queries = 5000, int64_t apgd_steps = 100) {
  return detail::deployed_list(epsilon, square_queries, apgd_steps, [](const Preset& p) {
    return Preset{
        "transfer " + p.name + " from the float twin",
        Transfer::derived(
            [](torch::nn::Module* evaluated, const AnyAttack& a, const torch::Tensor& x, const torch::Tensor& y) {
              detail::FloatTwin twin(detail::int8_model_in(evaluated));
              return a.perturb(twin, x, y);
            },
            p.attack, "float twin (fake-quantized)")};
  });
}

/// The same with a source model of the caller's (the float student, a quantization-aware model).
template <Model Source>
std::vector<Preset> deployed(double epsilon, Source source, const std::string& source_name = "source model",
                             int64_t square_queries = 5000, int64_t apgd_steps = 100) {
  return detail::deployed_list(epsilon, square_queries, apgd_steps,
                               [&](const Preset& p) { return transfer(source, p, source_name); });
}

}  // namespace ardent::eval
