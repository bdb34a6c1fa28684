#pragma once
// Adversarial training of a (teacher) model, the baselines of the ARD paper:
//
//   AdversarialTrainer<Model, Attack, Method> trainer(model, attack, method);
//   StepResult r = trainer.step(x, y, optimizer);
//
// The method is a policy type (ardent/distill/training_methods/: Madry, the default, and
// TRADES), so MadryTrainer<M> and TradesTrainer<M> are distinct types and a method the attack
// cannot serve (TRADES with a labels-only attack such as CW) fails to compile. The attack runs
// with the model in eval mode, the loss in train mode.

#include "ardent/core/attack.hpp"
#include "ardent/core/mode_guard.hpp"
#include "ardent/distill/options.hpp"
#include "ardent/distill/training_method.hpp"
#include "ardent/distill/training_methods/madry.hpp"
#include "ardent/train/fit.hpp"

namespace ardent {

template <Model M, typename AttackPolicy, typename Method = training_methods::Madry>
class AdversarialTrainer {
  static_assert(Attack<AttackPolicy, M>,
                "ardent::AdversarialTrainer: the attack policy is not an ardent::Attack for this model: it needs a "
                "member perturb(model, x, labels) returning torch::Tensor");
  static_assert(TrainingMethodFor<Method, AttackPolicy, M>,
                "ardent::AdversarialTrainer: the attack cannot serve the training method: training_methods::TRADES "
                "(recipes::trades) needs an attack with a member perturb(model, x, objective) (PGD, APGD, FGSM, BIM, "
                "MIFGSM), not one that takes labels only (CW, CWLinf, FAB, Square); a user's method needs a member "
                "loss(attack, model, x, labels, result) returning torch::Tensor (see docs/distiller.md)");

 public:
  using TrainingMethod = Method;

  AdversarialTrainer(M model, AttackPolicy attack, Method method = {})
      : model_(std::move(model)), attack_(std::move(attack)), method_(std::move(method)) {}

  /// The step for a batch whose examples have the data-set indices `indices` (int64 [B]): an attack
  /// that keeps per-example state (attacks::WarmStart) is told them first. train::fit calls this
  /// overload with the indices data::ShuffledBatches gives.
  StepResult step(const torch::Tensor& x, const torch::Tensor& y, torch::optim::Optimizer& optimizer,
                  const torch::Tensor& indices) {
    detail::tell_examples(attack_, indices);
    return step(x, y, optimizer);
  }

  /// One training step on the batch (x, y); returns the loss and its terms.
  StepResult step(const torch::Tensor& x, const torch::Tensor& y, torch::optim::Optimizer& optimizer) {
    constexpr std::string_view name = "ardent::AdversarialTrainer::step";
    double clip_min = -std::numeric_limits<double>::infinity();
    double clip_max = std::numeric_limits<double>::infinity();
    if constexpr (HasPixelBox<AttackPolicy>) {
      clip_min = attack_.options().clip_min();
      clip_max = attack_.options().clip_max();
    }
    check_model_input(name, "model", model_, x);
    check_input_batch(name, "x", x, clip_min, clip_max);
    check_labels(name, "labels", y, x.size(0), num_classes(x));
    // The attack sees the same tensor and skips its own check of x.
    const CheckedInput checked(x, clip_min, clip_max);
    StepResult result;
    result.batch_size = x.size(0);
    const torch::Tensor loss = method_.loss(attack_, model_, x, y, result);
    result.loss = loss.template item<double>();
    if (!std::isfinite(result.loss)) {
      TORCH_CHECK(false, fmt::format("{}: the loss is {}, expected a finite value; the model's parameters are left "
                                     "unchanged (check the inputs and the learning rate)",
                                     name, result.loss));
    }
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    return result;
  }

  template <typename Loader, typename EpochCount, typename... Callbacks>
  train::FitSummary fit(Loader& loader, torch::optim::Optimizer& optimizer, EpochCount epochs,
                        Callbacks&&... callbacks) {
    return train::fit(*this, loader, optimizer, epochs, std::forward<Callbacks>(callbacks)...);
  }

  std::vector<torch::Tensor> parameters() { return ardent::parameters(model_); }
  void train(bool on = true) { train_module(model_, on); }
  void eval() { train(false); }
  M& model() { return model_; }
  const Method& method() const { return method_; }

 private:
  /// The class count, from one forward pass on the first sample of the first batch: the model
  /// must return logits [1, C] (errors name the user's batch shape).
  int64_t num_classes(const torch::Tensor& x) {
    if (num_classes_ == 0) {
      torch::NoGradGuard no_grad;
      const ModeGuard eval(model_);
      const auto probe = x.slice(0, 0, 1);
      const auto logits = forward(model_, probe);
      if (logits.dim() != 2 || logits.size(0) != 1 || logits.size(1) < 2 || !logits.is_floating_point()) {
        TORCH_CHECK(false,
                    fmt::format("ardent::AdversarialTrainer::step: the model returned shape {} for the first "
                                "sample of x (x has shape {}), expected floating-point logits [1, C] with C >= 2",
                                shape_string(logits), shape_string(x)));
      }
      num_classes_ = logits.size(1);
    }
    return num_classes_;
  }

  M model_;
  AttackPolicy attack_;
  Method method_;
  int64_t num_classes_ = 0;
};

}  // namespace ardent
