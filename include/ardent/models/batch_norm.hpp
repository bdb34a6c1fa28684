#pragma once
// BatchNorm as ardent's models apply it: torch::nn::BatchNorm2d, except that in training mode the
// batch statistics can be reduced over a larger batch than the local one - the batches of all ranks
// of a data-parallel run (ardent::distributed::SyncBatchNorm, PyTorch's SyncBatchNorm).
//
// With the statistics summed over every rank's batch (N values per channel in all),
//   mean = (1/N) sum x,   var = (1/N) sum (x - mean)^2        (two passes, as BatchNorm2d),
//   y = (x - mean) / sqrt(var + eps) * weight + bias,
//   running_mean <- (1 - m) running_mean + m mean,  running_var <- (1 - m) running_var + m var N/(N-1).
// The sums are differentiable (the reduction's backward sums the gradients over the ranks), so the
// gradient is that of one BatchNorm over the global batch.

#include <torch/torch.h>

namespace ardent::models {

/// Sums per-channel statistics over the batches that one BatchNorm normalises together.
class BatchNormReduction {
 public:
  virtual ~BatchNormReduction() = default;
  /// The sum over all participants of `local` (any shape), differentiable with respect to `local`.
  virtual torch::Tensor sum(const torch::Tensor& local) = 0;
};

namespace detail {
inline BatchNormReduction*& batch_norm_reduction() {
  thread_local BatchNormReduction* reduction = nullptr;
  return reduction;
}
}  // namespace detail

/// The reduction that training-mode BatchNorm layers of ardent's models use on this thread, or
/// nullptr (each batch alone). Set by ardent::distributed::SyncBatchNorm.
inline BatchNormReduction* batch_norm_reduction() { return detail::batch_norm_reduction(); }

/// bn(x), with the training-mode statistics reduced by batch_norm_reduction() when one is set.
inline torch::Tensor batch_norm(torch::nn::BatchNorm2dImpl& bn, const torch::Tensor& x) {
  auto* reduction = batch_norm_reduction();
  if (reduction == nullptr || !bn.is_training()) return bn.forward(x);
  TORCH_CHECK(x.dim() == 4, "ardent::models::batch_norm: argument 'x' has shape ", x.sizes(),
              ", expected [B, C, H, W]");
  const std::vector<int64_t> dims{0, 2, 3};
  const auto shape = std::vector<int64_t>{1, x.size(1), 1, 1};
  const auto local_count = static_cast<double>(x.numel() / std::max<int64_t>(x.size(1), 1));
  // Pass 1: the global count and mean. Pass 2: the global sum of squared deviations.
  const auto first = reduction->sum(torch::cat({x.sum(dims), torch::full({1}, local_count, x.options())}));
  const auto count = first[x.size(1)].item<double>();
  TORCH_CHECK(count > 1, "ardent::models::batch_norm: ", count,
              " value per channel over all ranks, expected more than 1");
  const auto mean = first.narrow(0, 0, x.size(1)) / count;
  const auto centred = x - mean.view(shape);
  const auto var = reduction->sum(centred.square().sum(dims)) / count;
  auto y = centred * torch::rsqrt(var + bn.options.eps()).view(shape);
  if (bn.options.affine()) y = y * bn.weight.view(shape) + bn.bias.view(shape);
  if (bn.options.track_running_stats()) {
    torch::NoGradGuard no_grad;
    // momentum unset: the cumulative average, as BatchNorm2d.
    const double momentum = bn.options.momentum().has_value()
                                ? *bn.options.momentum()
                                : 1.0 / static_cast<double>(bn.num_batches_tracked.item<int64_t>() + 1);
    bn.running_mean.mul_(1 - momentum).add_(mean.detach(), momentum);
    bn.running_var.mul_(1 - momentum).add_(var.detach() * (count / (count - 1)), momentum);
    bn.num_batches_tracked.add_(1);
  }
  return y;
}

inline torch::Tensor batch_norm(torch::nn::BatchNorm2d& bn, const torch::Tensor& x) { return batch_norm(*bn, x); }

}  // namespace ardent::models
