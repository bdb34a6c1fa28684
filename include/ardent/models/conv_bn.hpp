#pragma once
// Convolution followed by BatchNorm, with an eval-mode BatchNorm folded into the convolution.
//
// In eval mode BatchNorm is affine per channel: bn(z) = s (z - mean) + beta, s = gamma / sqrt(var + eps).
// Composed with z = w * x + b it is one convolution,
//   bn(conv(x)) = (s w) * x + (s (b - mean) + beta),
// which saves the BatchNorm's pass over memory forward and its backward (a fifth of a MobileNetV2
// PGD step, with its 52 BatchNorm layers; docs/performance.md). The fold is
// recomputed at every call, so it always reflects the current weights and statistics (a few
// milliseconds for ResNet18's 11M parameters, against a forward of several hundred).

#include "ardent/models/batch_norm.hpp"
#include "ardent/models/conv.hpp"
#include "ardent/runtime/speedups.hpp"

#include <torch/torch.h>

namespace ardent::models {

/// An eval-mode BatchNorm as the per-channel affine map bn(z) = scale z + shift:
/// scale = gamma / sqrt(var + eps), shift = beta - scale mean.
struct ChannelAffine {
  torch::Tensor scale;
  torch::Tensor shift;
};

inline ChannelAffine batch_norm_affine(const torch::nn::BatchNorm2dImpl& bn) {
  TORCH_CHECK(bn.options.track_running_stats() && bn.running_mean.defined() && bn.running_var.defined(),
              "ardent::models::batch_norm_affine: argument 'bn' has no running statistics, expected "
              "track_running_stats(true)");
  auto scale = torch::rsqrt(bn.running_var + bn.options.eps());
  if (bn.weight.defined()) scale = scale * bn.weight;
  auto shift = -bn.running_mean * scale;
  if (bn.bias.defined()) shift = shift + bn.bias;
  return {scale, shift};
}

struct FoldedConv {
  torch::Tensor weight;
  torch::Tensor bias;
};

/// The weight and bias of the one convolution equal to bn(conv(.)) with bn in eval mode:
/// (scale w, scale b + shift).
inline FoldedConv fold_batch_norm(const torch::nn::Conv2dImpl& conv, const torch::nn::BatchNorm2dImpl& bn) {
  TORCH_CHECK(bn.options.num_features() == conv.weight.size(0), "ardent::models::fold_batch_norm: argument 'bn' has ",
              bn.options.num_features(), " channels, expected the convolution's ", conv.weight.size(0));
  const auto [scale, shift] = batch_norm_affine(bn);
  return {conv.weight * scale.reshape({-1, 1, 1, 1}), conv.bias.defined() ? conv.bias * scale + shift : shift};
}

/// Whether conv_bn folds: the switch is on, bn uses its running statistics (eval mode), and no
/// gradient to a parameter of either is wanted (autograd off, or every parameter frozen).
inline bool folds_batch_norm(const torch::nn::Conv2d& conv, const torch::nn::BatchNorm2d& bn) {
  if (!runtime::speedups().fold_batch_norm || bn->is_training() || !bn->options.track_running_stats() ||
      !detail::has_zero_padding(conv)) {
    return false;
  }
  if (!torch::GradMode::is_enabled()) return true;
  for (const auto* p : {&conv->weight, &conv->bias, &bn->weight, &bn->bias}) {
    if (p->defined() && p->requires_grad()) return false;
  }
  return true;
}

/// bn(conv(x)), folded when folds_batch_norm(conv, bn).
inline torch::Tensor conv_bn(torch::nn::Conv2d& conv, torch::nn::BatchNorm2d& bn, const torch::Tensor& x) {
  if (!folds_batch_norm(conv, bn)) return batch_norm(bn, conv2d(conv, x));
  const auto folded = fold_batch_norm(*conv, *bn);
  return conv2d(conv, x, folded.weight, folded.bias);
}

/// conv_bn() of a Sequential(Conv2d, BatchNorm2d), as the blocks' projection shortcuts are stored (with
/// PyTorch's parameter names `shortcut.0.*`, `shortcut.1.*`). The layers are looked up on each call,
/// because clone() replaces a Sequential's contents.
inline torch::Tensor conv_bn(const torch::nn::Sequential& pair, const torch::Tensor& x) {
  torch::nn::Conv2d conv(std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(pair->ptr(0)));
  torch::nn::BatchNorm2d bn(std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(pair->ptr(1)));
  return conv_bn(conv, bn, x);
}

}  // namespace ardent::models
