#pragma once
// deploy::quantize: post-training static quantization (PyTorch's eager-mode recipe, Krishnamoorthi,
// "Quantizing deep convolutional networks for efficient inference", 2018): BatchNorm folded into the
// convolutions, int8 weights (per output channel by default), uint8 activations whose ranges are
// observed while the float network runs on the calibration images, executed by LibTorch's quantized
// kernels (Int8Model).

#include "ardent/core/model.hpp"
#include "ardent/deploy/graph.hpp"
#include "ardent/deploy/int8_model.hpp"
#include "ardent/deploy/lower.hpp"
#include "ardent/deploy/observer.hpp"
#include "ardent/deploy/options.hpp"

#include <torch/torch.h>

#include <type_traits>

namespace ardent::deploy {

namespace detail {

inline void check_calibration_images(const torch::Tensor& images, const char* fn) {
  TORCH_CHECK(images.defined() && images.dim() == 4 && images.size(0) >= 1 && images.is_floating_point(), fn,
              ": argument 'calibration_images' has shape ", images.defined() ? images.sizes() : c10::IntArrayRef{},
              ", expected float images [N >= 1, C, H, W]");
}

/// The activation grid of every value from observed ranges; pooling and flattening keep their input's.
inline std::vector<QParams> activation_grids(const Graph& graph, const std::vector<std::pair<double, double>>& ranges,
                                             bool reduce_range) {
  std::vector<QParams> grids(static_cast<std::size_t>(graph.values()));
  grids[0] = qparams_of_range(ranges[0].first, ranges[0].second, reduce_range);
  for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
    grids[i + 1] = requantizes(graph.nodes[i])
                       ? qparams_of_range(ranges[i + 1].first, ranges[i + 1].second, reduce_range)
                       : grids[static_cast<std::size_t>(inputs_of(graph.nodes[i])[0])];
  }
  return grids;
}

}  // namespace detail

/// The activation ranges of every value of `graph` over the calibration images.
inline std::vector<std::pair<double, double>> observe_ranges(const Graph& graph, const torch::Tensor& images,
                                                             const QuantizeOptions& options) {
  detail::check_calibration_images(images, "ardent::deploy::observe_ranges");
  TORCH_CHECK(options.calibration_batch_size() >= 1,
              "ardent::deploy::QuantizeOptions: argument "
              "'calibration_batch_size' is ",
              options.calibration_batch_size(), ", expected at least 1");
  torch::NoGradGuard no_grad;
  RangeObserver observer(graph.values(), options);
  for (int64_t start = 0; start < images.size(0); start += options.calibration_batch_size()) {
    const auto chunk = images.slice(0, start, start + options.calibration_batch_size()).to(torch::kFloat32);
    const auto count = static_cast<double>(chunk.size(0));
    run(
        graph, chunk, [](int64_t, const torch::Tensor& w) { return w; },
        [&](int64_t v, torch::Tensor t) {
          observer.observe(v, t, count);
          return t;
        });
  }
  std::vector<std::pair<double, double>> ranges;
  for (int64_t v = 0; v < graph.values(); ++v) ranges.push_back(observer.range(v));
  return ranges;
}

/// An Int8Model of `graph` with the given activation ranges (one per value).
inline Int8Model quantize_graph(Graph graph, const std::vector<std::pair<double, double>>& ranges,
                                const QuantizeOptions& options) {
  TORCH_CHECK(static_cast<int64_t>(ranges.size()) == graph.values(),
              "ardent::deploy::quantize_graph: argument "
              "'ranges' has ",
              ranges.size(), " entries, expected one per value (", graph.values(), ")");
  parse_engine(options.engine());
  Int8Program program;
  program.engine = options.engine();
  program.activations = detail::activation_grids(graph, ranges, options.reduce_range());
  program.weights.resize(graph.nodes.size());
  for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
    std::visit(
        [&](auto& n) {
          if constexpr (requires { n.weight; }) {
            program.weights[i] = quantize_weight(n.weight, options.per_channel());
            n.weight = program.weights[i].dequantized();
            n.bias = n.bias.detach().to(torch::kFloat32);
          }
          if constexpr (requires { n.shift; }) {
            n.scale = n.scale.detach().to(torch::kFloat32).contiguous();
            n.shift = n.shift.detach().to(torch::kFloat32).contiguous();
          }
        },
        graph.nodes[i]);
  }
  program.graph = std::move(graph);
  return Int8Model(std::move(program));
}

/// Post-training static quantization of `model` (see the file's comment); the model is not changed.
template <Quantizable M>
Int8Model quantize(M& model, const torch::Tensor& calibration_images, QuantizeOptions options = {}) {
  detail::check_calibration_images(calibration_images, "ardent::deploy::quantize");
  parse_engine(options.engine());
  auto graph = to_graph(model);
  graph.input_shape = calibration_images.sizes().slice(1).vec();
  const auto ranges = observe_ranges(graph, calibration_images, options);
  return quantize_graph(std::move(graph), ranges, options);
}

template <typename M>
inline constexpr bool always_false = false;

/// A model ardent::deploy does not know how to quantize: refused at compile time.
template <typename M>
requires(!Quantizable<M>) Int8Model quantize(M&, const torch::Tensor&, QuantizeOptions = {}) {
  static_assert(
      always_false<M>,
      "ardent::deploy::quantize: this model type has no ardent::deploy::to_graph overload; supported: "
      "ardent::models::SmallCNN, MobileNetV2, ResNet18, WideResNet, a torch::nn::Sequential of Conv2d/BatchNorm2d/"
      "ReLU/ReLU6/MaxPool2d/AdaptiveAvgPool2d/Flatten/Linear, and deploy::QuantizationAware");
  return Int8Model(nullptr);
}

}  // namespace ardent::deploy
