#pragma once
// The network as ardent::deploy sees it: a list of layers in execution order, each reading earlier
// values by index (value 0 is the input image batch, value i + 1 the output of layer i, the last value
// the logits). BatchNorm is already folded into the convolution before it (eval mode):
//   bn(conv(x)) = (s w) * x + (s (b - mean) + beta),   s = gamma / sqrt(var + eps);
// a BatchNorm that follows no convolution (the pre-activation blocks of a WideResNet) is a layer of
// its own, the per-channel affine map y = s x + (beta - s mean);
// and an activation after a layer is part of the layer (ReLU = clamp at [0, inf), ReLU6 = [0, 6]), so
// the int8 kernels fuse it and quantize the activation's output, not its input.
//
// The same graph runs in float (calibration), with fake quantization (quantization-aware training,
// the dequantized reference), in int8 (Int8Model) and is written to ONNX.

#include <torch/torch.h>

#include <cstdint>
#include <limits>
#include <string>
#include <variant>
#include <vector>

namespace ardent::deploy {

/// The activation fused after a layer: y = clamp(z, lo, hi).
struct Clamp {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  static Clamp none() { return {}; }
  static Clamp relu() { return {0.0, std::numeric_limits<double>::infinity()}; }
  static Clamp relu6() { return {0.0, 6.0}; }
  bool clamps() const {
    return lo > -std::numeric_limits<double>::infinity() || hi < std::numeric_limits<double>::infinity();
  }
  torch::Tensor apply(const torch::Tensor& z) const {
    if (!clamps()) return z;
    if (hi == std::numeric_limits<double>::infinity()) return torch::clamp_min(z, lo);
    return torch::clamp(z, lo, hi);
  }
};

/// A 2-d convolution (BatchNorm folded in), then its activation.
struct Conv {
  static constexpr const char* kind = "Conv";
  int64_t input = 0;
  torch::Tensor weight;  // [out, in / groups, kh, kw]
  torch::Tensor bias;    // [out]
  std::vector<int64_t> stride{1, 1};
  std::vector<int64_t> padding{0, 0};
  std::vector<int64_t> dilation{1, 1};
  int64_t groups = 1;
  Clamp clamp;
};

/// y = x W^T + b on [B, features], then its activation.
struct Linear {
  static constexpr const char* kind = "Linear";
  int64_t input = 0;
  torch::Tensor weight;  // [out, in]
  torch::Tensor bias;    // [out]
  Clamp clamp;
};

/// Max pooling over square windows.
struct MaxPool {
  static constexpr const char* kind = "MaxPool";
  int64_t input = 0;
  int64_t kernel = 2;
  int64_t stride = 2;
  int64_t padding = 0;
};

/// The sum of two values of the same shape (a residual connection), then its activation.
struct Add {
  static constexpr const char* kind = "Add";
  int64_t a = 0;
  int64_t b = 0;
  Clamp clamp;
};

/// An eval-mode BatchNorm that follows no convolution, y = scale x + shift per channel, then its
/// activation.
struct BatchNorm {
  static constexpr const char* kind = "BatchNorm";
  int64_t input = 0;
  torch::Tensor scale;  // [C]
  torch::Tensor shift;  // [C]
  Clamp clamp;
};

/// The mean over the spatial dimensions: [B, C, H, W] -> [B, C].
struct GlobalAvgPool {
  static constexpr const char* kind = "GlobalAvgPool";
  int64_t input = 0;
};

/// [B, ...] -> [B, prod(...)].
struct Flatten {
  static constexpr const char* kind = "Flatten";
  int64_t input = 0;
};

// The order is the layer kind's number in save_int8's files: new kinds go at the end.
using Node = std::variant<Conv, Linear, MaxPool, Add, GlobalAvgPool, Flatten, BatchNorm>;

/// Whether a layer's output gets quantization parameters of its own; the others (pooling,
/// flattening) keep their input's grid.
inline bool requantizes(const Node& node) {
  return std::holds_alternative<Conv>(node) || std::holds_alternative<Linear>(node) ||
         std::holds_alternative<Add>(node) || std::holds_alternative<BatchNorm>(node);
}

/// The values a layer reads.
inline std::vector<int64_t> inputs_of(const Node& node) {
  if (const auto* add = std::get_if<Add>(&node)) return {add->a, add->b};
  return {std::visit(
      [](const auto& n) -> int64_t {
        if constexpr (requires { n.input; }) {
          return n.input;
        } else {
          return 0;
        }
      },
      node)};
}

inline const char* kind_of(const Node& node) {
  return std::visit([](const auto& n) { return std::decay_t<decltype(n)>::kind; }, node);
}

struct Graph {
  std::vector<Node> nodes;
  /// The shape of one input image, [C, H, W] (set from the calibration images).
  std::vector<int64_t> input_shape;

