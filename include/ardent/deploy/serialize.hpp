#pragma once
// save_int8 / load_int8: an Int8Model in a torch::save archive - the layers (kind, shapes, strides,
// activations), the int8 weights with their scales, the float32 biases (and a BatchNorm layer's
// float32 scale and shift), every activation grid and the engine. The file is written atomically (io/atomic_file.hpp);
// reading checks the archive's CRC-32s and every field, and each error names the file.

#include "ardent/deploy/int8_model.hpp"
#include "ardent/io/atomic_file.hpp"
#include "ardent/io/detail/zip.hpp"
#include "ardent/io/module_archive.hpp"

#include <torch/torch.h>

#include <filesystem>
#include <string>

namespace ardent::deploy {

/// The archive's format tag and version.
inline constexpr const char* kInt8Format = "ardent.deploy.int8/1";

namespace detail {

inline std::vector<double> clamp_values(const Clamp& c) { return {c.lo, c.hi}; }
inline Clamp clamp_of(const std::vector<double>& v) {
  TORCH_CHECK(v.size() == 2, "a clamp has ", v.size(), " bounds, expected 2");
  return {v[0], v[1]};
}

/// The node types in the order of the Node variant; the file stores the index.
template <std::size_t I = 0>
Node node_of_index(int64_t index) {
  if constexpr (I < std::variant_size_v<Node>) {
    if (index == static_cast<int64_t>(I)) return std::variant_alternative_t<I, Node>{};
    return node_of_index<I + 1>(index);
  } else {
    TORCH_CHECK(false, "layer kind ", index, " is unknown, expected 0 to ", std::variant_size_v<Node> - 1);
  }
}

inline torch::Tensor read_tensor(torch::serialize::InputArchive& a, const std::string& key) {
  torch::Tensor t;
  TORCH_CHECK(a.try_read(key, t), "entry '", key, "' is missing");
  return t;
}

inline c10::IValue read_value(torch::serialize::InputArchive& a, const std::string& key) {
  c10::IValue v;
  TORCH_CHECK(a.try_read(key, v), "entry '", key, "' is missing");
  return v;
}

}  // namespace detail

inline void save_int8(const Int8Model& model, const std::filesystem::path& path) {
  constexpr const char* who = "ardent::deploy::save_int8";
  TORCH_CHECK(!model.is_empty(), who, ": argument 'model' is an empty Int8Model");
  const auto& p = model->program();
  torch::serialize::OutputArchive a;
  a.write("format", c10::IValue(std::string(kInt8Format)));
  a.write("engine", c10::IValue(p.engine));
  a.write("input_shape", c10::IValue(p.graph.input_shape));
  a.write("layers", c10::IValue(static_cast<int64_t>(p.graph.nodes.size())));
  std::vector<double> scales;
  std::vector<int64_t> zero_points;
  for (const auto& q : p.activations) {
    scales.push_back(q.scale);
    zero_points.push_back(q.zero_point);
  }
  a.write("activation_scales", c10::IValue(scales));
  a.write("activation_zero_points", c10::IValue(zero_points));
  for (std::size_t i = 0; i < p.graph.nodes.size(); ++i) {
    const auto key = "layer" + std::to_string(i) + ".";
    const auto& node = p.graph.nodes[i];
    a.write(key + "kind", c10::IValue(static_cast<int64_t>(node.index())));
    a.write(key + "inputs", c10::IValue(inputs_of(node)));
    std::visit(
        [&](const auto& n) {
          using N = std::decay_t<decltype(n)>;
          if constexpr (requires { n.clamp; }) a.write(key + "clamp", c10::IValue(detail::clamp_values(n.clamp)));
          if constexpr (requires { n.weight; }) {
            const auto& w = p.weights[i];
            a.write(key + "weight", w.values);
            a.write(key + "weight_scales", w.scales);
            a.write(key + "per_channel", c10::IValue(w.per_channel));
            a.write(key + "bias", n.bias);
          }
          if constexpr (std::is_same_v<N, Conv>) {
            a.write(key + "conv", c10::IValue(std::vector<int64_t>{n.stride[0], n.stride[1], n.padding[0], n.padding[1],
                                                                   n.dilation[0], n.dilation[1], n.groups}));
          }
          if constexpr (std::is_same_v<N, MaxPool>) {
            a.write(key + "pool", c10::IValue(std::vector<int64_t>{n.kernel, n.stride, n.padding}));
          }
          if constexpr (std::is_same_v<N, BatchNorm>) {
            a.write(key + "scale", n.scale);
            a.write(key + "shift", n.shift);
          }
        },
        node);
  }
  std::string bytes;
  a.save_to([&bytes](const void* data, std::size_t size) {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  io::write_file_atomically(path, bytes, who);
}

inline Int8Model load_int8(const std::filesystem::path& path) {
  constexpr const char* who = "ardent::deploy::load_int8";
  std::error_code ec;
  TORCH_CHECK(std::filesystem::is_regular_file(path, ec), who, ": ", path.string(), ": no such file");
  const std::string bytes = io::read_file(path, who);
  Int8Program p;
  try {
    TORCH_CHECK(bytes.rfind("PK\x03\x04", 0) == 0, "not a zip archive");
    io::detail::CheckedArchive(bytes).verify();
    torch::serialize::InputArchive a;
    a.load_from(bytes.data(), bytes.size());
    c10::IValue format;
    TORCH_CHECK(a.try_read("format", format) && format.isString() && format.toStringRef() == kInt8Format,
                "not an int8 model written by ardent::deploy::save_int8 (no format tag '", kInt8Format, "')");
    p.engine = detail::read_value(a, "engine").toStringRef();
    p.graph.input_shape = detail::read_value(a, "input_shape").toIntVector();
    const auto layers = detail::read_value(a, "layers").toInt();
    TORCH_CHECK(layers >= 1 && layers < 100000, "the layer count is ", layers, ", expected 1 to 99999");
    const auto scales = detail::read_value(a, "activation_scales").toDoubleVector();
    const auto zero_points = detail::read_value(a, "activation_zero_points").toIntVector();
    TORCH_CHECK(static_cast<int64_t>(scales.size()) == layers + 1 && zero_points.size() == scales.size(), "there are ",
                scales.size(), " activation scales and ", zero_points.size(), " zero points for ", layers,
                " layers, expected ", layers + 1);
    for (std::size_t v = 0; v < scales.size(); ++v) {
      TORCH_CHECK(std::isfinite(scales[v]) && scales[v] > 0 && zero_points[v] >= 0 && zero_points[v] <= 255,
                  "activation grid ", v, " has scale ", scales[v], " and zero point ", zero_points[v],
                  ", expected a positive scale and a zero point in [0, 255]");
      p.activations.push_back({scales[v], zero_points[v]});
    }
    p.weights.resize(static_cast<std::size_t>(layers));
    for (int64_t i = 0; i < layers; ++i) {
      const auto key = "layer" + std::to_string(i) + ".";
      auto node = detail::node_of_index(detail::read_value(a, key + "kind").toInt());
      const auto inputs = detail::read_value(a, key + "inputs").toIntVector();
      std::visit(
          [&](auto& n) {
            using N = std::decay_t<decltype(n)>;
            if constexpr (std::is_same_v<N, Add>) {
              TORCH_CHECK(inputs.size() == 2, key, "inputs has ", inputs.size(), " entries, expected 2");
              n.a = inputs[0];
              n.b = inputs[1];
            } else {
              TORCH_CHECK(inputs.size() == 1, key, "inputs has ", inputs.size(), " entries, expected 1");
              n.input = inputs[0];
            }
            if constexpr (requires { n.clamp; })
              n.clamp = detail::clamp_of(detail::read_value(a, key + "clamp").toDoubleVector());
            if constexpr (requires { n.weight; }) {
              auto& w = p.weights[static_cast<std::size_t>(i)];
              w.values = detail::read_tensor(a, key + "weight");
              w.scales = detail::read_tensor(a, key + "weight_scales");
              w.per_channel = detail::read_value(a, key + "per_channel").toBool();
              n.bias = detail::read_tensor(a, key + "bias");
              const int64_t expected_dim = std::is_same_v<N, Conv> ? 4 : 2;
              TORCH_CHECK(w.values.scalar_type() == torch::kInt8 && w.values.dim() == expected_dim &&
                              w.scales.scalar_type() == torch::kFloat64 && w.scales.dim() == 1 &&
                              w.scales.size(0) == (w.per_channel ? w.values.size(0) : 1) &&
                              (w.scales > 0).all().item<bool>() && n.bias.scalar_type() == torch::kFloat32 &&
                              n.bias.dim() == 1 && n.bias.size(0) == w.values.size(0),
                          key, "weight/weight_scales/bias have dtypes ", w.values.scalar_type(), "/",
                          w.scales.scalar_type(), "/", n.bias.scalar_type(), " and shapes ", w.values.sizes(), "/",
                          w.scales.sizes(), "/", n.bias.sizes(),
                          ", expected int8 weights, positive float64 scales (one per output channel or one) and a "
                          "float32 bias per output channel");
              n.weight = w.dequantized();
            }
            if constexpr (std::is_same_v<N, Conv>) {
              const auto c = detail::read_value(a, key + "conv").toIntVector();
              TORCH_CHECK(c.size() == 7 && c[6] >= 1 && n.weight.size(0) % c[6] == 0, key, "conv is malformed");
              n.stride = {c[0], c[1]};
              n.padding = {c[2], c[3]};
              n.dilation = {c[4], c[5]};
              n.groups = c[6];
            }
            if constexpr (std::is_same_v<N, BatchNorm>) {
              n.scale = detail::read_tensor(a, key + "scale");
              n.shift = detail::read_tensor(a, key + "shift");
              TORCH_CHECK(n.scale.scalar_type() == torch::kFloat32 && n.shift.scalar_type() == torch::kFloat32 &&
                              n.scale.dim() == 1 && n.scale.sizes() == n.shift.sizes(),
                          key, "scale/shift have dtypes ", n.scale.scalar_type(), "/", n.shift.scalar_type(),
                          " and shapes ", n.scale.sizes(), "/", n.shift.sizes(),
                          ", expected float32 vectors of one length (one entry per channel)");
            }
            if constexpr (std::is_same_v<N, MaxPool>) {
              const auto c = detail::read_value(a, key + "pool").toIntVector();
              TORCH_CHECK(c.size() == 3 && c[0] >= 1 && c[1] >= 1 && c[2] >= 0, key, "pool is malformed");
              n.kernel = c[0];
              n.stride = c[1];
              n.padding = c[2];
            }
          },
          node);
      p.graph.add(std::move(node));
    }
    return Int8Model(std::move(p));
  } catch (const std::exception& e) {
    TORCH_CHECK(false, who, ": file '", path.string(), "' is not a valid int8 model: ", io::detail::message_of(e));
  }
}

}  // namespace ardent::deploy
