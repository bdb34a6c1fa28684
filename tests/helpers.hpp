#pragma once
// Shared test fixtures: the reference data in tests/data (each folder's README.md says where it came from).

#include "catch.hpp"

#include <ardent/ardent.hpp>

#include <cstring>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

namespace ardent_test {

inline std::filesystem::path data_dir() { return ARDENT_TEST_DATA_DIR; }

/// A raw little-endian C-order array, as the reference writes them.
inline torch::Tensor read_bin(const std::filesystem::path& path, std::vector<int64_t> shape, torch::Dtype dtype) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto t = torch::empty(shape, dtype);
  REQUIRE(bytes.size() == static_cast<std::size_t>(t.numel() * t.element_size()));
  std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

struct Reference {
  torch::jit::Module model;
  torch::Tensor x;
  torch::Tensor y;
};

inline Reference load_reference() {
  const auto dir = data_dir() / "attack_vectors";
  Reference r{torch::jit::load((dir / "smallcnn.pt").string()),
              read_bin(dir / "x.bin", {64, 1, 28, 28}, torch::kFloat32), read_bin(dir / "y.bin", {64}, torch::kLong)};
  r.model.eval();
  return r;
}

inline torch::Tensor reference_adversarial(const std::string& attack) {
  return read_bin(data_dir() / "attack_vectors" / ("smallcnn_" + attack + ".bin"), {64, 1, 28, 28}, torch::kFloat32);
}

/// ardent's SmallCNN (width 16) with the weights of the TorchScript reference model.
inline ardent::models::SmallCNN small_cnn_copy(const torch::jit::Module& script) {
  ardent::models::SmallCNN model(ardent::models::SmallCNNOptions(10).width(16));
  torch::NoGradGuard no_grad;
  auto params = model->named_parameters();
  std::size_t copied = 0;
  for (const auto& p : script.named_parameters(/*recurse=*/true)) {
    params[p.name].copy_(p.value);
    ++copied;
  }
  REQUIRE(copied == params.size());
  model->eval();
  return model;
}

inline double accuracy(torch::Tensor logits, const torch::Tensor& labels) {
  return logits.argmax(1).eq(labels).to(torch::kDouble).mean().item<double>();
}

}  // namespace ardent_test
