#pragma once
// deploy::to_graph(model): a network as the layer list of graph.hpp, BatchNorm folded into the
// convolution before it (models/conv_bn.hpp gives the formula). Overloads exist for ardent's SmallCNN,
// MobileNetV2, ResNet18 and WideResNet, and for a torch::nn::Sequential of Conv2d, BatchNorm2d, ReLU,
// ReLU6, MaxPool2d, AdaptiveAvgPool2d(1), Flatten and Linear - a user's model composed of those
// layers. Any other layer in a Sequential is refused by name at the call; a model type without an
// overload is refused at compile time (deploy::Quantizable).

#include "ardent/deploy/graph.hpp"
#include "ardent/models/conv_bn.hpp"
#include "ardent/models/mobilenet_v2.hpp"
#include "ardent/models/resnet.hpp"
#include "ardent/models/small_cnn.hpp"
#include "ardent/models/wide_resnet.hpp"

#include <torch/torch.h>

#include <string>

namespace ardent::deploy {
namespace detail {

template <typename Impl>
Impl& child(torch::nn::Module& parent, const std::string& name) {
  const auto children = parent.named_children();  // a copy: find points into it
  const auto* found = children.find(name);
  TORCH_CHECK(found != nullptr, "ardent::deploy::to_graph: the ", parent.name(), " has no layer '", name, "'");
  auto* impl = (*found)->template as<Impl>();
  TORCH_CHECK(impl != nullptr, "ardent::deploy::to_graph: layer '", name, "' of the ", parent.name(), " is a ",
              (*found)->name(), ", expected another type");
  return *impl;
}

/// The Conv node of conv (then bn, if given; in eval mode), reading value `input`.
inline Conv conv_node(const torch::nn::Conv2dImpl& conv, const torch::nn::BatchNorm2dImpl* bn, Clamp clamp,
                      int64_t input) {
  const auto& o = conv.options;
  TORCH_CHECK(c10::holds_alternative<torch::ExpandingArray<2>>(o.padding()) &&
                  c10::holds_alternative<torch::enumtype::kZeros>(o.padding_mode()) && !o.transposed(),
              "ardent::deploy::to_graph: a Conv2d with 'same'/'valid' padding, a padding mode other than zeros or "
              "transposed cannot be quantized; expected explicit zero padding");
  torch::NoGradGuard no_grad;
  Conv node;
  node.input = input;
  if (bn != nullptr) {
    auto folded = models::fold_batch_norm(conv, *bn);
    node.weight = folded.weight.detach();
    node.bias = folded.bias.detach();
  } else {
    node.weight = conv.weight.detach().clone();
    node.bias = conv.bias.defined() ? conv.bias.detach().clone()
                                    : torch::zeros({conv.weight.size(0)}, conv.weight.options());
  }
  const auto& padding = c10::get<torch::ExpandingArray<2>>(o.padding());
  node.stride = c10::IntArrayRef(o.stride()).vec();
  node.padding = c10::IntArrayRef(padding).vec();
  node.dilation = c10::IntArrayRef(o.dilation()).vec();
  node.groups = o.groups();
  node.clamp = clamp;
  return node;
}

/// The BatchNorm node of an eval-mode bn that follows no convolution, reading value `input`.
inline BatchNorm batch_norm_node(const torch::nn::BatchNorm2dImpl& bn, Clamp clamp, int64_t input) {
  torch::NoGradGuard no_grad;
  const auto [scale, shift] = models::batch_norm_affine(bn);
  return {input, scale.detach(), shift.detach(), clamp};
}

inline Linear linear_node(const torch::nn::LinearImpl& linear, Clamp clamp, int64_t input) {
  torch::NoGradGuard no_grad;
  Linear node;
  node.input = input;
  node.weight = linear.weight.detach().clone();
  node.bias = linear.bias.defined() ? linear.bias.detach().clone() : torch::zeros({linear.weight.size(0)});
  node.clamp = clamp;
  return node;
}

/// conv then bn of a Sequential(Conv2d, BatchNorm2d) (the residual blocks' projection shortcuts).
inline Conv shortcut_node(torch::nn::Module& pair, int64_t input) {
  return conv_node(child<torch::nn::Conv2dImpl>(pair, "0"), &child<torch::nn::BatchNorm2dImpl>(pair, "1"),
                   Clamp::none(), input);
}

inline bool has_child(torch::nn::Module& parent, const std::string& name) {
  return parent.named_children().contains(name);
}

}  // namespace detail

/// SmallCNN: Conv-ReLU, MaxPool, Conv-ReLU, MaxPool, Flatten, Linear (ReLU and max pooling commute).
inline Graph to_graph(models::SmallCNN& model) {
  auto& m = *model;
  Graph g;
  auto v = g.add(detail::conv_node(detail::child<torch::nn::Conv2dImpl>(m, "c1"), nullptr, Clamp::relu(), 0));
  v = g.add(MaxPool{v, 2, 2, 0});
  v = g.add(detail::conv_node(detail::child<torch::nn::Conv2dImpl>(m, "c2"), nullptr, Clamp::relu(), v));
  v = g.add(MaxPool{v, 2, 2, 0});
  v = g.add(Flatten{v});
  g.add(detail::linear_node(detail::child<torch::nn::LinearImpl>(m, "fc"), Clamp::none(), v));
  return g;
}

/// MobileNetV2 (Sandler et al. 2018, CIFAR variant): inverted residual blocks, expansion 1x1 and
/// depthwise 3x3 with ReLU, linear 1x1 projection, residual add where the stride is 1.
inline Graph to_graph(models::MobileNetV2& model) {
  namespace nn = torch::nn;
  using detail::child;
  auto& m = *model;
  Graph g;
  auto v = g.add(
      detail::conv_node(child<nn::Conv2dImpl>(m, "conv1"), &child<nn::BatchNorm2dImpl>(m, "bn1"), Clamp::relu(), 0));
  for (const auto& block_module : child<nn::SequentialImpl>(m, "layers").children()) {
    auto& block = *block_module;
    const auto x = v;
    v = g.add(detail::conv_node(child<nn::Conv2dImpl>(block, "conv1"), &child<nn::BatchNorm2dImpl>(block, "bn1"),
                                Clamp::relu(), v));
    auto& depthwise = child<nn::Conv2dImpl>(block, "conv2");
    v = g.add(detail::conv_node(depthwise, &child<nn::BatchNorm2dImpl>(block, "bn2"), Clamp::relu(), v));
    v = g.add(detail::conv_node(child<nn::Conv2dImpl>(block, "conv3"), &child<nn::BatchNorm2dImpl>(block, "bn3"),
                                Clamp::none(), v));
    if (depthwise.options.stride()->at(0) == 1) {
      const auto skip = detail::has_child(block, "shortcut")
                            ? g.add(detail::shortcut_node(child<nn::SequentialImpl>(block, "shortcut"), x))
                            : x;
      v = g.add(Add{v, skip, Clamp::none()});
    }
  }
  v = g.add(
      detail::conv_node(child<nn::Conv2dImpl>(m, "conv2"), &child<nn::BatchNorm2dImpl>(m, "bn2"), Clamp::relu(), v));
  v = g.add(GlobalAvgPool{v});
  g.add(detail::linear_node(child<nn::LinearImpl>(m, "linear"), Clamp::none(), v));
  return g;
}

/// ResNet18 (He et al. 2016, CIFAR variant): basic blocks relu(bn(conv(relu(bn(conv x)))) + shortcut x).
inline Graph to_graph(models::ResNet18& model) {
  namespace nn = torch::nn;
  using detail::child;
  auto& m = *model;
  Graph g;
  auto v = g.add(
      detail::conv_node(child<nn::Conv2dImpl>(m, "conv1"), &child<nn::BatchNorm2dImpl>(m, "bn1"), Clamp::relu(), 0));
  for (int layer = 1; layer <= 4; ++layer) {
    for (const auto& block_module : child<nn::SequentialImpl>(m, "layer" + std::to_string(layer)).children()) {
      auto& block = *block_module;
      const auto x = v;
      v = g.add(detail::conv_node(child<nn::Conv2dImpl>(block, "conv1"), &child<nn::BatchNorm2dImpl>(block, "bn1"),
                                  Clamp::relu(), v));
      v = g.add(detail::conv_node(child<nn::Conv2dImpl>(block, "conv2"), &child<nn::BatchNorm2dImpl>(block, "bn2"),
                                  Clamp::none(), v));
      const auto skip = detail::has_child(block, "shortcut")
                            ? g.add(detail::shortcut_node(child<nn::SequentialImpl>(block, "shortcut"), x))
                            : x;
      v = g.add(Add{v, skip, Clamp::relu()});
    }
  }
  v = g.add(GlobalAvgPool{v});
  g.add(detail::linear_node(child<nn::LinearImpl>(m, "linear"), Clamp::none(), v));
  return g;
}

/// WideResNet (Zagoruyko and Komodakis 2016, the TRADES pre-activation form): a block computes
/// a = relu(bn1(x)), out = conv2(relu(bn2(conv1(a)))) and returns out + x, or out + convShortcut(a)
/// where the widths differ. bn2 folds into conv1; bn1, which reads the residual sum, is a BatchNorm
/// layer (so is the final bn1 before the pooling). Dropout is the identity in eval mode.
inline Graph to_graph(models::WideResNet& model) {
  namespace nn = torch::nn;
  using detail::child;
  auto& m = *model;
  Graph g;
  auto v = g.add(detail::conv_node(child<nn::Conv2dImpl>(m, "conv1"), nullptr, Clamp::none(), 0));
  for (const char* group : {"block1", "block2", "block3"}) {
    auto& blocks = child<nn::SequentialImpl>(child<models::WideResNetGroupImpl>(m, group), "layer");
    for (const auto& block_module : blocks.children()) {
      auto& block = *block_module;
      const auto x = v;
      const auto a = g.add(detail::batch_norm_node(child<nn::BatchNorm2dImpl>(block, "bn1"), Clamp::relu(), x));
      v = g.add(detail::conv_node(child<nn::Conv2dImpl>(block, "conv1"), &child<nn::BatchNorm2dImpl>(block, "bn2"),
                                  Clamp::relu(), a));
      v = g.add(detail::conv_node(child<nn::Conv2dImpl>(block, "conv2"), nullptr, Clamp::none(), v));
      const auto skip = detail::has_child(block, "convShortcut")
                            ? g.add(detail::conv_node(child<nn::Conv2dImpl>(block, "convShortcut"), nullptr,
                                                      Clamp::none(), a))
                            : x;
      v = g.add(Add{v, skip, Clamp::none()});
    }
  }
  v = g.add(detail::batch_norm_node(child<nn::BatchNorm2dImpl>(m, "bn1"), Clamp::relu(), v));
  v = g.add(GlobalAvgPool{v});  // avg_pool2d(8) of the 8x8 map: the global mean
  g.add(detail::linear_node(child<nn::LinearImpl>(m, "fc"), Clamp::none(), v));
  return g;
}

/// A user's Sequential of Conv2d, BatchNorm2d, ReLU, ReLU6, MaxPool2d, AdaptiveAvgPool2d(1), Flatten,
/// Linear (the input shape is taken from the calibration images).
inline Graph to_graph(torch::nn::Sequential& model) {
  namespace nn = torch::nn;
  Graph g;
  int64_t v = 0;
  const auto layers = model->named_children();
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const auto& name = layers[i].key();
    auto& layer = *layers[i].value();
    auto* last = g.nodes.empty() || v != static_cast<int64_t>(g.nodes.size()) ? nullptr : &g.nodes.back();
    auto* last_conv = last != nullptr ? std::get_if<Conv>(last) : nullptr;
    auto* last_linear = last != nullptr ? std::get_if<Linear>(last) : nullptr;
    auto* last_bn = last != nullptr ? std::get_if<BatchNorm>(last) : nullptr;
    auto fuse = [&](Clamp clamp, const char* what) {
      Clamp* target = last_conv != nullptr     ? &last_conv->clamp
                      : last_linear != nullptr ? &last_linear->clamp
                      : last_bn != nullptr     ? &last_bn->clamp
                                               : nullptr;
      TORCH_CHECK(target != nullptr && !target->clamps(), "ardent::deploy::to_graph: layer '", name, "' (", what,
                  ") of the Sequential follows no Conv2d, BatchNorm2d or Linear; ardent::deploy quantizes an "
                  "activation only right after one of those");
      *target = clamp;
    };
    if (auto* conv = layer.as<nn::Conv2dImpl>()) {
      const nn::BatchNorm2dImpl* bn = nullptr;
      if (i + 1 < layers.size()) bn = layers[i + 1].value()->as<nn::BatchNorm2dImpl>();
      v = g.add(detail::conv_node(*conv, bn, Clamp::none(), v));
      if (bn != nullptr) ++i;
    } else if (auto* bn = layer.as<nn::BatchNorm2dImpl>()) {  // one that follows no Conv2d
      v = g.add(detail::batch_norm_node(*bn, Clamp::none(), v));
    } else if (layer.as<nn::ReLUImpl>() != nullptr) {
      fuse(Clamp::relu(), "ReLU");
    } else if (layer.as<nn::ReLU6Impl>() != nullptr) {
      fuse(Clamp::relu6(), "ReLU6");
    } else if (auto* pool = layer.as<nn::MaxPool2dImpl>()) {
      const auto& o = pool->options;
      TORCH_CHECK(o.kernel_size()->at(0) == o.kernel_size()->at(1) && o.stride()->at(0) == o.stride()->at(1) &&
                      o.padding()->at(0) == o.padding()->at(1) && o.dilation()->at(0) == 1 && !o.ceil_mode(),
                  "ardent::deploy::to_graph: layer '", name,
                  "' (MaxPool2d) has a non-square window, dilation or ceil_mode; expected a square window");
      v = g.add(MaxPool{v, o.kernel_size()->at(0), o.stride()->at(0), o.padding()->at(0)});
    } else if (auto* avg = layer.as<nn::AdaptiveAvgPool2dImpl>()) {
      const auto& size = avg->options.output_size();
      TORCH_CHECK(size->at(0) == 1 && size->at(1) == 1, "ardent::deploy::to_graph: layer '", name,
                  "' (AdaptiveAvgPool2d) has another output size than 1x1; expected global average pooling");
      v = g.add(GlobalAvgPool{v});
      // GlobalAvgPool already flattens; a following Flatten is a no-op.
      if (i + 1 < layers.size() && layers[i + 1].value()->as<nn::FlattenImpl>() != nullptr) ++i;
    } else if (layer.as<nn::FlattenImpl>() != nullptr) {
      v = g.add(Flatten{v});
    } else if (auto* linear = layer.as<nn::LinearImpl>()) {
      v = g.add(detail::linear_node(*linear, Clamp::none(), v));
    } else {
      TORCH_CHECK(false, "ardent::deploy::to_graph: layer '", name, "' of the Sequential is a ", layer.name(),
                  ", which ardent::deploy cannot quantize; supported: Conv2d, BatchNorm2d, ReLU, "
                  "ReLU6, MaxPool2d, AdaptiveAvgPool2d(1), Flatten, Linear");
    }
  }
  TORCH_CHECK(!g.nodes.empty(), "ardent::deploy::to_graph: argument 'model' is an empty Sequential");
  return g;
}

/// A model deploy::quantize and deploy::quantization_aware accept: one with a to_graph overload.
template <typename M>
concept Quantizable = requires(M& model) {
  { to_graph(model) } -> std::same_as<Graph>;
};

static_assert(Quantizable<models::SmallCNN>);
static_assert(Quantizable<models::MobileNetV2>);
static_assert(Quantizable<models::ResNet18>);
static_assert(Quantizable<models::WideResNet>);
static_assert(Quantizable<torch::nn::Sequential>);

}  // namespace ardent::deploy
