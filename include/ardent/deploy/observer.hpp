#pragma once
// Quantization parameters: activation ranges observed on calibration images (uint8, per tensor,
// affine) and weights (int8, symmetric, per output channel or per tensor), as PyTorch's eager-mode
// observers compute them (MinMaxObserver, PerChannelMinMaxObserver):
//   activations: the range is widened to contain 0, scale = (hi - lo) / (q_max - q_min),
//                zero_point = -round(lo / scale), clamped to [0, q_max];
//   weights:     scale = max|w| / ((127 - (-128)) / 2), zero_point = 0, q in [-128, 127].

#include "ardent/deploy/graph.hpp"
#include "ardent/deploy/options.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace ardent::deploy {

/// The uint8 grid of one activation: r = scale (q - zero_point).
/// The kernels saturate at [0, 255] whatever the grid; reduce_range only halves the levels the
/// observed range is spread over.
struct QParams {
  double scale = 1.0;
  int64_t zero_point = 0;
};

/// The smallest scale: a constant activation still gets a grid.
inline constexpr double kMinScale = 1.1920928955078125e-07;  // float32 epsilon, PyTorch's observers' eps

/// The grid of the range [lo, hi] (widened to contain 0).
inline QParams qparams_of_range(double lo, double hi, bool reduce_range) {
  TORCH_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, "ardent::deploy::qparams_of_range: range [", lo, ", ",
              hi, "] is not a finite interval");
  const int64_t q_max = reduce_range ? 127 : 255;
  QParams q;
  lo = std::min(lo, 0.0);
  hi = std::max(hi, 0.0);
  q.scale = std::max((hi - lo) / static_cast<double>(q_max), kMinScale);
  // The grid is stored as float32 by the kernels and ONNX: round the scale there once.
  q.scale = static_cast<double>(static_cast<float>(q.scale));
  q.zero_point = std::clamp<int64_t>(-static_cast<int64_t>(std::nearbyint(lo / q.scale)), 0, q_max);
  return q;
}

/// The range a batch of values shows to an observer: [min, max], or the percentiles
/// (100 - p, p) of its values (estimated on at most 2^20 of them, evenly strided).
inline std::pair<double, double> batch_range(const torch::Tensor& values, const QuantizeOptions& options) {
  torch::NoGradGuard no_grad;
  auto flat = values.detach().reshape({-1}).to(torch::kFloat32);
  if (options.observer() == Observer::MinMax) {
    return {flat.min().item<double>(), flat.max().item<double>()};
  }
  const double p = options.percentile();
  TORCH_CHECK(p > 50.0 && p <= 100.0, "ardent::deploy::QuantizeOptions: argument 'percentile' is ", p,
              ", expected a value in (50, 100]");
  constexpr int64_t kMaxSample = int64_t{1} << 20;
  if (flat.numel() > kMaxSample) flat = flat.slice(0, 0, flat.numel(), (flat.numel() + kMaxSample - 1) / kMaxSample);
  auto q = torch::quantile(flat, torch::tensor({(100.0 - p) / 100.0, p / 100.0}, flat.options()));
  return {q[0].item<double>(), q[1].item<double>()};
}

/// Running ranges of every value of a graph over the calibration chunks: MinMax keeps the extremes,
/// Percentile averages the chunks' percentiles, weighted by their sizes.
class RangeObserver {
 public:
  RangeObserver(int64_t values, QuantizeOptions options)
      : options_(std::move(options)), lo_(values, 0.0), hi_(values, 0.0), weight_(values, 0.0) {}

  void observe(int64_t value, const torch::Tensor& t, double images) {
    const auto [lo, hi] = batch_range(t, options_);
    auto& w = weight_[value];
    if (options_.observer() == Observer::MinMax) {
      lo_[value] = w == 0.0 ? lo : std::min(lo_[value], lo);
      hi_[value] = w == 0.0 ? hi : std::max(hi_[value], hi);
    } else {
      lo_[value] = (lo_[value] * w + lo * images) / (w + images);
      hi_[value] = (hi_[value] * w + hi * images) / (w + images);
    }
    w += images;
  }

