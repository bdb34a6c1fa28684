#pragma once
// DataParallelLoop: train::train_loop across the ranks of a ProcessGroup, the loop's
// train::Parallelism on c10d. A program opts in by passing one to the loop:
//
//   #include <ardent/distributed.hpp>
//   const ardent::distributed::DataParallelLoop parallel(ardent::distributed::world());
//   ardent::train::LoopOptions loop;
//   loop.parallel = &parallel;
//
// Each rank trains on its shard of the batches (set_shard), the gradients are averaged by a
// DataParallel, BatchNorm statistics are each rank's own unless `sync_batch_norm` (SyncBatchNorm),
// each rank's generator is reseeded per epoch (reseed), and an epoch's loss is the mean over all
// ranks' samples. In a one-process world it changes nothing but the per-epoch reseed.

#include "ardent/distributed/data_parallel.hpp"
#include "ardent/distributed/process_group.hpp"
#include "ardent/distributed/sharding.hpp"
#include "ardent/distributed/sync_batch_norm.hpp"
#include "ardent/train/parallel.hpp"

#include <optional>

namespace ardent::distributed {

struct DataParallelLoopOptions {
  /// BatchNorm statistics over all ranks' batches (SyncBatchNorm) instead of each rank's own
  /// (DDP's default). Changes nothing in a one-process world.
  TORCH_ARG(bool, sync_batch_norm) = false;
  /// Bucket size and buffer broadcast of the gradient averaging.
  TORCH_ARG(DataParallelOptions, data_parallel) = {};
};

class DataParallelLoop final : public train::Parallelism {
 public:
  /// The group must outlive this object.
  explicit DataParallelLoop(const ProcessGroup& group, DataParallelLoopOptions options = {})
      : group_(group), options_(std::move(options)) {}

  int64_t rank() const override { return group_.rank(); }
  int64_t size() const override { return group_.size(); }
  const ProcessGroup& group() const { return group_; }

  void check_same(int64_t value, std::string_view what) const override { distributed::check_same(group_, value, what); }

  train::EpochSummary over_ranks(train::EpochSummary mine) const override {
    mine.mean_loss = mean_over_ranks(group_, mine.mean_loss, mine.samples);
    mine.samples = sum_counts(group_, {mine.samples})[0];
    return mine;
  }

  void begin_epoch(uint64_t seed, int64_t epoch) const override {
    if (group_.size() > 1) reseed(seed, epoch, group_.rank());
  }

  std::shared_ptr<void> synchronise(std::vector<torch::Tensor> parameters,
                                    const std::vector<std::shared_ptr<torch::nn::Module>>& modules) const override {
    return std::make_shared<InStep>(group_, std::move(parameters), modules, options_);
  }

 private:
  /// The gradient averaging, and the synchronised BatchNorm when asked, for the loop's lifetime.
  struct InStep {
    InStep(const ProcessGroup& group, std::vector<torch::Tensor> parameters,
           const std::vector<std::shared_ptr<torch::nn::Module>>& modules, const DataParallelLoopOptions& options)
        : parallel(group, std::move(parameters), modules, options.data_parallel()) {
      if (options.sync_batch_norm()) sync.emplace(group);
    }
    DataParallel parallel;
    std::optional<SyncBatchNorm> sync;
  };

  const ProcessGroup& group_;
  DataParallelLoopOptions options_;
};

}  // namespace ardent::distributed
