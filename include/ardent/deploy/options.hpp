#pragma once
// Options of ardent::deploy: how a network is quantized to int8 (post-training or quantization-aware)
// and how it is exported to ONNX.
//
// Affine quantization (Jacob et al., "Quantization and Training of Neural Networks for Efficient
// Integer-Arithmetic-Only Inference", CVPR 2018): a real value r is stored as the integer
//   q = clamp(round(r / scale) + zero_point, q_min, q_max),   r ~ scale (q - zero_point).
// Activations are uint8 ([0, 255], or [0, 127] with reduce_range), per tensor, with the range observed
// on calibration images; weights are int8, symmetric (zero_point 0), per output channel or per tensor.

#include <torch/torch.h>

#include <string>

namespace ardent::deploy {

/// How an activation's range [lo, hi] is estimated from the calibration images.
enum class Observer {
  /// The smallest and largest value seen (PyTorch's MinMaxObserver).
  MinMax,
  /// The percentile(p) and percentile(100 - p) of the values, averaged over the calibration chunks:
  /// outliers no longer stretch the grid.
  Percentile,
};

struct QuantizeOptions {
  /// LibTorch's quantized engine the int8 model runs on: "qnnpack" (ARM phones; slow on x86) or
  /// "onednn" (x86). The engine is selected only for the duration of each call, then restored.
  TORCH_ARG(std::string, engine) = "qnnpack";
  /// Weights quantized per output channel (one scale per channel) instead of one scale per tensor.
  TORCH_ARG(bool, per_channel) = true;
  /// How activation ranges are observed.
  TORCH_ARG(Observer, observer) = Observer::MinMax;
  /// With Observer::Percentile: the upper percentile kept, in (50, 100].
  TORCH_ARG(double, percentile) = 99.99;
  /// Activations on 7 bits ([0, 127]) instead of 8, as PyTorch's fbgemm/x86 configurations, for
  /// kernels whose 16-bit accumulation of u8 x s8 pairs can saturate (x86 without VNNI).
  TORCH_ARG(bool, reduce_range) = false;
  /// Calibration images per forward pass (the observers see every image).
  TORCH_ARG(int64_t, calibration_batch_size) = 256;
  /// Quantization-aware training: the momentum of the activation ranges' moving average in training
  /// mode, range <- (1 - m) range + m batch_range (PyTorch's MovingAverageMinMaxObserver, 0.01).
  TORCH_ARG(double, averaging_constant) = 0.01;
};

struct OnnxOptions {
  /// The opset of the default ONNX domain (13 or later: per-channel QuantizeLinear/DequantizeLinear).
  TORCH_ARG(int64_t, opset) = 13;
  /// The graph's input name; its shape is [batch, C, H, W] with a symbolic batch dimension.
  TORCH_ARG(std::string, input_name) = "images";
  /// The graph's output name; its shape is [batch, classes].
  TORCH_ARG(std::string, output_name) = "logits";
  /// The symbolic name of the batch dimension.
  TORCH_ARG(std::string, batch_dimension) = "batch";
};

}  // namespace ardent::deploy
