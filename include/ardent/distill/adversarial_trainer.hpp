#pragma once
// Adversarial training of a (teacher) model, the baselines of the ARD paper:
//
//   Madry et al., ICLR 2018:  min E[ CE(f(x'), y) ],  x' = argmax_{B(x, eps)} CE(f(x'), y)
//   TRADES (Zhang et al., ICML 2019):
//                             min E[ CE(f(x), y) + beta * KL(f(x) || f(x')) ],
//                             x' = argmax_{B(x, eps)} KL(f(x) || f(x')), started at x + 0.001 N(0, 1)
//
// (for TRADES, build the attack with PGDOptions(eps).random_start(false).start_noise(0.001), as
// make_trades_trainer does). The attack runs with the model in eval mode, the loss in train mode.

#include "ardent/core/attack.hpp"
#include "ardent/core/divergence.hpp"
#include "ardent/core/mode_guard.hpp"
#include "ardent/distill/fit.hpp"
#include "ardent/distill/options.hpp"

namespace ardent {

enum class AdversarialTraining { Madry, TRADES };

struct AdversarialTrainerOptions {
  TORCH_ARG(AdversarialTraining, method) = AdversarialTraining::Madry;
  /// TRADES' trade-off between accuracy and robustness.
  TORCH_ARG(double, beta) = 6.0;
};

namespace recipes {
inline AdversarialTrainerOptions madry() { return AdversarialTrainerOptions().method(AdversarialTraining::Madry); }
inline AdversarialTrainerOptions trades(double beta = 6.0) {
  check_non_negative("ardent::recipes::trades", "beta", beta);
  return AdversarialTrainerOptions().method(AdversarialTraining::TRADES).beta(beta);
}
}  // namespace recipes

template <Model M, typename AttackPolicy>
class AdversarialTrainer {
  static_assert(Attack<AttackPolicy, M>,
                "ardent::AdversarialTrainer: the attack policy is not an ardent::Attack for this model: it needs a "
                "member perturb(model, x, labels) returning torch::Tensor");

 public:
  AdversarialTrainer(M model, AttackPolicy attack, AdversarialTrainerOptions options = recipes::madry())
      : model_(std::move(model)), attack_(std::move(attack)), options_(options) {
    check_non_negative("ardent::AdversarialTrainer", "beta", options_.beta());
  }

  /// The step for a batch whose examples have the data-set indices `indices` (int64 [B]): an attack
  /// that keeps per-example state (attacks::WarmStart) is told them first. ardent::fit calls this
  /// overload with the indices data::ShuffledBatches gives.
  StepResult step(const torch::Tensor& x, const torch::Tensor& y, torch::optim::Optimizer& optimizer,
                  const torch::Tensor& indices) {
    if constexpr (requires { attack_.for_examples(indices); }) {
      if (indices.defined()) attack_.for_examples(indices);
    }
    return step(x, y, optimizer);
  }

  StepResult step(const torch::Tensor& x, const torch::Tensor& y, torch::optim::Optimizer& optimizer) {
    constexpr std::string_view name = "ardent::AdversarialTrainer::step";
    double clip_min = -std::numeric_limits<double>::infinity();
    double clip_max = std::numeric_limits<double>::infinity();
    if constexpr (requires {
                    attack_.options().clip_min();
                    attack_.options().clip_max();
                  }) {
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
    torch::Tensor loss;
    if (options_.method() == AdversarialTraining::Madry) {
      const auto x_adv = attack_.perturb(model_, x, y);
      loss = torch::nn::functional::cross_entropy(forward(model_, x_adv), y);
      result.cross_entropy = loss.template item<double>();
    } else {
      torch::Tensor clean_logits;
      {
        torch::NoGradGuard no_grad;
        const ModeGuard eval(model_);
        clean_logits = forward(model_, x);
      }
      torch::Tensor x_adv;
      if constexpr (requires { attack_.perturb(model_, x, objectives::KLDivergence{clean_logits}); }) {
        x_adv = attack_.perturb(model_, x, objectives::KLDivergence{clean_logits});
      } else {
        fail_argument("ardent::AdversarialTrainer", "attack",
                      "accepts labels only, expected an attack that maximises an objective, which TRADES needs");
      }
      const auto logits = forward(model_, x);
      const auto ce = torch::nn::functional::cross_entropy(logits, y);
      const auto kl =
          kl_divergence(torch::log_softmax(logits, 1), torch::log_softmax(forward(model_, x_adv), 1)).mean();
      loss = ce + options_.beta() * kl;
      result.cross_entropy = ce.template item<double>();
      result.adversarial_distill = options_.beta() * kl.template item<double>();
    }
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
  FitSummary fit(Loader& loader, torch::optim::Optimizer& optimizer, EpochCount epochs, Callbacks&&... callbacks) {
    return ardent::fit(*this, loader, optimizer, epochs, std::forward<Callbacks>(callbacks)...);
  }

  std::vector<torch::Tensor> parameters() { return ardent::parameters(model_); }
  void train(bool on = true) { train_module(model_, on); }
  void eval() { train(false); }
  M& model() { return model_; }
  const AdversarialTrainerOptions& options() const { return options_; }

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
  AdversarialTrainerOptions options_;
  int64_t num_classes_ = 0;
};

}  // namespace ardent
