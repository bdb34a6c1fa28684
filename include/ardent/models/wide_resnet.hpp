#pragma once
// Wide residual networks WRN-d-k for 3x32x32 images (Zagoruyko and Komodakis 2016, "Wide Residual
// Networks"), in the pre-activation form of the TRADES repository (yaodongyu/TRADES,
// models/wideresnet.py), whose WRN-34-10 is the robust teacher of the ARD paper.
// With n = (d - 4) / 6 blocks per group and widths (16, 16k, 32k, 64k):
//   conv1:  Conv(3 -> 16, 3x3, stride 1, pad 1, no bias)
//   block1: n blocks 16 -> 16k, stride 1     -> 16k x 32 x 32
//   block2: n blocks 16k -> 32k, stride 2    -> 32k x 16 x 16
//   block3: n blocks 32k -> 64k, stride 2    -> 64k x 8 x 8
//   bn1, ReLU, AvgPool 8, fc: Linear(64k -> classes)
// A block computes a = relu1(bn1(x)); out = conv2(dropout(relu2(bn2(conv1(a))))); and returns
// out + x when its input and output widths agree, else out + convShortcut(a), where convShortcut is
// Conv 1x1 (stride s, no bias) applied to the *activated* input a.
// Names as in the Python reference: conv1, block1.layer.N.{bn1,conv1,bn2,conv2,convShortcut},
// block2, block3, bn1, fc (relu1/relu2/relu are registered too, and hold nothing).
//
// sub_block1: the Python class also builds a second copy of block1, `sub_block1`, that forward
// never uses; the published TRADES checkpoint carries its weights. By default ardent does not build
// it, so that the parameter count is that of the network that runs (WRN-34-10: 46,160,474 at 10
// classes), and load_state_dict skips exactly the `sub_block1.*` keys of such a checkpoint (the
// ignores_state_dict_key hook). WideResNetOptions(...).sub_block1(true) builds it like the Python
// code, for state dicts that Python's strict load_state_dict of that class accepts.

#include "ardent/models/conv_bn.hpp"

#include <torch/torch.h>

#include <cmath>
#include <map>
#include <string>

namespace ardent::models {

/// One pre-activation wide basic block.
class WideBasicBlockImpl : public torch::nn::Cloneable<WideBasicBlockImpl> {
 public:
  WideBasicBlockImpl(int64_t in_channels, int64_t out_channels, int64_t stride, double dropout = 0.0)
      : in_channels_(in_channels),
        out_channels_(out_channels),
        stride_(stride),
        equal_in_out_(in_channels == out_channels),
        dropout_(dropout) {
    TORCH_CHECK(in_channels >= 1 && out_channels >= 1,
                "ardent::models::WideBasicBlock: arguments 'in_channels'/'out_channels' are ", in_channels, "/",
                out_channels, ", expected at least 1");
    TORCH_CHECK(stride >= 1, "ardent::models::WideBasicBlock: argument 'stride' is ", stride, ", expected at least 1");
    TORCH_CHECK(dropout >= 0.0 && dropout < 1.0, "ardent::models::WideBasicBlock: argument 'dropout' is ", dropout,
                ", expected a probability in [0, 1)");
    reset();
  }

