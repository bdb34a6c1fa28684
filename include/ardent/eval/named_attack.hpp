#pragma once
// The elements of an evaluation's attack list, for any attack, a user's included, with no list of
// attack types anywhere in eval:
//
//   describe(attack)   the attack's settings as JSON, for the report only: its own
//                      `to_json(json&, const A&)`, found by argument-dependent lookup next to the
//                      attack (every built-in has one), or {}
//   capabilities       what evaluate's checks need (pixel box, gradient-free, target classes),
//                      read from the attack's type when it is wrapped (ardent::capabilities_of)
//   AnyAttack          any attack, independent of the model type (what a preset holds)
//   Preset             a name and an AnyAttack: what the presets return
//   NamedAttack<M>     any attack for models of type M, with a name and its settings
//
// An AnyAttack calls `perturb` on one of two model types, whatever the caller's model is: a
// TorchScript module as it is, and every C++ frontend model (a ModuleHolder or shared_ptr of a
// module) through eval::detail::Forwarding, a module that holds the model as its only submodule
// and forwards to it. So an attack in a preset needs a `perturb` that is a template over
// ardent::Model (every built-in has one), and is instantiated twice, not once per model type.

#include "ardent/core/attack.hpp"
#include "ardent/core/model.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <typeinfo>

namespace ardent::eval {

/// The settings of an attack as its report records them: `nlohmann::json(attack)`, which finds the
/// attack's `to_json(nlohmann::json&, const A&)` by argument-dependent lookup; an empty object for
/// an attack without one.
template <typename A>
nlohmann::json describe(const A& attack) {
  if constexpr (std::is_constructible_v<nlohmann::json, const A&>) {
    return nlohmann::json(attack);
  } else {
    return nlohmann::json::object();
  }
}

namespace detail {

/// A C++ frontend model behind one type: its only submodule is the model, and forward runs it.
/// Parameters, devices and training flags are the model's (the wrapper takes the model's flag,
/// and ModeGuard restores each submodule's own flag in pre-order).
class ForwardingImpl : public torch::nn::Module {
 public:
  template <ModuleWithTensorForward M>
  explicit ForwardingImpl(M& model)
      : forward_([inner = module_pointer(model)](const torch::Tensor& x) { return torch::Tensor(inner->forward(x)); }) {
    const auto inner = module_pointer(model);
    train(inner->is_training());
    register_module("model", inner);
  }

  torch::Tensor forward(const torch::Tensor& x) { return forward_(x); }

 private:
  std::function<torch::Tensor(const torch::Tensor&)> forward_;
};
using Forwarding = std::shared_ptr<ForwardingImpl>;

}  // namespace detail

/// An attack a preset can hold: it can run on TorchScript models or on C++ frontend models.
template <typename A>
concept PresetAttack = Attack<A, torch::jit::Module> || Attack<A, detail::Forwarding>;

/// Any attack, independent of the model type, with its settings. Copies share the attack.
class AnyAttack {
 public:
  /// `attack` with its own settings (describe(attack)).
  template <typename A>
  requires(!std::same_as<std::remove_cvref_t<A>, AnyAttack> && PresetAttack<A>)
      /* implicit */ AnyAttack(A attack)  // NOLINT(google-explicit-constructor)
      : AnyAttack(attack, describe(attack)) {}

  /// `attack` with the given settings.
  template <typename A>
  requires(!std::same_as<std::remove_cvref_t<A>, AnyAttack> && PresetAttack<A>)
      AnyAttack(A attack, nlohmann::json settings)
      : capabilities_(capabilities_of(attack)),
        holder_(std::make_shared<Holder<A>>(std::move(attack))),
        settings_(std::move(settings)) {}

  const nlohmann::json& settings() const { return settings_; }
  const AttackCapabilities& capabilities() const { return capabilities_; }

  /// The attack held, when it is of type A (as std::function::target); nullptr otherwise.
  template <typename A>
  const A* target() const {
    const auto* holder = dynamic_cast<const Holder<A>*>(holder_.get());
    return holder ? &holder->attack : nullptr;
  }