  bool seen(int64_t value) const { return weight_[value] > 0.0; }
  std::pair<double, double> range(int64_t value) const { return {lo_[value], hi_[value]}; }

 private:
  QuantizeOptions options_;
  std::vector<double> lo_, hi_, weight_;
};

/// An int8 weight: values (int8), one scale per output channel (axis 0) or one for the tensor, zero
/// point 0.
struct QuantizedWeight {
  torch::Tensor values;  // int8, the weight's shape
  torch::Tensor scales;  // float64 [out] per channel, [1] per tensor
  bool per_channel = true;

  /// The quantized tensor LibTorch's kernels take (qint8).
  torch::Tensor quantized() const {
    if (per_channel) {
      return at::_make_per_channel_quantized_tensor(values, scales, torch::zeros({scales.size(0)}, torch::kLong), 0);
    }
    return at::_make_per_tensor_quantized_tensor(values, scales.item<double>(), 0);
  }

  /// scale * q, in float32: the weight the int8 model computes with.
  torch::Tensor dequantized() const {
    auto shape = std::vector<int64_t>(static_cast<std::size_t>(values.dim()), 1);
    shape[0] = per_channel ? scales.size(0) : 1;
    return (values.to(torch::kFloat32) * scales.to(torch::kFloat32).reshape(shape));
  }
};

/// The symmetric per-channel (or per-tensor) scales of weight w: max|w| / 127.5 (float32-rounded).
inline torch::Tensor weight_scales(const torch::Tensor& w, bool per_channel) {
  torch::NoGradGuard no_grad;
  auto amax = per_channel ? w.detach().abs().reshape({w.size(0), -1}).amax(1) : w.detach().abs().max().reshape({1});
  return (amax.to(torch::kFloat64) / 127.5).clamp_min(kMinScale).to(torch::kFloat32).to(torch::kFloat64);
}

inline QuantizedWeight quantize_weight(const torch::Tensor& w, bool per_channel) {
  torch::NoGradGuard no_grad;
  QuantizedWeight q;
  q.per_channel = per_channel;
  q.scales = weight_scales(w, per_channel);
  auto shape = std::vector<int64_t>(static_cast<std::size_t>(w.dim()), 1);
  shape[0] = per_channel ? w.size(0) : 1;
  q.values = torch::round(w.detach().to(torch::kFloat64) / q.scales.reshape(shape)).clamp(-128, 127).to(torch::kInt8);
  return q;
}

/// The engine argument as LibTorch's enum, checked against the engines this LibTorch carries.
inline at::QEngine parse_engine(const std::string& engine) {
  at::QEngine parsed = at::QEngine::NoQEngine;
  if (engine == "qnnpack") parsed = at::kQNNPACK;
  if (engine == "onednn") parsed = at::kONEDNN;
  const auto& supported = at::globalContext().supportedQEngines();
  TORCH_CHECK(
      parsed != at::QEngine::NoQEngine && std::find(supported.begin(), supported.end(), parsed) != supported.end(),
      "ardent::deploy::QuantizeOptions: argument 'engine' is \"", engine,
      "\", expected \"qnnpack\" or \"onednn\" supported by this LibTorch");
  return parsed;
}

/// Selects a quantized engine for the lifetime of the guard, then restores the host's.
class QEngineGuard {
 public:
  explicit QEngineGuard(at::QEngine engine) : previous_(at::globalContext().qEngine()) {
    at::globalContext().setQEngine(engine);
  }
  ~QEngineGuard() { at::globalContext().setQEngine(previous_); }
  QEngineGuard(const QEngineGuard&) = delete;
  QEngineGuard& operator=(const QEngineGuard&) = delete;

 private:
  at::QEngine previous_;
};

}  // namespace ardent::deploy