  /// Appends a layer and returns the index of its output value.
  int64_t add(Node node) {
    for (const auto v : inputs_of(node)) {
      TORCH_CHECK(v >= 0 && v <= static_cast<int64_t>(nodes.size()), "ardent::deploy::Graph: a ", kind_of(node),
                  " layer reads value ", v, ", expected an earlier value in [0, ", nodes.size(), "]");
    }
    nodes.push_back(std::move(node));
    return static_cast<int64_t>(nodes.size());
  }
  int64_t values() const { return static_cast<int64_t>(nodes.size()) + 1; }
};

/// Runs the graph in floating point. `weight(i, w)` gives the weight layer i uses in place of `w`
/// (identity, or fake-quantized); `activation(v, t)` sees every value v as it is produced and gives
/// what later layers read (identity, an observer, or fake quantization). Value 0 goes through it too.
template <typename WeightFn, typename ActivationFn>
torch::Tensor run(const Graph& graph, const torch::Tensor& x, WeightFn&& weight, ActivationFn&& activation) {
  TORCH_CHECK(!graph.nodes.empty(), "ardent::deploy::run: argument 'graph' has no layers");
  std::vector<torch::Tensor> values;
  values.reserve(graph.nodes.size() + 1);
  values.push_back(activation(int64_t{0}, x));
  for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
    const auto index = static_cast<int64_t>(i);
    auto y = std::visit(
        [&](const auto& n) -> torch::Tensor {
          using N = std::decay_t<decltype(n)>;
          if constexpr (std::is_same_v<N, Conv>) {
            return n.clamp.apply(torch::conv2d(values[n.input], weight(index, n.weight), n.bias, n.stride, n.padding,
                                               n.dilation, n.groups));
          } else if constexpr (std::is_same_v<N, Linear>) {
            return n.clamp.apply(torch::linear(values[n.input], weight(index, n.weight), n.bias));
          } else if constexpr (std::is_same_v<N, MaxPool>) {
            return torch::max_pool2d(values[n.input], n.kernel, n.stride, n.padding);
          } else if constexpr (std::is_same_v<N, Add>) {
            return n.clamp.apply(values[n.a] + values[n.b]);
          } else if constexpr (std::is_same_v<N, BatchNorm>) {
            return n.clamp.apply(values[n.input] * n.scale.reshape({1, -1, 1, 1}) + n.shift.reshape({1, -1, 1, 1}));
          } else if constexpr (std::is_same_v<N, GlobalAvgPool>) {
            return values[n.input].mean({2, 3});
          } else {
            return values[n.input].flatten(1);
          }
        },
        graph.nodes[i]);
    values.push_back(activation(index + 1, std::move(y)));
  }
  return values.back();
}

/// The graph in plain floating point.
inline torch::Tensor run_float(const Graph& graph, const torch::Tensor& x) {
  return run(
      graph, x, [](int64_t, const torch::Tensor& w) { return w; }, [](int64_t, torch::Tensor t) { return t; });
}

}  // namespace ardent::deploy
