#pragma once
// What train_loop needs from the processes that train together, as an interface, so that the loop
// (and every program that includes it) compiles without c10d or Gloo. The loop is one process
// unless its caller passes an implementation (LoopOptions::parallel); ardent's own is
// ardent::distributed::DataParallelLoop (<ardent/distributed.hpp>), on c10d:
//
//   #include <ardent/distributed.hpp>
//   const ardent::distributed::DataParallelLoop parallel(ardent::distributed::world());
//   loop.parallel = &parallel;   // shards the batches, averages gradients, reduces the loss
//
// Nothing here reads the environment, opens a connection or starts a thread.

#include "ardent/train/fit.hpp"

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

namespace ardent::train {

class Parallelism {
 public:
  Parallelism() = default;
  Parallelism(const Parallelism&) = delete;
  Parallelism& operator=(const Parallelism&) = delete;
  virtual ~Parallelism() = default;

  /// This process, 0 <= rank() < size().
  virtual int64_t rank() const = 0;
  /// The number of processes.
  virtual int64_t size() const = 0;
  /// Rank 0: the one that prints and writes the metrics and the checkpoint.
  bool is_main() const { return rank() == 0; }

  /// Throws on every rank unless all ranks hold the same `value` (`what` names it in the message).
  virtual void check_same(int64_t value, std::string_view what) const = 0;
  /// The epoch of all ranks from this rank's: samples summed, the loss the mean over all samples,
  /// sum_r mean_r n_r / sum_r n_r (the same scalar on every rank).
  virtual EpochSummary over_ranks(EpochSummary mine) const = 0;
  /// Called before each epoch with the batches' seed: each rank's random generator (attack starts)
  /// is set from (seed, epoch, rank), so that a resumed run continues exactly.
  virtual void begin_epoch(uint64_t seed, int64_t epoch) const = 0;
  /// Keeps `parameters` (what the optimizer trains) and the buffers of `modules` in step across
  /// the ranks for as long as the returned object lives: rank 0's values at the start, gradients
  /// averaged after every backward pass.
  [[nodiscard]] virtual std::shared_ptr<void> synchronise(
      std::vector<torch::Tensor> parameters, const std::vector<std::shared_ptr<torch::nn::Module>>& modules) const = 0;
};

}  // namespace ardent::train