  void reset() override {
    namespace nn = torch::nn;
    const int64_t in_channels = in_channels_;
    const int64_t out_channels = out_channels_;
    const int64_t stride = stride_;
    bn1_ = register_module("bn1", nn::BatchNorm2d(in_channels));
    relu1_ = register_module("relu1", nn::ReLU());
    conv1_ = register_module(
        "conv1", nn::Conv2d(nn::Conv2dOptions(in_channels, out_channels, 3).stride(stride).padding(1).bias(false)));
    bn2_ = register_module("bn2", nn::BatchNorm2d(out_channels));
    relu2_ = register_module("relu2", nn::ReLU());
    conv2_ = register_module(
        "conv2", nn::Conv2d(nn::Conv2dOptions(out_channels, out_channels, 3).stride(1).padding(1).bias(false)));
    if (!equal_in_out_) {
      shortcut_ = register_module(
          "convShortcut", nn::Conv2d(nn::Conv2dOptions(in_channels, out_channels, 1).stride(stride).bias(false)));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto activated = relu1_->forward(batch_norm(bn1_, x));
    auto out = relu2_->forward(conv_bn(conv1_, bn2_, activated));
    if (dropout_ > 0.0) out = torch::dropout(out, dropout_, is_training());
    out = conv2_->forward(out);
    return (equal_in_out_ ? x : shortcut_->forward(activated)) + out;
  }

 private:
  int64_t in_channels_;
  int64_t out_channels_;
  int64_t stride_;
  bool equal_in_out_;
  double dropout_;
  torch::nn::BatchNorm2d bn1_{nullptr};
  torch::nn::ReLU relu1_{nullptr};
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn2_{nullptr};
  torch::nn::ReLU relu2_{nullptr};
  torch::nn::Conv2d conv2_{nullptr};
  torch::nn::Conv2d shortcut_{nullptr};
};

TORCH_MODULE(WideBasicBlock);

/// A group of blocks at one width (the Python NetworkBlock): its blocks live in `layer`.
class WideResNetGroupImpl : public torch::nn::Cloneable<WideResNetGroupImpl> {
 public:
  WideResNetGroupImpl(int64_t blocks, int64_t in_channels, int64_t out_channels, int64_t stride, double dropout)
      : blocks_(blocks), in_channels_(in_channels), out_channels_(out_channels), stride_(stride), dropout_(dropout) {
    TORCH_CHECK(blocks >= 1, "ardent::models::WideResNetGroup: argument 'blocks' is ", blocks, ", expected at least 1");
    reset();
  }

  void reset() override {
    layer_ = register_module("layer", torch::nn::Sequential());
    for (int64_t i = 0; i < blocks_; ++i) {
      layer_->push_back(
          WideBasicBlock(i == 0 ? in_channels_ : out_channels_, out_channels_, i == 0 ? stride_ : 1, dropout_));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) { return layer_->forward(x); }

 private:
  int64_t blocks_;
  int64_t in_channels_;
  int64_t out_channels_;
  int64_t stride_;
  double dropout_;
  torch::nn::Sequential layer_{nullptr};
};

TORCH_MODULE(WideResNetGroup);

struct WideResNetOptions {
  /* implicit */ WideResNetOptions(int64_t depth = 34, int64_t widen_factor = 10)  // NOLINT
      : depth_(depth), widen_factor_(widen_factor) {}
  /// Total depth d; (d - 4) must be a positive multiple of 6.
  TORCH_ARG(int64_t, depth);
  /// Width multiplier k.
  TORCH_ARG(int64_t, widen_factor);
  TORCH_ARG(int64_t, num_classes) = 10;
  /// Dropout probability between the two convolutions of each block (training mode only).
  TORCH_ARG(double, dropout) = 0.0;
  /// Also build the unused `sub_block1` of the Python class (see the top of this file).
  TORCH_ARG(bool, sub_block1) = false;
};

class WideResNetImpl : public torch::nn::Cloneable<WideResNetImpl> {
 public:
  explicit WideResNetImpl(WideResNetOptions options = {}) : options_(options) {
    const char* fn = "ardent::models::WideResNet";
    TORCH_CHECK(options_.depth() >= 10 && (options_.depth() - 4) % 6 == 0, fn, ": argument 'depth' is ",
                options_.depth(), ", expected 6n + 4 with n >= 1 (10, 16, 22, 28, 34, ...)");
    TORCH_CHECK(options_.widen_factor() >= 1, fn, ": argument 'widen_factor' is ", options_.widen_factor(),
                ", expected at least 1");
    TORCH_CHECK(options_.num_classes() >= 2, fn, ": argument 'num_classes' is ", options_.num_classes(),
                ", expected at least 2");
    TORCH_CHECK(options_.dropout() >= 0.0 && options_.dropout() < 1.0, fn, ": argument 'dropout' is ",
                options_.dropout(), ", expected a probability in [0, 1)");
    reset();
  }

