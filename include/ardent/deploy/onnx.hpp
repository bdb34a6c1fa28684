#pragma once
// deploy::export_onnx: a network as an ONNX model (opset 13 or later), written with the protobuf
// classes of Debian's libonnx-dev (onnx.proto), for ONNX Runtime and any other ONNX runtime.
//
// Input `images` [batch, C, H, W] float32, output `logits` [batch, classes] float32; the batch
// dimension is symbolic ("batch"). A float model is exported as its graph (BatchNorm folded): Conv,
// Gemm, Relu / Clip, MaxPool, Add, GlobalAveragePool, Flatten, and Mul + Add for a BatchNorm that
// follows no convolution. An Int8Model is exported in QDQ form:
// every value is followed by QuantizeLinear / DequantizeLinear on its uint8 grid, weights are int8
// initializers behind a DequantizeLinear (per output channel: axis 0), biases int32 on the grid
// s_in * s_w - the form ONNX Runtime rewrites into its int8 kernels (QLinearConv, QGemm, ...).

#include "ardent/deploy/graph.hpp"
#include "ardent/deploy/int8_model.hpp"
#include "ardent/deploy/lower.hpp"
#include "ardent/deploy/options.hpp"
#include "ardent/io/atomic_file.hpp"
#include "ardent/version.hpp"

#include <onnx/onnx_pb.h>
#include <torch/torch.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace ardent::deploy {
namespace detail {

inline int32_t onnx_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32:
      return onnx::TensorProto::FLOAT;
    case torch::kInt8:
      return onnx::TensorProto::INT8;
    case torch::kUInt8:
      return onnx::TensorProto::UINT8;
    case torch::kInt32:
      return onnx::TensorProto::INT32;
    case torch::kInt64:
      return onnx::TensorProto::INT64;
    default:
      TORCH_CHECK(false, "ardent::deploy::export_onnx: no ONNX type for ", t);
  }
}

/// Builds one ONNX graph: initializers, nodes, unique names.
class OnnxBuilder {
 public:
  explicit OnnxBuilder(onnx::GraphProto* graph) : graph_(graph) {}

  /// An initializer holding `t` (its dtype and shape; a 0-dim tensor is a scalar).
  std::string constant(const std::string& hint, const torch::Tensor& t) {
    const auto name = unique(hint);
    auto* proto = graph_->add_initializer();
    proto->set_name(name);
    const auto c = t.detach().cpu().contiguous();
    proto->set_data_type(onnx_type(c.scalar_type()));
    for (const auto d : c.sizes()) proto->add_dims(d);
    proto->set_raw_data(std::string(static_cast<const char*>(c.data_ptr()), static_cast<std::size_t>(c.nbytes())));
    return name;
  }

  onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& inputs, const std::string& output) {
    auto* n = graph_->add_node();
    n->set_op_type(op);
    n->set_name(unique(op));
    for (const auto& i : inputs) n->add_input(i);
    n->add_output(output);
    return n;
  }

  std::string unique(const std::string& hint) { return hint + "_" + std::to_string(counter_++); }

 private:
  onnx::GraphProto* graph_;
  int64_t counter_ = 0;
};

inline void set_ints(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& values) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (const auto v : values) a->add_ints(v);
}

inline void set_int(onnx::NodeProto* n, const std::string& name, int64_t value) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

inline void set_value_info(onnx::ValueInfoProto* info, const std::string& name, const std::string& batch,
                           const std::vector<int64_t>& rest) {
  info->set_name(name);
  auto* type = info->mutable_type()->mutable_tensor_type();
  type->set_elem_type(onnx::TensorProto::FLOAT);
  auto* shape = type->mutable_shape();
  shape->add_dim()->set_dim_param(batch);
  for (const auto d : rest) shape->add_dim()->set_dim_value(d);
}

/// The QDQ view of an Int8Model: per layer its int8 weight, per value its grid.
struct QdqView {
  const std::vector<QuantizedWeight>* weights = nullptr;
  const std::vector<QParams>* grids = nullptr;
};

