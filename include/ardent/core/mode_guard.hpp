#pragma once
// ModeGuard: sets a model's mode for a scope (eval for an attack, by default) and restores every
// submodule's own training flag afterwards. A global `train()` would be wrong for models that mix
// modes, such as a network whose BatchNorm layers were frozen with `eval()` inside a training run.

#include "ardent/core/model.hpp"

#include <vector>

namespace ardent {

/// Sets the training flag of a model and all its submodules.
template <Model M>
void train_module(M& model, bool on) {
  if constexpr (ScriptModule<M>) {
    model.train(on);
  } else {
    model->train(on);
  }
}

class ModeGuard {
 public:
  /// Puts `model` in eval mode (eval = true) or leaves every flag as it is (eval = false); the
  /// destructor restores each submodule's flag in both cases.
  template <Model M>
  explicit ModeGuard(M& model, bool eval = true) {
    if constexpr (ScriptModule<M>) {
      script_ = model;
      for (const auto& module : model.modules()) flags_.push_back(module.is_training());
      if (eval) model.eval();
    } else {
      module_ = module_pointer(model);
      module_->apply([this](torch::nn::Module& m) { flags_.push_back(m.is_training()); });
      if (eval) module_->eval();
    }
  }

  ModeGuard(const ModeGuard&) = delete;
  ModeGuard& operator=(const ModeGuard&) = delete;
  ModeGuard(ModeGuard&&) = delete;
  ModeGuard& operator=(ModeGuard&&) = delete;

  // Both module kinds set their flags recursively, and both enumerate submodules in pre-order, so
  // setting each one in that order leaves every submodule with exactly its own recorded flag.
  ~ModeGuard() {
    std::size_t index = 0;
    if (script_) {
      for (auto module : script_->modules()) module.train(flags_[index++]);
    } else {
      module_->apply([this, &index](torch::nn::Module& m) { m.train(flags_[index++]); });
    }
  }

 private:
  std::shared_ptr<torch::nn::Module> module_;
  std::optional<torch::jit::Module> script_;
  std::vector<bool> flags_;
};

}  // namespace ardent
