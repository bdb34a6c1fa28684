#pragma once
// ResNet18 for 3x32x32 images (CIFAR), the variant of He et al. 2016 ("Deep Residual Learning for
// Image Recognition") used by kuangliu/pytorch-cifar and by the ARD code (Goldblum et al. 2020):
//   stem:   Conv(3 -> 64, 3x3, stride 1, pad 1, no bias), BN, ReLU      (no max-pool)
//   layer1: 2 basic blocks, 64 channels,  stride 1   -> 64x32x32
//   layer2: 2 basic blocks, 128 channels, stride 2   -> 128x16x16
//   layer3: 2 basic blocks, 256 channels, stride 2   -> 256x8x8
//   layer4: 2 basic blocks, 512 channels, stride 2   -> 512x4x4
//   AvgPool 4, Linear(512 -> classes)
// A basic block is relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), where the shortcut is the
// identity, or Conv 1x1 (stride s, no bias) + BN when the stride or the channel count changes.
// 11,173,962 parameters at 10 classes. Parameter and buffer names are those of the Python
// reference (conv1, bn1, layer1.0.conv1, ..., layer2.0.shortcut.0, layer2.0.shortcut.1, linear),
// so that ardent::io::load_state_dict reads its checkpoints.
//
// ResNet18Options(classes).in_channels(c).width(w) makes the same network for c-channel images with
// w, 2w, 4w, 8w channels in layer1..layer4 (a reduced ResNet18 for small budgets, e.g. 1-channel
// 28x28 Fashion-MNIST at width 16: layer4 is 4x4 there too); the head averages layer4 whatever its size.

#include "ardent/models/conv_bn.hpp"

#include <torch/torch.h>

#include <map>
#include <string>

namespace ardent::models {

/// One basic block: two 3x3 convolutions with BatchNorm and a shortcut.
class ResNetBasicBlockImpl : public torch::nn::Cloneable<ResNetBasicBlockImpl> {
 public:
  ResNetBasicBlockImpl(int64_t in_channels, int64_t out_channels, int64_t stride)
      : in_channels_(in_channels), out_channels_(out_channels), stride_(stride) {
    TORCH_CHECK(in_channels >= 1 && out_channels >= 1,
                "ardent::models::ResNetBasicBlock: arguments 'in_channels'/'out_channels' are ", in_channels, "/",
                out_channels, ", expected at least 1");
    TORCH_CHECK(stride >= 1, "ardent::models::ResNetBasicBlock: argument 'stride' is ", stride,
                ", expected at least 1");
    reset();
  }