/// Writes `graph` as an ONNX model to `path`; with `qdq`, in QDQ form.
inline void write_onnx(const Graph& graph, const std::optional<QdqView>& qdq, const torch::Tensor& example_input,
                       const std::filesystem::path& path, const OnnxOptions& options) {
  constexpr const char* who = "ardent::deploy::export_onnx";
  TORCH_CHECK(options.opset() >= 13, who, ": argument 'opset' is ", options.opset(),
              ", expected 13 or later (per-channel QuantizeLinear/DequantizeLinear)");
  TORCH_CHECK(example_input.defined() && example_input.dim() == 4, who, ": argument 'example_input' has shape ",
              example_input.defined() ? example_input.sizes() : c10::IntArrayRef{}, ", expected [B, C, H, W]");
  const auto image_shape = example_input.sizes().slice(1).vec();
  torch::NoGradGuard no_grad;
  // Runs the graph once, which checks that the example fits and gives the output's width.
  const auto classes = run_float(graph, example_input.to(torch::kFloat32)).size(1);

  onnx::ModelProto model;
  model.set_ir_version(7);  // the IR version of opset 13
  model.set_producer_name("ardent");
  model.set_producer_version(ardent::version_string);
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(options.opset());
  auto* g = model.mutable_graph();
  g->set_name("ardent");
  set_value_info(g->add_input(), options.input_name(), options.batch_dimension(), image_shape);
  set_value_info(g->add_output(), options.output_name(), options.batch_dimension(), {classes});
  OnnxBuilder b(g);

  std::vector<std::string> names(static_cast<std::size_t>(graph.values()));
  const auto last = static_cast<std::size_t>(graph.values() - 1);
  // Value v as later layers read it: through Q/DQ on its grid in QDQ form.
  auto finish = [&](std::size_t v, const std::string& produced) {
    if (!qdq) {
      if (v == last) {
        b.node("Identity", {produced}, options.output_name());
        names[v] = options.output_name();
      } else {
        names[v] = produced;
      }
      return;
    }
    const auto& grid = (*qdq->grids)[v];
    const auto scale = b.constant("scale", torch::tensor(static_cast<float>(grid.scale)));
    const auto zero = b.constant("zero_point", torch::tensor(static_cast<uint8_t>(grid.zero_point)));
    const auto q = b.unique("q");
    b.node("QuantizeLinear", {produced, scale, zero}, q);
    names[v] = v == last ? options.output_name() : b.unique("dq");
    b.node("DequantizeLinear", {q, scale, zero}, names[v]);
  };
  auto activation = [&](const Clamp& clamp, const std::string& z) {
    if (!clamp.clamps()) return z;
    const auto out = b.unique("act");
    if (clamp.lo == 0.0 && clamp.hi == std::numeric_limits<double>::infinity()) {
      b.node("Relu", {z}, out);
    } else {
      const auto lo = b.constant("clip_min", torch::tensor(static_cast<float>(clamp.lo)));
      const auto hi = b.constant("clip_max", torch::tensor(static_cast<float>(clamp.hi)));
      b.node("Clip", {z, lo, hi}, out);
    }
    return out;
  };
  // The weight and bias inputs of layer i: float initializers, or int8 / int32 behind DequantizeLinear.
  auto parameters = [&](std::size_t i, const torch::Tensor& weight, const torch::Tensor& bias, int64_t input) {
    if (!qdq)
      return std::pair{b.constant("weight", weight.to(torch::kFloat32)), b.constant("bias", bias.to(torch::kFloat32))};
    const auto& w = (*qdq->weights)[i];
    const auto channels = weight.size(0);
    const auto w_scales = w.scales.to(torch::kFloat32);
    const auto w_zero = w.per_channel ? torch::zeros({channels}, torch::kInt8) : torch::zeros({}, torch::kInt8);
    const auto wq = b.unique("weight");
    auto* dq_w = b.node("DequantizeLinear",
                        {b.constant("weight_int8", w.values),
                         b.constant("weight_scale", w.per_channel ? w_scales : w_scales.reshape({})),
                         b.constant("weight_zero_point", w_zero)},
                        wq);
    if (w.per_channel) set_int(dq_w, "axis", 0);
    // Bias on the accumulator's grid, as the int8 kernels quantize it: b_q = round(b / (s_in s_w)).
    const auto in_scale = (*qdq->grids)[static_cast<std::size_t>(input)].scale;
    const auto b_scales = (w.scales * in_scale).to(torch::kFloat32).expand({channels}).contiguous();
    const auto b_int = torch::round(bias.to(torch::kFloat64) / b_scales.to(torch::kFloat64))
                           .clamp(-2147483648.0, 2147483647.0)
                           .to(torch::kInt32);
    const auto bq = b.unique("bias");
    auto* dq_b = b.node("DequantizeLinear",
                        {b.constant("bias_int32", b_int), b.constant("bias_scale", b_scales),
                         b.constant("bias_zero_point", torch::zeros({channels}, torch::kInt32))},
                        bq);
    set_int(dq_b, "axis", 0);
    return std::pair{wq, bq};
  };

  // The input, through its grid in QDQ form.
  if (qdq) {
    finish(0, options.input_name());
  } else {
    names[0] = options.input_name();
  }
  for (std::size_t i = 0; i < graph.nodes.size(); ++i) {
    const auto produced = std::visit(
        [&](const auto& n) -> std::string {
          using N = std::decay_t<decltype(n)>;
          const auto out = b.unique(N::kind);
          if constexpr (std::is_same_v<N, Conv>) {
            const auto [w, bias] = parameters(i, n.weight, n.bias, n.input);
            auto* c = b.node("Conv", {names[static_cast<std::size_t>(n.input)], w, bias}, out);
            set_ints(c, "kernel_shape", {n.weight.size(2), n.weight.size(3)});
            set_ints(c, "strides", n.stride);
            set_ints(c, "pads", {n.padding[0], n.padding[1], n.padding[0], n.padding[1]});
            set_ints(c, "dilations", n.dilation);
            set_int(c, "group", n.groups);
            return activation(n.clamp, out);
          } else if constexpr (std::is_same_v<N, Linear>) {
            const auto [w, bias] = parameters(i, n.weight, n.bias, n.input);
            set_int(b.node("Gemm", {names[static_cast<std::size_t>(n.input)], w, bias}, out), "transB", 1);
            return activation(n.clamp, out);
          } else if constexpr (std::is_same_v<N, MaxPool>) {
            auto* p = b.node("MaxPool", {names[static_cast<std::size_t>(n.input)]}, out);
            set_ints(p, "kernel_shape", {n.kernel, n.kernel});
            set_ints(p, "strides", {n.stride, n.stride});
            set_ints(p, "pads", {n.padding, n.padding, n.padding, n.padding});
            return out;
          } else if constexpr (std::is_same_v<N, Add>) {
            b.node("Add", {names[static_cast<std::size_t>(n.a)], names[static_cast<std::size_t>(n.b)]}, out);
            return activation(n.clamp, out);
          } else if constexpr (std::is_same_v<N, BatchNorm>) {
            // y = scale x + shift per channel: Mul and Add with [C, 1, 1] initializers (broadcast).
            const auto scaled = b.unique("scaled");
            const auto per_channel = [&](const torch::Tensor& t) { return t.to(torch::kFloat32).reshape({-1, 1, 1}); };
            b.node("Mul", {names[static_cast<std::size_t>(n.input)], b.constant("bn_scale", per_channel(n.scale))},
                   scaled);
            b.node("Add", {scaled, b.constant("bn_shift", per_channel(n.shift))}, out);
            return activation(n.clamp, out);
          } else if constexpr (std::is_same_v<N, GlobalAvgPool>) {
            const auto pooled = b.unique("pooled");
            b.node("GlobalAveragePool", {names[static_cast<std::size_t>(n.input)]}, pooled);
            set_int(b.node("Flatten", {pooled}, out), "axis", 1);
            return out;
          } else {
            set_int(b.node("Flatten", {names[static_cast<std::size_t>(n.input)]}, out), "axis", 1);
            return out;
          }
        },
        graph.nodes[i]);
    finish(i + 1, produced);
  }

  std::string bytes;
  TORCH_CHECK(model.SerializeToString(&bytes), who, ": the ONNX model for '", path.string(), "' cannot be serialized");
  io::write_file_atomically(path, bytes, who);
}

}  // namespace detail

/// Exports a float model (BatchNorm folded); `example_input` gives the image shape [1, C, H, W].
template <Quantizable M>
void export_onnx(M& model, const torch::Tensor& example_input, const std::string& path, OnnxOptions options = {}) {
  auto graph = to_graph(model);
  graph.input_shape = example_input.sizes().slice(1).vec();
  detail::write_onnx(graph, std::nullopt, example_input, path, options);
}

/// Exports an int8 model in QDQ form.
inline void export_onnx(Int8Model& model, const torch::Tensor& example_input, const std::string& path,
                        OnnxOptions options = {}) {
  TORCH_CHECK(!model.is_empty(), "ardent::deploy::export_onnx: argument 'model' is an empty Int8Model");
  const auto& p = model->program();
  detail::write_onnx(p.graph, detail::QdqView{&p.weights, &p.activations}, example_input, path, options);
}

}  // namespace ardent::deploy
