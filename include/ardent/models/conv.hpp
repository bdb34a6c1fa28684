#pragma once
// A 2-d convolution whose input gradient is fast on the CPU where ATen's is slow.
//
// For a stride-1 depthwise convolution y = w * x (groups = channels, padding p, dilation d, kernel k),
// the input gradient is the same depthwise convolution of the output gradient with the kernel
// flipped in both spatial dimensions and padding d (k - 1) - p:
//   dL/dx[c, i, j] = sum_{u, v} w[c, u, v] dL/dy[c, i + p - d u, j + p - d v]
//                  = (flip(w) * dL/dy)[c, i, j].
// Timed layer by layer on some of MobileNetV2's shapes, ATen's CPU backward-to-input of a depthwise
// convolution costs up to 10x a forward one (32 channels at 32x32, batch 128: 10.9 ms against
// 1.1 ms), so an attack, which needs the input gradient only, computes it as a forward. Whole
// PGD steps gain less than their noise (docs/performance.md). When the weight needs a gradient
// (training), ATen's path is used.

#include "ardent/runtime/speedups.hpp"

#include <torch/torch.h>

#include <vector>

namespace ardent::models {
namespace detail {

/// y = depthwise_conv2d(x, w, b) with stride 1; backward gives the input gradient only.
struct DepthwiseConv2dInputGradient : public torch::autograd::Function<DepthwiseConv2dInputGradient> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const c10::optional<torch::Tensor>& bias,
                               std::vector<int64_t> padding, std::vector<int64_t> dilation) {
    ctx->save_for_backward({weight});
    auto y = torch::conv2d(x, weight, bias, /*stride=*/1, padding, dilation, /*groups=*/weight.size(0));
    std::vector<int64_t> flipped_padding(2);
    for (std::size_t i = 0; i < 2; ++i) flipped_padding[i] = dilation[i] * (weight.size(2 + i) - 1) - padding[i];
    ctx->saved_data["padding"] = flipped_padding;
    ctx->saved_data["dilation"] = dilation;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto weight = ctx->get_saved_variables()[0];
    const auto padding = ctx->saved_data["padding"].toIntVector();
    const auto dilation = ctx->saved_data["dilation"].toIntVector();
    auto grad_x = torch::conv2d(grad_outputs[0], weight.flip({2, 3}), /*bias=*/{}, /*stride=*/1, padding, dilation,
                                /*groups=*/weight.size(0));
    return {grad_x, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

inline bool is_stride_one_depthwise(const torch::nn::detail::ConvNdOptions<2>& o) {
  return o.stride()->at(0) == 1 && o.stride()->at(1) == 1 && o.groups() == o.in_channels() &&
         o.out_channels() == o.in_channels() && !o.transposed() &&
         c10::holds_alternative<torch::ExpandingArray<2>>(o.padding());
}

inline bool has_zero_padding(const torch::nn::Conv2d& conv) {
  return c10::holds_alternative<torch::enumtype::kZeros>(conv->options.padding_mode());
}

}  // namespace detail

/// The convolution `conv` computes, with `weight` and `bias` in place of its own (a folded
/// BatchNorm's, say); `conv` must pad with zeros. With Speedups::depthwise_input_gradient, a
/// stride-1 depthwise convolution whose weight and bias need no gradient takes its input
/// gradient through the flipped kernel.
inline torch::Tensor conv2d(const torch::nn::Conv2d& conv, const torch::Tensor& x, const torch::Tensor& weight,
                            const torch::Tensor& bias) {
  TORCH_CHECK(detail::has_zero_padding(conv),
              "ardent::models::conv2d: argument 'conv' pads with another mode than zeros, "
              "expected zero padding when weights are given (use conv->forward)");
  const auto& o = conv->options;
  if (runtime::speedups().depthwise_input_gradient && detail::is_stride_one_depthwise(o) &&
      torch::GradMode::is_enabled() && x.requires_grad() && !weight.requires_grad() &&
      !(bias.defined() && bias.requires_grad())) {
    const auto& padding = c10::get<torch::ExpandingArray<2>>(o.padding());
    const auto dilation = o.dilation();
    if (padding->at(0) <= dilation->at(0) * (weight.size(2) - 1) &&
        padding->at(1) <= dilation->at(1) * (weight.size(3) - 1)) {
      const auto optional_bias = bias.defined() ? c10::optional<torch::Tensor>(bias) : c10::nullopt;
      return detail::DepthwiseConv2dInputGradient::apply(x, weight, optional_bias, c10::IntArrayRef(padding).vec(),
                                                         c10::IntArrayRef(dilation).vec());
    }
  }
  return torch::nn::functional::conv2d(x, weight,
                                       torch::nn::functional::Conv2dFuncOptions()
                                           .bias(bias)
                                           .stride(o.stride())
                                           .padding(o.padding())
                                           .dilation(o.dilation())
                                           .groups(o.groups()));
}

/// conv->forward(x), with the fast input gradient where it applies.
inline torch::Tensor conv2d(torch::nn::Conv2d& conv, const torch::Tensor& x) {
  return detail::has_zero_padding(conv) ? conv2d(conv, x, conv->weight, conv->bias) : conv->forward(x);
}

}  // namespace ardent::models
