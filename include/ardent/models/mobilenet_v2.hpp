#pragma once
// MobileNetV2 for 3x32x32 images (CIFAR), after Sandler et al. 2018 ("MobileNetV2: Inverted
// Residuals and Linear Bottlenecks"), in the variant of kuangliu/pytorch-cifar that the ARD code
// (Goldblum et al. 2020) distils into:
//   stem:   Conv(3 -> 32, 3x3, stride 1, pad 1, no bias), BN, ReLU     (stride 1, not 2: CIFAR)
//   layers: inverted residual blocks, (expansion t, channels c, blocks n, stride s) =
//           (1,16,1,1) (6,24,2,1) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1);
//           the first block of a group has stride s, the others 1
//   head:   Conv(320 -> 1280, 1x1, no bias), BN, ReLU, AvgPool 4, Linear(1280 -> classes)
// A block is: expand Conv 1x1 (in -> t*in), BN, ReLU; depthwise Conv 3x3 (stride s), BN, ReLU;
// project Conv 1x1 (t*in -> c), BN (linear bottleneck). With stride 1 the input is added back,
// through Conv 1x1 + BN ("shortcut") when in != c. Stride-2 blocks have no residual.
// 2,296,922 parameters at 10 classes. Names as in the Python reference: conv1, bn1,
// layers.N.{conv1,bn1,conv2,bn2,conv3,bn3,shortcut.0,shortcut.1}, conv2, bn2, linear.
//
// MobileNetV2Options(classes).in_channels(c).width_multiplier(m) makes it for c-channel images with
// every channel count but the head's 1280 scaled by m and rounded to a multiple of 8 (never below 8,
// nor below 90% of c*m), as the paper's width multiplier; the head averages whatever size is left
// (1-channel 28x28 Fashion-MNIST ends at 4x4 too).

#include "ardent/models/conv_bn.hpp"

#include <torch/torch.h>

#include <array>
#include <map>
#include <string>
#include <vector>

namespace ardent::models {

/// One inverted residual block: expand, depthwise, project.
class MobileNetV2BlockImpl : public torch::nn::Cloneable<MobileNetV2BlockImpl> {
 public:
  MobileNetV2BlockImpl(int64_t in_channels, int64_t out_channels, int64_t expansion, int64_t stride)
      : in_channels_(in_channels), out_channels_(out_channels), expansion_(expansion), stride_(stride) {
    TORCH_CHECK(in_channels >= 1 && out_channels >= 1 && expansion >= 1,
                "ardent::models::MobileNetV2Block: arguments 'in_channels'/'out_channels'/'expansion' are ",
                in_channels, "/", out_channels, "/", expansion, ", expected at least 1");
    TORCH_CHECK(stride == 1 || stride == 2, "ardent::models::MobileNetV2Block: argument 'stride' is ", stride,
                ", expected 1 or 2");
    reset();
  }

  void reset() override {
    namespace nn = torch::nn;
    const int64_t in_channels = in_channels_;
    const int64_t out_channels = out_channels_;
    const int64_t stride = stride_;
    const int64_t hidden = expansion_ * in_channels;
    conv1_ = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in_channels, hidden, 1).bias(false)));
    bn1_ = register_module("bn1", nn::BatchNorm2d(hidden));
    conv2_ = register_module(
        "conv2", nn::Conv2d(nn::Conv2dOptions(hidden, hidden, 3).stride(stride).padding(1).groups(hidden).bias(false)));
    bn2_ = register_module("bn2", nn::BatchNorm2d(hidden));
    conv3_ = register_module("conv3", nn::Conv2d(nn::Conv2dOptions(hidden, out_channels, 1).bias(false)));
    bn3_ = register_module("bn3", nn::BatchNorm2d(out_channels));
    if (stride == 1 && in_channels != out_channels) {
      shortcut_ = register_module(
          "shortcut", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(in_channels, out_channels, 1).bias(false)),
                                     nn::BatchNorm2d(out_channels)));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto out = torch::relu(conv_bn(conv1_, bn1_, x));
    out = torch::relu(conv_bn(conv2_, bn2_, out));
    out = conv_bn(conv3_, bn3_, out);
    if (stride_ == 1) out = out + (shortcut_ ? conv_bn(shortcut_, x) : x);
    return out;
  }

 private:
  int64_t in_channels_;
  int64_t out_channels_;
  int64_t expansion_;
  int64_t stride_;
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
  torch::nn::Conv2d conv2_{nullptr};
  torch::nn::BatchNorm2d bn2_{nullptr};
  torch::nn::Conv2d conv3_{nullptr};
  torch::nn::BatchNorm2d bn3_{nullptr};
  torch::nn::Sequential shortcut_{nullptr};  // a 1x1 convolution then BatchNorm, named as in Python
};

TORCH_MODULE(MobileNetV2Block);