  void reset() override {
    namespace nn = torch::nn;
    const int64_t n = (options_.depth() - 4) / 6;
    const int64_t k = options_.widen_factor();
    const double p = options_.dropout();
    width_ = 64 * k;
    conv1_ = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(3, 16, 3).stride(1).padding(1).bias(false)));
    block1_ = register_module("block1", WideResNetGroup(n, 16, 16 * k, 1, p));
    if (options_.sub_block1()) register_module("sub_block1", WideResNetGroup(n, 16, 16 * k, 1, p));
    block2_ = register_module("block2", WideResNetGroup(n, 16 * k, 32 * k, 2, p));
    block3_ = register_module("block3", WideResNetGroup(n, 32 * k, 64 * k, 2, p));
    bn1_ = register_module("bn1", nn::BatchNorm2d(width_));
    relu_ = register_module("relu", nn::ReLU());
    fc_ = register_module("fc", nn::Linear(width_, options_.num_classes()));
    initialize();
  }

  /// Stage outputs: "stem" [B,16,32,32], "block1" [B,16k,32,32], "block2" [B,32k,16,16],
  /// "block3" [B,64k,8,8], "head" [B,64k,8,8] (after the final bn1 and ReLU).
  std::map<std::string, torch::Tensor> features(const torch::Tensor& x) {
    TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == 3 && x.size(2) == 32 && x.size(3) == 32,
                "ardent::models::WideResNet: argument 'x' has shape ", x.defined() ? x.sizes() : c10::IntArrayRef{},
                ", expected [B, 3, 32, 32]");
    std::map<std::string, torch::Tensor> out;
    auto h = conv1_->forward(x);
    out.emplace("stem", h);
    h = block1_->forward(h);
    out.emplace("block1", h);
    h = block2_->forward(h);
    out.emplace("block2", h);
    h = block3_->forward(h);
    out.emplace("block3", h);
    out.emplace("head", relu_->forward(batch_norm(bn1_, h)));
    return out;
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto h = features(x).at("head");
    return fc_->forward(torch::avg_pool2d(h, 8).flatten(1));
  }

  /// Keys of a reference checkpoint that this model knowingly does not hold: the unused
  /// `sub_block1` of the Python class, unless it was built (see the top of this file).
  bool ignores_state_dict_key(const std::string& key) const {
    return !options_.sub_block1() && key.rfind("sub_block1.", 0) == 0;
  }

  const WideResNetOptions& options() const { return options_; }

 private:
  // The reference initialisation: He normal for convolutions (fan-out), BN weight 1 and bias 0,
  // linear bias 0.
  void initialize() {
    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<torch::nn::Conv2d>()) {
        const auto& ks = conv->options.kernel_size();
        const double fan_out = static_cast<double>((*ks)[0] * (*ks)[1] * conv->options.out_channels());
        conv->weight.normal_(0.0, std::sqrt(2.0 / fan_out));
      } else if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
        bn->weight.fill_(1.0);
        bn->bias.zero_();
      } else if (auto* linear = m->as<torch::nn::Linear>()) {
        linear->bias.zero_();
      }
    }
  }

  WideResNetOptions options_;
  int64_t width_ = 0;
  torch::nn::Conv2d conv1_{nullptr};
  WideResNetGroup block1_{nullptr};
  WideResNetGroup block2_{nullptr};
  WideResNetGroup block3_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
  torch::nn::ReLU relu_{nullptr};
  torch::nn::Linear fc_{nullptr};
};

TORCH_MODULE(WideResNet);

}  // namespace ardent::models
