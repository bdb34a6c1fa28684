#pragma once
// OverfittingGuard: a train_loop (or ardent::train::fit) callback that catches catastrophic overfitting,
// the failure of single-step adversarial training in which, within an epoch, the model becomes
// robust to the single-step attack it trains on and loses all robustness to a multi-step one
// (Wong, Rice and Kolter, ICLR 2020, Sec. 5; de Jorge et al., NeurIPS 2022). Wong et al. detect it
// by the PGD accuracy of a training batch collapsing; here, after every epoch, on a fixed held-out
// batch:
//   p = accuracy under PGD,   f = accuracy under the training attack,   p* = best p so far,
//   collapsed  <=>  p* - p > max_drop  and  f - p > min_gap.
// A collapse either stops the run and restores the weights of the last healthy epoch (roll_back,
// the default), so that the checkpoint and student written next are those, or only warns. The
// decision of the last epoch is in columns(), for the metrics file.

#include "ardent/core/check.hpp"
#include "ardent/train/fit.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ardent::train {

struct OverfittingGuardOptions {
  /// How far below its best the held-out PGD accuracy must fall (absolute, in [0, 1]) ...
  TORCH_ARG(double, max_drop) = 0.2;
  /// ... while the training attack's accuracy stays at least this far above it.
  TORCH_ARG(double, min_gap) = 0.2;
  /// Stop and restore the last healthy epoch's weights (false: print a warning and go on).
  TORCH_ARG(bool, roll_back) = true;
};

/// The two accuracies the guard compares, on the same held-out batch.
struct GuardReading {
  double pgd_accuracy = 0;
  double training_attack_accuracy = 0;
};

class OverfittingGuard {
 public:
  /// `measure` reads the two accuracies of the model now; `model` is what a roll-back restores.
  OverfittingGuard(std::function<GuardReading()> measure, std::shared_ptr<torch::nn::Module> model,
                   OverfittingGuardOptions options = {})
      : measure_(std::move(measure)), model_(std::move(model)), options_(options) {
    constexpr std::string_view name = "ardent::train::OverfittingGuard";
    TORCH_CHECK(measure_, name, ": argument 'measure' is empty, expected a function");
    TORCH_CHECK(model_ != nullptr, name, ": argument 'model' is null, expected the trained module");
    for (const auto& [option, value] : {std::pair{"max_drop", options_.max_drop()}, {"min_gap", options_.min_gap()}}) {
      if (!(value >= 0 && value <= 1)) fail_argument(name, option, fmt::format("is {}, expected in [0, 1]", value));
    }
  }

  template <typename Trainer>
  bool on_epoch_end(Trainer& /*trainer*/, int64_t epoch, const EpochSummary& /*summary*/) {
    const GuardReading r = measure_();
    last_ = r;
    collapsed_ = best_pgd_ >= 0 && best_pgd_ - r.pgd_accuracy > options_.max_drop() &&
                 r.training_attack_accuracy - r.pgd_accuracy > options_.min_gap();
    if (!collapsed_) {
      if (r.pgd_accuracy >= best_pgd_) {
        best_pgd_ = r.pgd_accuracy;
        snapshot();
      }
      return false;
    }
    fmt::print(stderr,
               "catastrophic overfitting after epoch {}: held-out PGD accuracy {:.1f}% (best {:.1f}%) while the "
               "training attack's is {:.1f}%{}\n",
               epoch + 1, 100 * r.pgd_accuracy, 100 * best_pgd_, 100 * r.training_attack_accuracy,
               options_.roll_back() ? "; stopping with the weights of the best epoch" : "");
    if (!options_.roll_back()) return false;
    restore();
    return true;
  }

  /// The last epoch's reading and decision: guard_pgd, guard_train_attack, guard_collapse (1 or 0).
  std::map<std::string, double> columns() const {
    return {{"guard_pgd", last_.pgd_accuracy},
            {"guard_train_attack", last_.training_attack_accuracy},
            {"guard_collapse", collapsed_ ? 1.0 : 0.0}};
  }
  static std::vector<std::string> column_names() { return {"guard_pgd", "guard_train_attack", "guard_collapse"}; }

 private:
  void snapshot() {
    torch::NoGradGuard no_grad;
    saved_.clear();
    for (const auto& p : model_->parameters()) saved_.push_back(p.detach().clone());
    for (const auto& b : model_->buffers()) saved_.push_back(b.detach().clone());
  }

  void restore() {
    torch::NoGradGuard no_grad;
    std::size_t i = 0;
    for (auto& p : model_->parameters()) p.copy_(saved_.at(i++));
    for (auto& b : model_->buffers()) b.copy_(saved_.at(i++));
  }

  std::function<GuardReading()> measure_;
  std::shared_ptr<torch::nn::Module> model_;
  OverfittingGuardOptions options_;
  double best_pgd_ = -1;
  GuardReading last_;
  bool collapsed_ = false;
  std::vector<torch::Tensor> saved_;
};

}  // namespace ardent::train