  void reset() override {
    namespace nn = torch::nn;
    const int64_t in_channels = in_channels_;
    const int64_t out_channels = out_channels_;
    const int64_t stride = stride_;
    conv1_ = register_module(
        "conv1", nn::Conv2d(nn::Conv2dOptions(in_channels, out_channels, 3).stride(stride).padding(1).bias(false)));
    bn1_ = register_module("bn1", nn::BatchNorm2d(out_channels));
    conv2_ = register_module(
        "conv2", nn::Conv2d(nn::Conv2dOptions(out_channels, out_channels, 3).stride(1).padding(1).bias(false)));
    bn2_ = register_module("bn2", nn::BatchNorm2d(out_channels));
    if (stride != 1 || in_channels != out_channels) {
      // An empty Sequential in Python holds no parameters; only a projection shortcut is registered.
      shortcut_ = register_module(
          "shortcut",
          nn::Sequential(nn::Conv2d(nn::Conv2dOptions(in_channels, out_channels, 1).stride(stride).bias(false)),
                         nn::BatchNorm2d(out_channels)));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto out = torch::relu(conv_bn(conv1_, bn1_, x));
    out = conv_bn(conv2_, bn2_, out);
    return torch::relu(out + (shortcut_ ? conv_bn(shortcut_, x) : x));
  }

 private:
  int64_t in_channels_;
  int64_t out_channels_;
  int64_t stride_;
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
  torch::nn::Conv2d conv2_{nullptr};
  torch::nn::BatchNorm2d bn2_{nullptr};
  torch::nn::Sequential shortcut_{nullptr};  // a 1x1 convolution then BatchNorm, named as in Python
};

TORCH_MODULE(ResNetBasicBlock);

struct ResNet18Options {
  /* implicit */ ResNet18Options(int64_t num_classes = 10) : num_classes_(num_classes) {}  // NOLINT
  TORCH_ARG(int64_t, num_classes);
  /// Channels of the input images.
  TORCH_ARG(int64_t, in_channels) = 3;
  /// Channels of the stem and layer1 (layer2..layer4 have 2, 4 and 8 times as many).
  TORCH_ARG(int64_t, width) = 64;
};

class ResNet18Impl : public torch::nn::Cloneable<ResNet18Impl> {
 public:
  explicit ResNet18Impl(ResNet18Options options = {}) : options_(options) {
    TORCH_CHECK(options_.num_classes() >= 2, "ardent::models::ResNet18: argument 'num_classes' is ",
                options_.num_classes(), ", expected at least 2");
    TORCH_CHECK(options_.in_channels() >= 1 && options_.width() >= 1,
                "ardent::models::ResNet18: arguments 'in_channels'/'width' are ", options_.in_channels(), "/",
                options_.width(), ", expected at least 1");
    reset();
  }

  void reset() override {
    namespace nn = torch::nn;
    const int64_t w = options_.width();
    conv1_ = register_module(
        "conv1", nn::Conv2d(nn::Conv2dOptions(options_.in_channels(), w, 3).stride(1).padding(1).bias(false)));
    bn1_ = register_module("bn1", nn::BatchNorm2d(w));
    int64_t in = w;
    const int64_t widths[4] = {w, 2 * w, 4 * w, 8 * w};
    for (int i = 0; i < 4; ++i) {
      nn::Sequential layer;
      for (int b = 0; b < 2; ++b) {
        const int64_t stride = (i > 0 && b == 0) ? 2 : 1;
        layer->push_back(ResNetBasicBlock(in, widths[i], stride));
        in = widths[i];
      }
      layers_[i] = register_module("layer" + std::to_string(i + 1), layer);
    }
    linear_ = register_module("linear", nn::Linear(8 * w, options_.num_classes()));
  }

  /// Stage outputs (the defaults on [B,3,32,32]): "stem" [B,64,32,32], "layer1" [B,64,32,32],
  /// "layer2" [B,128,16,16], "layer3" [B,256,8,8], "layer4" [B,512,4,4].
  std::map<std::string, torch::Tensor> features(const torch::Tensor& x) {
    TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == options_.in_channels() && x.size(2) >= 8 && x.size(3) >= 8,
                "ardent::models::ResNet18: argument 'x' has shape ", x.defined() ? x.sizes() : c10::IntArrayRef{},
                ", expected [B, ", options_.in_channels(), ", H, W] with H, W >= 8 (CIFAR: [B, 3, 32, 32])");
    std::map<std::string, torch::Tensor> out;
    auto h = torch::relu(conv_bn(conv1_, bn1_, x));
    out.emplace("stem", h);
    for (int i = 0; i < 4; ++i) {
      h = layers_[i]->forward(h);
      out.emplace("layer" + std::to_string(i + 1), h);
    }
    return out;
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto h = features(x).at("layer4");
    return linear_->forward(torch::adaptive_avg_pool2d(h, {1, 1}).flatten(1));
  }

  const ResNet18Options& options() const { return options_; }

 private:
  ResNet18Options options_;
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
  torch::nn::Sequential layers_[4] = {nullptr, nullptr, nullptr, nullptr};
  torch::nn::Linear linear_{nullptr};
};

TORCH_MODULE(ResNet18);

}  // namespace ardent::models