  template <Model M>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const torch::Tensor& labels) const {
    if constexpr (ScriptModule<M>) {
      return holder_->perturb_script(model, x, labels);
    } else {
      auto forwarding = std::make_shared<detail::ForwardingImpl>(model);
      return holder_->perturb_module(forwarding, x, labels);
    }
  }

  friend void to_json(nlohmann::json& j, const AnyAttack& attack) { j = attack.settings_; }

 private:
  struct Base {
    Base() = default;
    Base(const Base&) = delete;
    Base& operator=(const Base&) = delete;
    Base(Base&&) = delete;
    Base& operator=(Base&&) = delete;
    virtual ~Base() = default;
    virtual torch::Tensor perturb_script(torch::jit::Module& model, const torch::Tensor& x,
                                         const torch::Tensor& labels) = 0;
    virtual torch::Tensor perturb_module(detail::Forwarding& model, const torch::Tensor& x,
                                         const torch::Tensor& labels) = 0;
  };

  template <typename A>
  struct Holder final : Base {
    explicit Holder(A a) : attack(std::move(a)) {}
    torch::Tensor perturb_script(torch::jit::Module& model, const torch::Tensor& x,
                                 const torch::Tensor& labels) override {
      if constexpr (Attack<A, torch::jit::Module>) {
        return attack.perturb(model, x, labels);
      } else {
        throw std::invalid_argument(
            fmt::format("ardent::eval::AnyAttack: the attack ({}) cannot run on a "
                        "TorchScript model; evaluate it with NamedAttack<torch::jit::Module>",
                        typeid(A).name()));
      }
    }
    torch::Tensor perturb_module(detail::Forwarding& model, const torch::Tensor& x,
                                 const torch::Tensor& labels) override {
      if constexpr (Attack<A, detail::Forwarding>) {
        return attack.perturb(model, x, labels);
      } else {
        throw std::invalid_argument(
            fmt::format("ardent::eval::AnyAttack: the attack ({}) cannot run on a C++ "
                        "frontend model; evaluate it with NamedAttack<YourModel>",
                        typeid(A).name()));
      }
    }
    A attack;
  };

  AttackCapabilities capabilities_;
  std::shared_ptr<Base> holder_;
  nlohmann::json settings_;
};

/// An attack with its name, independent of the model type (what the presets return). `attack`
/// holds any attack whose perturb is a template over ardent::Model, a user's too:
/// `Preset{"mine", MyAttack{0.1}}`, `preset.attack.target<attacks::APGD>()`.
struct Preset {
  std::string name;
  AnyAttack attack;
};

/// Any attack for models of type M, with a name and its settings: the element of an
/// evaluation's attack list. The settings are the attack's own (describe) unless given.
template <Model M>
class NamedAttack {
 public:
  template <typename A>
  requires Attack<A, M> NamedAttack(std::string name, A attack, nlohmann::json settings)
      : name_(std::move(name)),
        settings_(std::move(settings)),
        capabilities_(capabilities_of(attack)),
        perturb_([attack = std::move(attack)](M& model, const torch::Tensor& x, const torch::Tensor& y) mutable {
          return attack.perturb(model, x, y);
        }) {}

  template <typename A>
  requires Attack<A, M> NamedAttack(std::string name, A attack)
      : NamedAttack(std::move(name), attack, describe(attack)) {}

  /* implicit */ NamedAttack(const Preset& preset)  // NOLINT(google-explicit-constructor)
      : NamedAttack(preset.name, preset.attack, preset.attack.settings()) {}

  const std::string& name() const { return name_; }
  const nlohmann::json& settings() const { return settings_; }
  const AttackCapabilities& capabilities() const { return capabilities_; }
  torch::Tensor perturb(M& model, const torch::Tensor& x, const torch::Tensor& y) const {
    return perturb_(model, x, y);
  }

 private:
  std::string name_;
  nlohmann::json settings_;
  AttackCapabilities capabilities_;
  std::function<torch::Tensor(M&, const torch::Tensor&, const torch::Tensor&)> perturb_;
};

}  // namespace ardent::eval
