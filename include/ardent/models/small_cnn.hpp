#pragma once
// SmallCNN: a small convolutional network for 1x28x28 images (MNIST, Fashion-MNIST), in a family
// indexed by width w:
//   c1: Conv(1 -> w, 3x3, pad 1), ReLU, MaxPool 2
//   c2: Conv(w -> 2w, 3x3, pad 1), ReLU, MaxPool 2   (computed as MaxPool, then ReLU: the same values)
//   fc: Linear(2w * 7 * 7 -> classes)
// Width 16 is the architecture of the reference model in tests/data/attack_vectors, and the
// parameter names (c1, c2, fc) are those of its PyTorch definition.

#include <torch/torch.h>

#include <fmt/format.h>

#include <map>
#include <string>

namespace ardent::models {

struct SmallCNNOptions {
  /* implicit */ SmallCNNOptions(int64_t num_classes = 10) : num_classes_(num_classes) {}  // NOLINT
  TORCH_ARG(int64_t, num_classes);
  /// Channels of the first convolution; the second has twice as many.
  TORCH_ARG(int64_t, width) = 16;
};

class SmallCNNImpl : public torch::nn::Cloneable<SmallCNNImpl> {
 public:
  explicit SmallCNNImpl(SmallCNNOptions options = {}) : options_(options) {
    TORCH_CHECK(options_.num_classes() >= 2, "ardent::models::SmallCNN: argument 'num_classes' is ",
                options_.num_classes(), ", expected at least 2");
    TORCH_CHECK(options_.width() >= 1, "ardent::models::SmallCNN: argument 'width' is ", options_.width(),
                ", expected at least 1");
    reset();
  }

  /// Builds the layers (Cloneable: clone() calls it on the copy, then copies the parameters).
  void reset() override {
    const int64_t w = options_.width();
    c1_ = register_module("c1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, w, 3).padding(1)));
    c2_ = register_module("c2", torch::nn::Conv2d(torch::nn::Conv2dOptions(w, 2 * w, 3).padding(1)));
    fc_ = register_module("fc", torch::nn::Linear(2 * w * 7 * 7, options_.num_classes()));
  }

  /// The outputs of the two convolutional stages, by name.
  std::map<std::string, torch::Tensor> features(const torch::Tensor& x) {
    TORCH_CHECK(x.dim() == 4 && x.size(1) == 1 && x.size(2) == 28 && x.size(3) == 28,
                "ardent::models::SmallCNN: argument 'x' has shape ", x.sizes(), ", expected [B, 1, 28, 28]");
    // relu(max_pool(z)) = max_pool(relu(z)) (relu is monotone), on a quarter of the elements.
    auto stage1 = torch::relu(torch::max_pool2d(c1_->forward(x), 2));
    auto stage2 = torch::relu(torch::max_pool2d(c2_->forward(stage1), 2));
    return {{"stage1", stage1}, {"stage2", stage2}};
  }

  torch::Tensor forward(const torch::Tensor& x) { return fc_->forward(features(x).at("stage2").flatten(1)); }

  const SmallCNNOptions& options() const { return options_; }

 private:
  SmallCNNOptions options_;
  torch::nn::Conv2d c1_{nullptr};
  torch::nn::Conv2d c2_{nullptr};
  torch::nn::Linear fc_{nullptr};
};

TORCH_MODULE(SmallCNN);

}  // namespace ardent::models
