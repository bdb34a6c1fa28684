#pragma once
// The epoch loop of ardent's example programs: trains a Distiller or an AdversarialTrainer epoch by
// epoch over data::ShuffledBatches, evaluates after each epoch, appends the metrics to a CSV file,
// and writes a checkpoint every epoch. With `resume`, it restores the last checkpoint and continues:
// on the CPU, with the same seed, the result is bit-identical to an uninterrupted run.
//
// In a world of several processes (ardent/distributed/process_group.hpp), every rank runs this
// loop: the batches are sharded, the trainer's parameters are averaged by a
// distributed::DataParallel, the training loss is reduced over the ranks, and only rank 0 prints
// progress and writes the metrics and the checkpoint (one copy of the model). Each rank's random
// generator (attack starts) is reseeded at each epoch from (batches' seed, epoch, rank), so that
// a resumed run continues exactly; `evaluate` runs on every rank (it may shard and reduce).

#include "ardent/data/batches.hpp"
#include "ardent/distill/fit.hpp"
#include "ardent/distributed/data_parallel.hpp"
#include "ardent/distributed/sharding.hpp"
#include "ardent/distributed/sync_batch_norm.hpp"
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
  /// The options that define the run, stored in the checkpoint; resuming with others is refused.
  std::map<std::string, std::string> run_options;
  /// The processes that train together (nullptr: distributed::world(), from the environment).
  const distributed::ProcessGroup* group = nullptr;
  /// BatchNorm statistics over all ranks' batches (distributed::SyncBatchNorm) instead of each
  /// rank's own (DDP's default). Changes nothing in a one-process world.
  bool sync_batch_norm = false;
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
/// `callbacks`: user callbacks as for ardent::fit (ardent/distill/fit.hpp), seeing the real epoch
/// numbers. One that returns true from on_epoch_end stops the loop after that epoch's metrics and
/// checkpoint; from on_epoch_begin or on_batch_end, before the epoch is recorded.
template <typename Trainer, typename Batches, typename... Callbacks>
History train_loop(Trainer& trainer, Batches& batches, torch::optim::Optimizer& optimizer,
                   std::map<std::string, std::shared_ptr<torch::nn::Module>> modules, const LoopOptions& options,
                   Callbacks&&... callbacks) {
  const auto& group = options.group != nullptr ? *options.group : distributed::world();
  if (group.size() > 1) batches.set_shard(group.rank(), group.size());
  Checkpoint checkpoint{0, std::move(modules), &optimizer, options.run_options, {}};
  int64_t first_epoch = 0;
  if (options.resume && !options.checkpoint.empty() && std::filesystem::exists(options.checkpoint)) {
    first_epoch = load_checkpoint(checkpoint, options.checkpoint);
    if (group.is_main())
      fmt::print(stderr, "resuming from {} after epoch {}\n", options.checkpoint.string(), first_epoch);
  }
  distributed::check_same(group, first_epoch,
                          "train_loop: the epoch to resume from (is the checkpoint visible to all?)");
  std::vector<std::shared_ptr<torch::nn::Module>> trained;
  for (const auto& [name, module] : checkpoint.modules) trained.push_back(module);
  const distributed::DataParallel parallel(group, trainer.parameters(), trained);
  std::vector<std::string> columns{"epoch", "train_loss", "seconds"};
  columns.insert(columns.end(), options.evaluation_columns.begin(), options.evaluation_columns.end());
  std::optional<MetricsLog> log;
  // Rank 0 alone writes metrics and checkpoints.
  if (!options.metrics_csv.empty() && group.is_main()) {
    log.emplace(options.metrics_csv, columns, /*append=*/first_epoch > 0);
  }
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
  std::optional<distributed::SyncBatchNorm> sync;
  if (options.sync_batch_norm) sync.emplace(group);
  for (int64_t epoch = first_epoch; epoch < options.epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    batches.set_epoch(epoch);
    if (group.size() > 1) distributed::reseed(batches.seed(), epoch, group.rank());
    FitSummary summary;
    if (options.progress_every > 0 && group.is_main()) {
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
        {"train_loss",
         distributed::mean_over_ranks(group, summary.epochs.back().mean_loss, summary.epochs.back().samples)},
        {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()}};
    if (options.evaluate) row.merge(options.evaluate(epoch));
    history.push_back(row);
    checkpoint.epochs_completed = epoch + 1;
    if (log) checkpoint.metrics += log->row(row);
    if (!options.checkpoint.empty() && group.is_main()) save_checkpoint(checkpoint, options.checkpoint);
    if (log) log->append(row);  // after the checkpoint, which holds the row too
    if (summary.stopped_early) break;
  }
  return history;
}

}  // namespace ardent::train
