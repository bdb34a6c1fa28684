#pragma once
// Int8Model: a graph (graph.hpp) with int8 weights and uint8 activations, run by LibTorch's quantized
// CPU kernels (quantized::conv2d_prepack / conv2d.new / conv2d_relu.new, linear_prepack / linear /
// linear_relu, add / add_relu, batch_norm2d / batch_norm2d_relu, called through c10::Dispatcher).
// ReLU6 needs no kernel of its own: its output grid, observed after the clamp, ends at or below 6, and
// the kernels saturate at the grid's top. It is an ardent::Model: float images
// in, float logits out, so ardent::evaluate and the gradient-free attacks run on it unchanged.
//
// Each layer computes on the integers, y_q = requantize(sum w_q x_q + b / (s_x s_w)), i.e. in real
// numbers y = Q_out(conv(Q_in(x), s_w w_q) + b): reference_forward() computes exactly that in
// floating point (fake quantization), differentiably - the int8 network's float twin.
//
// A quantized network has no input gradient: forward()'s output is not connected to its input, so a
// gradient attack on it stops with autograd's error instead of measuring gradient masking (attack it
// with Square or with transfer attacks from its float twin: eval::deployed).

#include "ardent/core/model.hpp"
#include "ardent/deploy/graph.hpp"
#include "ardent/deploy/observer.hpp"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include <string>
#include <vector>

namespace ardent::deploy {

/// Everything an Int8Model runs and save_int8 stores.
struct Int8Program {
  /// The layers; Conv and Linear weights are the dequantized int8 weights (scale * q).
  Graph graph;
  /// Per layer: the int8 weight of a Conv or Linear, an empty QuantizedWeight for the others.
  std::vector<QuantizedWeight> weights;
  /// Per value (0 = input): its uint8 grid.
  std::vector<QParams> activations;
  /// "qnnpack" or "onednn".
  std::string engine = "qnnpack";
};

namespace detail {

/// Calls a quantized operator through the dispatcher and returns its one result.
inline c10::IValue call_quantized(const c10::OperatorHandle& op, std::vector<c10::IValue> args) {
  torch::jit::Stack stack(std::move(args));
  op.callBoxed(&stack);
  return std::move(stack.at(0));
}

inline c10::OperatorHandle quantized_op(const char* name, const char* overload) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, overload);
}

}  // namespace detail

class Int8ModelImpl : public torch::nn::Module {
 public:
  explicit Int8ModelImpl(Int8Program program)
      : torch::nn::Module("ardent::deploy::Int8Model"), program_(std::move(program)) {
    const auto& g = program_.graph;
    TORCH_CHECK(
        program_.weights.size() == g.nodes.size() && static_cast<int64_t>(program_.activations.size()) == g.values(),
        "ardent::deploy::Int8Model: the program has ", program_.weights.size(), " weights and ",
        program_.activations.size(), " activation grids for ", g.nodes.size(), " layers, expected ", g.nodes.size(),
        " and ", g.values());
    engine_ = parse_engine(program_.engine);
    pack();
  }

  torch::Tensor forward(const torch::Tensor& x) {
    TORCH_CHECK(x.dim() == 4 && x.is_floating_point(), "ardent::deploy::Int8Model: argument 'x' has shape ", x.sizes(),
                " and dtype ", x.dtype(), ", expected float images [B, C, H, W]");
    torch::NoGradGuard no_grad;
    QEngineGuard engine(engine_);
    const auto& g = program_.graph;
    std::vector<torch::Tensor> values;
    values.reserve(g.nodes.size() + 1);
    const auto& in = program_.activations[0];
    values.push_back(
        at::quantize_per_tensor(x.to(torch::kFloat32).contiguous(), in.scale, in.zero_point, torch::kQUInt8));
    for (std::size_t i = 0; i < g.nodes.size(); ++i) {
      const auto& out = program_.activations[i + 1];
      values.push_back(std::visit(
          [&](const auto& n) -> torch::Tensor {
            using N = std::decay_t<decltype(n)>;
            if constexpr (std::is_same_v<N, Conv>) {
              static const auto conv = detail::quantized_op("quantized::conv2d", "new");
              static const auto conv_relu = detail::quantized_op("quantized::conv2d_relu", "new");
              return detail::call_quantized(n.clamp.clamps() ? conv_relu : conv,
                                            {values[n.input], packed_[i], out.scale, out.zero_point})
                  .toTensor();
            } else if constexpr (std::is_same_v<N, Linear>) {
              static const auto linear = detail::quantized_op("quantized::linear", "");
              static const auto linear_relu = detail::quantized_op("quantized::linear_relu", "");
              return detail::call_quantized(n.clamp.clamps() ? linear_relu : linear,
                                            {values[n.input].contiguous(), packed_[i], out.scale, out.zero_point})
                  .toTensor();
            } else if constexpr (std::is_same_v<N, MaxPool>) {
              return at::max_pool2d(values[n.input], {n.kernel, n.kernel}, {n.stride, n.stride}, {n.padding, n.padding},
                                    {1, 1});
            } else if constexpr (std::is_same_v<N, Add>) {
              static const auto add = detail::quantized_op("quantized::add", "");
              static const auto add_relu = detail::quantized_op("quantized::add_relu", "");
              return detail::call_quantized(n.clamp.clamps() ? add_relu : add,
                                            {values[n.a], values[n.b], out.scale, out.zero_point})
                  .toTensor();
            } else if constexpr (std::is_same_v<N, BatchNorm>) {
              // y = scale x + shift as the kernel's (x - mean) / sqrt(var + eps) weight + bias, mean 0, var 1, eps 0.
              static const auto bn = detail::quantized_op("quantized::batch_norm2d", "");
              static const auto bn_relu = detail::quantized_op("quantized::batch_norm2d_relu", "");
              const auto channels = n.scale.size(0);
              return detail::call_quantized(
                         n.clamp.clamps() ? bn_relu : bn,
                         {values[n.input], c10::optional<torch::Tensor>(n.scale), c10::optional<torch::Tensor>(n.shift),
                          torch::zeros({channels}), torch::ones({channels}), 0.0, out.scale, out.zero_point})
                  .toTensor();
            } else if constexpr (std::is_same_v<N, GlobalAvgPool>) {
              return at::adaptive_avg_pool2d(values[n.input], {1, 1}).contiguous().flatten(1);
            } else {
              return values[n.input].contiguous().flatten(1);
            }
          },
          g.nodes[i]));
    }
    return values.back().dequantize();
  }

