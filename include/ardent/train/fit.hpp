#pragma once
// ardent::train::fit: epochs over a data loader for anything with step(x, y, optimizer) -> StepResult
// (the Distiller, the AdversarialTrainer), with callbacks in ensmallen's style. A callback is any
// object with some of these members, detected at compile time:
//
//   on_epoch_begin(trainer, epoch)
//   on_batch_end(trainer, batch, const StepResult&)
//   on_epoch_end(trainer, epoch, const EpochSummary&)
//
// each returning void or bool; returning true stops training (after the current batch or epoch).
// `epochs` is a count (epochs 0 .. n-1) or train::Epochs{first, end} to continue a resumed run at
// epoch `first` (the callbacks see the real epoch numbers).
// A loader yields batches as torch::data::Example<> (stacked), std::vector<Example<>> (torch's
// default), or std::pair<Tensor, Tensor>.

#include "ardent/core/batch.hpp"
#include "ardent/core/check.hpp"

#include <optional>
#include <tuple>
#include <utility>
#include <vector>

namespace ardent::train {

/// The loss of one step and its terms (each already multiplied by its weight; empty when not
/// computed). The Distiller's and the AdversarialTrainer's step return it as ardent::StepResult.
struct StepResult {
  double loss = 0;
  std::optional<double> adversarial_distill;
  std::optional<double> clean_distill;
  std::optional<double> cross_entropy;
  int64_t batch_size = 0;
};

struct EpochSummary {
  int64_t epoch = 0;
  int64_t batches = 0;
  int64_t samples = 0;
  double mean_loss = 0;  // weighted by batch size
};

/// The epochs [first, end) of a run: Epochs{3, 10} continues after three completed epochs.
struct Epochs {
  int64_t first = 0;
  int64_t end = 0;
};

struct FitSummary {
  int64_t epochs_completed = 0;
  bool stopped_early = false;
  std::vector<EpochSummary> epochs;
};

namespace detail {

/// Calls the hook if the callback has it; true when it asks to stop.
template <typename Hook>
bool stops(Hook&& hook) {
  if constexpr (!std::is_void_v<decltype(hook())>) {
    return static_cast<bool>(hook());
  } else {
    hook();
    return false;
  }
}

template <typename Trainer, typename Callback>
bool epoch_begin(Callback& c, Trainer& trainer, int64_t epoch) {
  if constexpr (requires { c.on_epoch_begin(trainer, epoch); }) {
    return stops([&] { return c.on_epoch_begin(trainer, epoch); });
  }
  return false;
}
template <typename Trainer, typename Callback>
bool batch_end(Callback& c, Trainer& trainer, int64_t batch, const StepResult& r) {
  if constexpr (requires { c.on_batch_end(trainer, batch, r); }) {
    return stops([&] { return c.on_batch_end(trainer, batch, r); });
  }
  return false;
}
template <typename Trainer, typename Callback>
bool epoch_end(Callback& c, Trainer& trainer, int64_t epoch, const EpochSummary& s) {
  if constexpr (requires { c.on_epoch_end(trainer, epoch, s); }) {
    return stops([&] { return c.on_epoch_end(trainer, epoch, s); });
  }
  return false;
}

}  // namespace detail

/// Trains `trainer` over `loader` for the epochs [first, end); every callback sees every event
/// (none is skipped when an earlier one asks to stop).
template <typename Trainer, typename Loader, typename... Callbacks>
FitSummary fit(Trainer& trainer, Loader& loader, torch::optim::Optimizer& optimizer, Epochs epochs,
               Callbacks&&... callbacks) {
  check_non_negative("ardent::train::fit", "epochs.first", static_cast<double>(epochs.first));
  if (epochs.end < epochs.first) {
    fail_argument("ardent::train::fit", "epochs",
                  fmt::format("is [{}, {}), expected first <= end", epochs.first, epochs.end));
  }
  FitSummary summary;
  auto all = [&](auto&& event) { return (false | ... | event(callbacks)); };
  trainer.train();
  for (int64_t epoch = epochs.first; epoch < epochs.end && !summary.stopped_early; ++epoch) {
    if (all([&](auto& c) { return detail::epoch_begin(c, trainer, epoch); })) {
      summary.stopped_early = true;
      break;
    }
    EpochSummary e{epoch, 0, 0, 0.0};
    double loss_sum = 0;
    for (auto&& batch : loader) {
      const auto [x, y, indices] = unpack_batch(batch);
      StepResult r;
      // A trainer that takes the examples' indices (for per-example attack state) gets them.
      if constexpr (requires { trainer.step(x, y, optimizer, indices); }) {
        r = trainer.step(x, y, optimizer, indices);
      } else {
        r = trainer.step(x, y, optimizer);
      }
      loss_sum += r.loss * static_cast<double>(r.batch_size);
      e.samples += r.batch_size;
      if (all([&](auto& c) { return detail::batch_end(c, trainer, e.batches, r); })) summary.stopped_early = true;
      ++e.batches;
      if (summary.stopped_early) break;
    }
    if (e.batches == 0) {
      fail_argument("ardent::train::fit", "loader",
                    fmt::format("gave no batch in epoch {}, expected at least one (an empty data set, or a loader "
                                "that drops a last partial batch larger than the data?)",
                                epoch));
    }
    e.mean_loss = loss_sum / static_cast<double>(e.samples);
    summary.epochs.push_back(e);
    if (!summary.stopped_early) ++summary.epochs_completed;
    if (all([&](auto& c) { return detail::epoch_end(c, trainer, epoch, e); })) summary.stopped_early = true;
  }
  return summary;
}

/// Trains `trainer` for `epochs` passes over `loader`, numbered 0 .. epochs - 1.
template <typename Trainer, typename Loader, typename... Callbacks>
FitSummary fit(Trainer& trainer, Loader& loader, torch::optim::Optimizer& optimizer, int64_t epochs,
               Callbacks&&... callbacks) {
  check_non_negative("ardent::train::fit", "epochs", static_cast<double>(epochs));
  return fit(trainer, loader, optimizer, Epochs{0, epochs}, std::forward<Callbacks>(callbacks)...);
}

}  // namespace ardent::train
