#pragma once
// The epoch loop of ardent's example programs: trains a Distiller or an AdversarialTrainer epoch by
// epoch over data::ShuffledBatches, evaluates after each epoch, appends the metrics to a CSV file,
// and writes a checkpoint every epoch. With `resume`, it restores the last checkpoint and continues:
// on the CPU, with the same seed, the result is bit-identical to an uninterrupted run.
//
// The loop runs in this process alone unless the caller passes LoopOptions::parallel
// (train/parallel.hpp; ardent::distributed::DataParallelLoop from <ardent/distributed.hpp>): then
// every rank runs it, the batches are sharded, the trainer's parameters are kept in step, the
// training loss of each epoch is the mean over all ranks' samples (one all-reduced scalar, the
// same on every rank: what the progress line, the history and metrics.csv show), and only rank 0
// prints progress and writes the metrics and the checkpoint (one copy of the model). Each rank's
// random generator (attack starts) is reseeded at each epoch from (batches' seed, epoch, rank), so
// that a resumed run continues exactly; `evaluate` runs on every rank (it may shard and reduce).
// The loop itself never reads the environment, joins a process group or starts a thread.

#include "ardent/data/batches.hpp"
#include "ardent/train/checkpoint.hpp"
#include "ardent/train/fit.hpp"
#include "ardent/train/metrics.hpp"
#include "ardent/train/parallel.hpp"
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
  /// The options that define the run, stored in the checkpoint; resuming with others is refused.
  std::map<std::string, std::string> run_options;
  /// The processes that train together (nullptr: this process alone); must outlive the loop.
  const Parallelism* parallel = nullptr;
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

/// One entry per epoch: its number, mean training loss, seconds, and the evaluation's values (a
/// resumed run's starts with the epochs before it).
using History = std::vector<std::map<std::string, double>>;

/// `batches`: data::ShuffledBatches, or anything with its members set_shard(rank, size),
/// set_epoch(e), seed(), batches_per_epoch() and begin()/end() over (x, y) pairs (e.g. a wrapper
/// that augments each batch).
/// `callbacks`: user callbacks as for train::fit (ardent/train/fit.hpp), seeing the real epoch
/// numbers. One that returns true from on_epoch_end stops the loop after that epoch's metrics and
/// checkpoint; from on_epoch_begin or on_batch_end, before the epoch is recorded.
template <typename Trainer, typename Batches, typename... Callbacks>
History train_loop(Trainer& trainer, Batches& batches, torch::optim::Optimizer& optimizer,
                   std::map<std::string, std::shared_ptr<torch::nn::Module>> modules, const LoopOptions& options,
                   Callbacks&&... callbacks) {
  const Parallelism* parallel = options.parallel;
  const bool main = parallel == nullptr || parallel->is_main();
  if (parallel != nullptr && parallel->size() > 1) batches.set_shard(parallel->rank(), parallel->size());
  Checkpoint checkpoint{0, std::move(modules), &optimizer, options.run_options, {}};
  int64_t first_epoch = 0;
  if (options.resume && !options.checkpoint.empty() && std::filesystem::exists(options.checkpoint)) {
    first_epoch = load_checkpoint(checkpoint, options.checkpoint);
    if (main) fmt::print(stderr, "resuming from {} after epoch {}\n", options.checkpoint.string(), first_epoch);
  }
  std::shared_ptr<void> in_step;  // keeps the ranks' parameters in step while the loop runs
  if (parallel != nullptr) {
    parallel->check_same(first_epoch, "train_loop: the epoch to resume from (is the checkpoint visible to all?)");
    std::vector<std::shared_ptr<torch::nn::Module>> trained;
    for (const auto& [name, module] : checkpoint.modules) trained.push_back(module);
    in_step = parallel->synchronise(trainer.parameters(), trained);
  }
  std::vector<std::string> columns{"epoch", "train_loss", "seconds"};
  columns.insert(columns.end(), options.evaluation_columns.begin(), options.evaluation_columns.end());
  std::optional<MetricsLog> log;
  // Rank 0 alone writes metrics and checkpoints.
  if (!options.metrics_csv.empty() && main) log.emplace(options.metrics_csv, columns, /*append=*/first_epoch > 0);
  // The checkpoint holds the metrics rows: the file is rewritten from it on resume (a kill between
  // the checkpoint and the row leaves no duplicate and no gap).
  if (log && first_epoch > 0 && !checkpoint.metrics.empty()) {
    TORCH_CHECK(checkpoint.metrics.rfind(log->header(), 0) == 0, "ardent::train::train_loop: the checkpoint '",
                options.checkpoint.string(), "' has other metrics columns than ", log->header());
    log->replace(checkpoint.metrics);
  }
  if (log && checkpoint.metrics.empty()) checkpoint.metrics = log->header();

  // A resumed run's history starts with the epochs before it, as its checkpoint recorded them.
  History history = first_epoch > 0 ? metrics_rows(checkpoint.metrics) : History{};
  for (int64_t epoch = first_epoch; epoch < options.epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    batches.set_epoch(epoch);
    if (parallel != nullptr) parallel->begin_epoch(batches.seed(), epoch);
    std::optional<Progress> progress;
    if (options.progress_every > 0 && main) {
      // fit() runs one epoch, numbered 0; the progress report gets the real number.
      progress.emplace(batches.batches_per_epoch(), options.epochs, options.progress_every);
      progress->on_epoch_begin(trainer, epoch);
    }
    const auto summary = progress ? fit(trainer, batches, optimizer, Epochs{epoch, epoch + 1},
                                        detail::BatchEndOnly<Progress>{*progress}, callbacks...)
                                  : fit(trainer, batches, optimizer, Epochs{epoch, epoch + 1}, callbacks...);
    if (summary.epochs_completed == 0) break;  // a callback stopped inside the epoch: nothing to record
    // The epoch's loss over every rank's samples (one all-reduced scalar), not rank 0's share.
    const auto done = parallel != nullptr ? parallel->over_ranks(summary.epochs.back()) : summary.epochs.back();
    if (progress) progress->on_epoch_end(trainer, epoch, done);
    std::map<std::string, double> row{
        {"epoch", static_cast<double>(epoch + 1)},
        {"train_loss", done.mean_loss},
        {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()}};
    if (options.evaluate) row.merge(options.evaluate(epoch));
    history.push_back(row);
    checkpoint.epochs_completed = epoch + 1;
    if (log) checkpoint.metrics += log->row(row);
    if (!options.checkpoint.empty() && main) save_checkpoint(checkpoint, options.checkpoint);
    if (log) log->append(row);  // after the checkpoint, which holds the row too
    if (summary.stopped_early) break;
  }
  return history;
}

}  // namespace ardent::train