  /// The same computation in floating point with fake quantization (weights dequantized, every
  /// activation rounded to its grid and saturated at [0, 255]); differentiable, straight-through.
  torch::Tensor reference_forward(const torch::Tensor& x) const {
    return run(
        program_.graph, x, [](int64_t, const torch::Tensor& w) { return w; },
        [this](int64_t v, const torch::Tensor& t) {
          const auto& q = program_.activations[static_cast<std::size_t>(v)];
          return at::fake_quantize_per_tensor_affine(t, q.scale, q.zero_point, 0, 255);
        });
  }

  const Int8Program& program() const { return program_; }

  /// The size of the int8 network's parameters in bytes: int8 weights, float32 biases and scales
  /// (and the float32 scale and shift of a BatchNorm layer).
  int64_t parameter_bytes() const {
    int64_t bytes = 0;
    for (std::size_t i = 0; i < program_.weights.size(); ++i) {
      const auto& w = program_.weights[i];
      if (w.values.defined()) bytes += w.values.numel() + 4 * w.scales.numel();
      std::visit(
          [&](const auto& n) {
            if constexpr (requires { n.bias; }) bytes += 4 * n.bias.numel();
            if constexpr (requires { n.shift; }) bytes += 4 * (n.scale.numel() + n.shift.numel());
          },
          program_.graph.nodes[i]);
    }
    return bytes;
  }

 private:
  // Prepacks every weight for the engine (the packed form is engine-specific).
  void pack() {
    QEngineGuard engine(engine_);
    const auto& g = program_.graph;
    packed_.assign(g.nodes.size(), c10::IValue());
    for (std::size_t i = 0; i < g.nodes.size(); ++i) {
      const auto& w = program_.weights[i];
      std::visit(
          [&](const auto& n) {
            using N = std::decay_t<decltype(n)>;
            if constexpr (requires { n.clamp; }) {
              TORCH_CHECK(!n.clamp.clamps() || n.clamp.lo == 0.0, "ardent::deploy::Int8Model: layer ", i, " (", N::kind,
                          ") clamps at [", n.clamp.lo, ", ", n.clamp.hi, "], expected no activation, ReLU or ReLU6");
            }
            if constexpr (std::is_same_v<N, Conv>) {
              TORCH_CHECK(w.values.defined(), "ardent::deploy::Int8Model: layer ", i, " (Conv) has no int8 weight");
              static const auto prepack = detail::quantized_op("quantized::conv2d_prepack", "");
              packed_[i] = detail::call_quantized(
                  prepack, {w.quantized(), c10::optional<torch::Tensor>(n.bias.to(torch::kFloat32)),
                            c10::List<int64_t>(n.stride), c10::List<int64_t>(n.padding), c10::List<int64_t>(n.dilation),
                            n.groups});
            } else if constexpr (std::is_same_v<N, Linear>) {
              TORCH_CHECK(w.values.defined(), "ardent::deploy::Int8Model: layer ", i, " (Linear) has no int8 weight");
              static const auto prepack = detail::quantized_op("quantized::linear_prepack", "");
              packed_[i] = detail::call_quantized(
                  prepack, {w.quantized(), c10::optional<torch::Tensor>(n.bias.to(torch::kFloat32))});
            }
          },
          g.nodes[i]);
    }
  }

  Int8Program program_;
  at::QEngine engine_ = at::kQNNPACK;
  std::vector<c10::IValue> packed_;
};

TORCH_MODULE(Int8Model);

static_assert(ardent::Model<Int8Model>);

}  // namespace ardent::deploy