struct MobileNetV2Options {
  /* implicit */ MobileNetV2Options(int64_t num_classes = 10) : num_classes_(num_classes) {}  // NOLINT
  TORCH_ARG(int64_t, num_classes);
  /// Channels of the input images.
  TORCH_ARG(int64_t, in_channels) = 3;
  /// Scales every channel count but the head's (1 is the network above).
  TORCH_ARG(double, width_multiplier) = 1.0;
};

class MobileNetV2Impl : public torch::nn::Cloneable<MobileNetV2Impl> {
 public:
  /// (expansion, out_channels, blocks, stride) of each group of blocks.
  static constexpr std::array<std::array<int64_t, 4>, 7> config{
      {{1, 16, 1, 1}, {6, 24, 2, 1}, {6, 32, 3, 2}, {6, 64, 4, 2}, {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}}};

  explicit MobileNetV2Impl(MobileNetV2Options options = {}) : options_(options) {
    TORCH_CHECK(options_.num_classes() >= 2, "ardent::models::MobileNetV2: argument 'num_classes' is ",
                options_.num_classes(), ", expected at least 2");
    TORCH_CHECK(options_.in_channels() >= 1 && options_.width_multiplier() > 0 && options_.width_multiplier() <= 16,
                "ardent::models::MobileNetV2: arguments 'in_channels'/'width_multiplier' are ", options_.in_channels(),
                "/", options_.width_multiplier(), ", expected at least 1 and in (0, 16]");
    reset();
  }

  /// `channels` scaled by the width multiplier: the nearest multiple of 8, at least 8 and at least
  /// 90% of the scaled count (unchanged at multiplier 1).
  int64_t scaled(int64_t channels) const {
    const double target = static_cast<double>(channels) * options_.width_multiplier();
    auto rounded = std::max<int64_t>(8, (static_cast<int64_t>(target + 4) / 8) * 8);
    if (static_cast<double>(rounded) < 0.9 * target) rounded += 8;
    return rounded;
  }

  void reset() override {
    namespace nn = torch::nn;
    group_ends_.clear();
    const int64_t stem = scaled(32);
    conv1_ = register_module(
        "conv1", nn::Conv2d(nn::Conv2dOptions(options_.in_channels(), stem, 3).stride(1).padding(1).bias(false)));
    bn1_ = register_module("bn1", nn::BatchNorm2d(stem));
    layers_ = register_module("layers", nn::Sequential());
    int64_t in = stem;
    for (const auto& [expansion, channels, blocks, stride] : config) {
      const int64_t out = scaled(channels);
      for (int64_t b = 0; b < blocks; ++b) {
        layers_->push_back(MobileNetV2Block(in, out, expansion, b == 0 ? stride : 1));
        in = out;
      }
      group_ends_.push_back(layers_->size());
    }
    conv2_ = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(in, 1280, 1).bias(false)));
    bn2_ = register_module("bn2", nn::BatchNorm2d(1280));
    linear_ = register_module("linear", nn::Linear(1280, options_.num_classes()));
  }

  /// Stage outputs (the defaults on [B,3,32,32]): "stem" [B,32,32,32]; "stage1".."stage7", the output of each group of
  /// blocks
  /// ([B,16,32,32], [B,24,32,32], [B,32,16,16], [B,64,8,8], [B,96,8,8], [B,160,4,4],
  /// [B,320,4,4]); "head" [B,1280,4,4], after conv2, bn2 and ReLU.
  std::map<std::string, torch::Tensor> features(const torch::Tensor& x) {
    TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == options_.in_channels() && x.size(2) >= 8 && x.size(3) >= 8,
                "ardent::models::MobileNetV2: argument 'x' has shape ", x.defined() ? x.sizes() : c10::IntArrayRef{},
                ", expected [B, ", options_.in_channels(), ", H, W] with H, W >= 8 (CIFAR: [B, 3, 32, 32])");
    std::map<std::string, torch::Tensor> out;
    auto h = torch::relu(conv_bn(conv1_, bn1_, x));
    out.emplace("stem", h);
    std::size_t block = 0;
    for (std::size_t g = 0; g < group_ends_.size(); ++g) {
      for (; block < group_ends_[g]; ++block) h = layers_[block]->as<MobileNetV2BlockImpl>()->forward(h);
      out.emplace("stage" + std::to_string(g + 1), h);
    }
    out.emplace("head", torch::relu(conv_bn(conv2_, bn2_, h)));
    return out;
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto h = features(x).at("head");
    return linear_->forward(torch::adaptive_avg_pool2d(h, {1, 1}).flatten(1));
  }

  const MobileNetV2Options& options() const { return options_; }

 private:
  MobileNetV2Options options_;
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
  torch::nn::Sequential layers_{nullptr};
  std::vector<std::size_t> group_ends_;
  torch::nn::Conv2d conv2_{nullptr};
  torch::nn::BatchNorm2d bn2_{nullptr};
  torch::nn::Linear linear_{nullptr};
};

TORCH_MODULE(MobileNetV2);

}  // namespace ardent::models
