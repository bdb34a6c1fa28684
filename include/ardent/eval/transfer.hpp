#pragma once
// Transfer attacks (Papernot et al., "Transferability in Machine Learning", 2016): the adversarial
// images are crafted on a source model - one with useful gradients - and then fed to the evaluated
// model, whose own gradients are not used. This is how a network without useful gradients (an int8
// network, whose gradients are zero almost everywhere) meets a gradient attack at all; its number is
// an upper bound of white-box robustness, never the white-box number itself, and the report says so
// (EvalReport::white_box() is false when a list holds a transfer attack).
//
//   auto t = eval::transfer(float_student, eval::apgd_ce(0.1), "float student");
//   ardent::evaluate(int8_model, x, y, {t, eval::square(0.1, 5000)});

#include "ardent/core/model.hpp"
#include "ardent/eval/named_attack.hpp"

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>

namespace ardent::eval {

/// An attack that crafts its images on a source model. The source is either fixed (any
/// ardent::Model) or derived from the evaluated model at each call (`source_of`, given the evaluated
/// C++ frontend module).
class Transfer {
 public:
  using SourceOf = std::function<torch::Tensor(torch::nn::Module* evaluated, const AnyAttack& attack,
                                               const torch::Tensor& x, const torch::Tensor& labels)>;

  /// `attack` run on `source`; `source_name` goes into the report.
  template <Model Source>
  Transfer(Source source, AnyAttack attack, std::string source_name)
      : Transfer(
            Derived{},
            [source = std::make_shared<Source>(std::move(source))](torch::nn::Module*, const AnyAttack& a,
                                                                   const torch::Tensor& x, const torch::Tensor& y) {
              return a.perturb(*source, x, y);
            },
            std::move(attack), std::move(source_name)) {}

  /// `attack` run on the model `source_of` derives from the evaluated one.
  static Transfer derived(SourceOf source_of, AnyAttack attack, std::string source_name) {
    return Transfer(Derived{}, std::move(source_of), std::move(attack), std::move(source_name));
  }

  /// The attack's images on the source model; `model` (the evaluated one) is not differentiated.
  template <Model M>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const torch::Tensor& labels) const {
    torch::nn::Module* evaluated = nullptr;
    if constexpr (ModulePointer<M>) evaluated = module_pointer(model).get();
    return source_of_(evaluated, attack_, x, labels).detach();
  }

  friend void to_json(nlohmann::json& j, const Transfer& t) {
    j = t.attack_.settings();
    j["transfer_source"] = t.source_name_;
  }

 private:
  struct Derived {};
  Transfer(Derived, SourceOf source_of, AnyAttack attack, std::string source_name)
      : source_of_(std::move(source_of)), attack_(std::move(attack)), source_name_(std::move(source_name)) {}

  SourceOf source_of_;
  AnyAttack attack_;
  std::string source_name_;
};

/// `preset` as a transfer attack from `source`: "transfer <name> from <source_name>".
template <Model Source>
Preset transfer(Source source, const Preset& preset, const std::string& source_name) {
  return {"transfer " + preset.name + " from " + source_name, Transfer(std::move(source), preset.attack, source_name)};
}

/// Whether an attack's settings mark it as a transfer attack.
inline bool is_transfer(const nlohmann::json& settings) { return settings.contains("transfer_source"); }

}  // namespace ardent::eval
