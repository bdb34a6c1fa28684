#pragma once
// SyncBatchNorm: while one is alive, the training-mode BatchNorm layers of ardent's models (and of a
// Features target's connectors) on this thread normalise by the mean and variance of the batches of
// all ranks together, as PyTorch's torch.nn.SyncBatchNorm, instead of each rank's own batch (DDP's
// default, which ardent::distributed::DataParallel follows):
//
//   ardent::distributed::SyncBatchNorm sync(ardent::distributed::world());
//   trainer.step(x_shard, y_shard, optimizer);
//
// (train_loop does this for LoopOptions::sync_batch_norm.) With it, N ranks at per-rank batch B/N
// compute what one process computes at batch B, BatchNorm included (tests/distributed: equivalence-bn).
//
// Cost and contract: each training-mode BatchNorm forward makes two all-reduces of 2C+1 and C
// values, and its backward two more. Every rank must therefore run the same training-mode forward
// and backward passes in the same order - true of ardent's trainers, whose attacks run a fixed number
// of steps. Eval-mode layers use their running statistics and communicate nothing. Models of one's own
// take part by applying BatchNorm through ardent::models::batch_norm (or conv_bn).

#include "ardent/distributed/process_group.hpp"
#include "ardent/models/batch_norm.hpp"

#include <torch/torch.h>

namespace ardent::distributed {

namespace detail {

/// sum_r local_r, with backward dL/dlocal = sum_r dL_r/dsum (each rank's loss depends on every
/// rank's statistics, so each rank's gradient collects the others' upstream gradients).
struct AllReduceSumFunction : torch::autograd::Function<AllReduceSumFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* context, const torch::Tensor& local,
                               const ProcessGroup* group) {
    context->saved_data["group"] = reinterpret_cast<int64_t>(group);
    auto total = local.detach().contiguous().clone();
    group->all_reduce_sum(total, "SyncBatchNorm: batch statistics");
    return total;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                 torch::autograd::variable_list gradients) {
    const auto* group = reinterpret_cast<const ProcessGroup*>(context->saved_data["group"].toInt());
    auto total = gradients[0].contiguous().clone();
    group->all_reduce_sum(total, "SyncBatchNorm: gradients of the batch statistics");
    return {total, torch::Tensor()};
  }
};

}  // namespace detail

class SyncBatchNorm final : public models::BatchNormReduction {
 public:
  /// Installs itself on this thread for its lifetime (in a one-process world it changes nothing).
  /// The group must outlive it.
  explicit SyncBatchNorm(const ProcessGroup& group) : group_(group), previous_(models::batch_norm_reduction()) {
    if (group_.size() > 1) models::detail::batch_norm_reduction() = this;
  }
  SyncBatchNorm(const SyncBatchNorm&) = delete;
  SyncBatchNorm& operator=(const SyncBatchNorm&) = delete;
  ~SyncBatchNorm() override {
    if (group_.size() > 1) models::detail::batch_norm_reduction() = previous_;
  }

  torch::Tensor sum(const torch::Tensor& local) override { return detail::AllReduceSumFunction::apply(local, &group_); }

 private:
  const ProcessGroup& group_;
  models::BatchNormReduction* previous_;
};

}  // namespace ardent::distributed
