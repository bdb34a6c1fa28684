#pragma once
// deploy::quantization_aware: the network with fake-quantized weights and activations, trained as
// an ordinary float model (Jacob et al. 2018; PyTorch's eager-mode QAT). Every weight is rounded to
// its int8 grid and every activation to its uint8 grid in the forward pass,
//   fq(r) = scale (clamp(round(r / scale) + zero_point, q_min, q_max) - zero_point),
// and the backward pass is straight-through (Bengio et al. 2013): for activations d fq(r) / dr = 1 where
// r lies inside the grid's range, 0 where it saturates (ATen's fake_quantize_per_tensor_affine); for
// weights, whose symmetric grid covers them all, d fq(w) / dw = 1.
// In training mode the activation ranges follow the batches as a moving average (PyTorch's
// MovingAverageMinMaxObserver), range <- (1 - c) range + c batch_range; in eval mode they are fixed.
// BatchNorm is folded into the convolutions when the model is built (its statistics are frozen; the
// folded weights train); one that follows no convolution becomes its per-channel affine map, which
// trains in float (it has no int8 weight). The module is an ardent::Model, so it is the student of a Distiller or an
// AdversarialTrainer as it is; deploy::quantize of it uses the learned ranges.

#include "ardent/core/model.hpp"
#include "ardent/deploy/graph.hpp"
#include "ardent/deploy/int8_model.hpp"
#include "ardent/deploy/lower.hpp"
#include "ardent/deploy/observer.hpp"
#include "ardent/deploy/options.hpp"
#include "ardent/deploy/quantize.hpp"

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace ardent::deploy {

class QuantizationAwareImpl : public torch::nn::Module {
 public:
  /// `ranges`: the starting activation range of every value (observed on calibration images).
  QuantizationAwareImpl(Graph graph, const std::vector<std::pair<double, double>>& ranges, QuantizeOptions options)
      : torch::nn::Module("ardent::deploy::QuantizationAware"), graph_(std::move(graph)), options_(std::move(options)) {
    TORCH_CHECK(static_cast<int64_t>(ranges.size()) == graph_.values(),
                "ardent::deploy::QuantizationAware: argument "
                "'ranges' has ",
                ranges.size(), " entries, expected one per value (", graph_.values(), ")");
    TORCH_CHECK(options_.averaging_constant() > 0 && options_.averaging_constant() <= 1,
                "ardent::deploy::QuantizeOptions: argument 'averaging_constant' is ", options_.averaging_constant(),
                ", expected a value in (0, 1]");
    for (std::size_t i = 0; i < graph_.nodes.size(); ++i) {
      std::visit(
          [&](auto& n) {
            const auto key = "layer" + std::to_string(i);
            if constexpr (requires { n.weight; }) {
              n.weight = register_parameter(key + "_weight", n.weight.detach().clone().to(torch::kFloat32));
              n.bias = register_parameter(key + "_bias", n.bias.detach().clone().to(torch::kFloat32));
            }
            if constexpr (requires { n.shift; }) {  // a BatchNorm layer: its affine map trains, in float
              n.scale = register_parameter(key + "_scale", n.scale.detach().clone().to(torch::kFloat32));
              n.shift = register_parameter(key + "_shift", n.shift.detach().clone().to(torch::kFloat32));
            }
          },
          graph_.nodes[i]);
    }
    auto r = torch::empty({graph_.values(), 2}, torch::kFloat64);
    for (int64_t v = 0; v < graph_.values(); ++v) {
      r[v][0] = ranges[static_cast<std::size_t>(v)].first;
      r[v][1] = ranges[static_cast<std::size_t>(v)].second;
    }
    ranges_ = register_buffer("ranges", r);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    const bool update = is_training();
    std::vector<QParams> grids(static_cast<std::size_t>(graph_.values()));
    return run(
        graph_, x, [this](int64_t, const torch::Tensor& w) { return fake_quantize_weight(w); },
        [&](int64_t v, const torch::Tensor& t) {
          const auto index = static_cast<std::size_t>(v);
          if (v == 0 || requantizes(graph_.nodes[index - 1])) {
            if (update) observe(v, t);
            auto r = ranges_[v];
            grids[index] = qparams_of_range(r[0].item<double>(), r[1].item<double>(), options_.reduce_range());
          } else {
            grids[index] = grids[static_cast<std::size_t>(inputs_of(graph_.nodes[index - 1])[0])];
          }
          return at::fake_quantize_per_tensor_affine(t, grids[index].scale, grids[index].zero_point, 0, 255);
        });
  }

  /// The layers with their current float weights (detached copies).
  Graph graph() const {
    Graph g = graph_;
    for (auto& node : g.nodes) {
      std::visit(
          [](auto& n) {
            if constexpr (requires { n.weight; }) {
              n.weight = n.weight.detach().clone();
              n.bias = n.bias.detach().clone();
            }
            if constexpr (requires { n.shift; }) {
              n.scale = n.scale.detach().clone();
              n.shift = n.shift.detach().clone();
            }
          },
          node);
    }
    return g;
  }

  /// The current activation range of every value.
  std::vector<std::pair<double, double>> ranges() const {
    std::vector<std::pair<double, double>> out;
    for (int64_t v = 0; v < graph_.values(); ++v)
      out.emplace_back(ranges_[v][0].item<double>(), ranges_[v][1].item<double>());
    return out;
  }

  const QuantizeOptions& options() const { return options_; }

 private:
  // The int8 weight the quantized model will hold, with the identity's gradient: w + (fq(w) - w) held
  // constant. (ATen's fake_quantize_per_channel_affine would give the largest weight of each channel,
  // which rounds to 128 before the clamp to 127, no gradient at all.)
  torch::Tensor fake_quantize_weight(const torch::Tensor& w) const {
    const auto rounded = quantize_weight(w, options_.per_channel()).dequantized().to(w.dtype());
    return w + (rounded - w).detach();
  }

  void observe(int64_t v, const torch::Tensor& t) {
    torch::NoGradGuard no_grad;
    const auto [lo, hi] = batch_range(t, options_);
    const double c = options_.averaging_constant();
    auto r = ranges_[v];
    r[0] = (1 - c) * r[0].item<double>() + c * lo;
    r[1] = (1 - c) * r[1].item<double>() + c * hi;
  }

  Graph graph_;
  QuantizeOptions options_;
  torch::Tensor ranges_;
};

TORCH_MODULE(QuantizationAware);

static_assert(ardent::Model<QuantizationAware>);

/// The quantization-aware twin of `student`, its activation ranges started from the calibration images.
template <Quantizable M>
QuantizationAware quantization_aware(M& student, const torch::Tensor& calibration_images,
                                     QuantizeOptions options = {}) {
  detail::check_calibration_images(calibration_images, "ardent::deploy::quantization_aware");
  parse_engine(options.engine());
  auto graph = to_graph(student);
  graph.input_shape = calibration_images.sizes().slice(1).vec();
  const auto ranges = observe_ranges(graph, calibration_images, options);
  return QuantizationAware(std::move(graph), ranges, std::move(options));
}

/// The int8 network a quantization-aware model trained: its weights and its learned ranges (the
/// calibration images are not used; the engine comes from `options`, the weight granularity and the
/// grid from the options the model was built with).
inline Int8Model quantize(QuantizationAware& model, const torch::Tensor& /*calibration_images*/,
                          QuantizeOptions options = {}) {
  auto trained = model->options();
  trained.engine(options.engine());
  return quantize_graph(model->graph(), model->ranges(), trained);
}

}  // namespace ardent::deploy
