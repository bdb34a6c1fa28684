#pragma once
// The epoch loop of ardent's example programs: trains a Distiller or an AdversarialTrainer epoch by
// epoch over data::ShuffledBatches, evaluates after each epoch, appends the metrics to a CSV file,
// and writes a checkpoint every epoch. With `resume`, it restores the last checkpoint and continues:
// on the CPU, with the same seed, the result is bit-identical to an uninterrupted run.

#include "ardent/data/batches.hpp"
#include "ardent/distill/fit.hpp"
#include "ardent/train/checkpoint.hpp"
#include "ardent/train/metrics.hpp"
#include "ardent/train/progress.hpp"

#include <functional>

namespace ardent::train {

struct LoopOptions {
  int64_t epochs = 1;
  /// Checkpoint written after every epoch (empty: none).
  std::filesystem::path checkpoint;
  /// Continue from `checkpoint` if it exists.
  bool resume = false;
  /// Metrics CSV (empty: none).
  std::filesystem::path metrics_csv;
  /// Progress lines every this many batches when not on a terminal (0: no progress output).
  int64_t progress_every = 50;
  /// Called after each epoch; its values go to the CSV and the history (e.g. test accuracy).
  std::function<std::map<std::string, double>(int64_t epoch)> evaluate;
  /// The names of the values `evaluate` returns, in CSV column order.
  std::vector<std::string> evaluation_columns;
};

namespace detail {
/// Forwards only the batch-end hook of a callback.
template <typename Callback>
struct BatchEndOnly {
  Callback& callback;
  template <typename Trainer>
  void on_batch_end(Trainer& trainer, int64_t batch, const StepResult& r) {
    callback.on_batch_end(trainer, batch, r);
  }
};
}  // namespace detail

/// One entry per epoch: its number, mean training loss, seconds, and the evaluation's values.
using History = std::vector<std::map<std::string, double>>;

/// `callbacks`: user callbacks as for ardent::fit (ardent/distill/fit.hpp), seeing the real epoch
/// numbers. One that returns true from on_epoch_end stops the loop after that epoch's metrics and
/// checkpoint; from on_epoch_begin or on_batch_end, before the epoch is recorded.
template <typename Trainer, typename... Callbacks>
History train_loop(Trainer& trainer, data::ShuffledBatches& batches, torch::optim::Optimizer& optimizer,
                   std::map<std::string, std::shared_ptr<torch::nn::Module>> modules, const LoopOptions& options,
                   Callbacks&&... callbacks) {
  Checkpoint checkpoint{0, std::move(modules), &optimizer};
  int64_t first_epoch = 0;
  if (options.resume && !options.checkpoint.empty() && std::filesystem::exists(options.checkpoint)) {
    first_epoch = load_checkpoint(checkpoint, options.checkpoint);
    fmt::print(stderr, "resuming from {} after epoch {}\n", options.checkpoint.string(), first_epoch);
  }
  std::vector<std::string> columns{"epoch", "train_loss", "seconds"};
  columns.insert(columns.end(), options.evaluation_columns.begin(), options.evaluation_columns.end());
  std::optional<MetricsLog> log;
  if (!options.metrics_csv.empty()) log.emplace(options.metrics_csv, columns, /*append=*/first_epoch > 0);

  History history;
  for (int64_t epoch = first_epoch; epoch < options.epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    batches.set_epoch(epoch);
    FitSummary summary;
    if (options.progress_every > 0) {
      // fit() runs one epoch, numbered 0; the progress report gets the real number.
      Progress progress(batches.batches_per_epoch(), options.epochs, options.progress_every);
      progress.on_epoch_begin(trainer, epoch);
      summary = fit(trainer, batches, optimizer, Epochs{epoch, epoch + 1}, detail::BatchEndOnly<Progress>{progress},
                    callbacks...);
      if (!summary.epochs.empty()) progress.on_epoch_end(trainer, epoch, summary.epochs.back());
    } else {
      summary = fit(trainer, batches, optimizer, Epochs{epoch, epoch + 1}, callbacks...);
    }
    if (summary.epochs_completed == 0) break;  // a callback stopped inside the epoch: nothing to record
    std::map<std::string, double> row{
        {"epoch", static_cast<double>(epoch + 1)},
        {"train_loss", summary.epochs.back().mean_loss},
        {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()}};
    if (options.evaluate) row.merge(options.evaluate(epoch));
    if (log) log->append(row);
    history.push_back(row);
    checkpoint.epochs_completed = epoch + 1;
    if (!options.checkpoint.empty()) save_checkpoint(checkpoint, options.checkpoint);
    if (summary.stopped_early) break;
  }
  return history;
}

}  // namespace ardent::train
