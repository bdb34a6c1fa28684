#pragma once
// One batch from a data loader as (inputs, labels, indices): ardent::train::fit and ardent::evaluate take
// loaders that yield ardent::Batch (data::ShuffledBatches does), torch::data::Example<> (stacked),
// std::vector<Example<>> (torch's default collation, stacked here) or std::pair<Tensor, Tensor>.

#include <torch/torch.h>

#include <utility>
#include <vector>

namespace ardent {

struct Batch {
  torch::Tensor inputs;
  torch::Tensor labels;
  /// Each example's index in its data set (int64 [B]), for per-example state such as
  /// attacks::PerturbationMemory; undefined when the loader gives none.
  torch::Tensor indices;
};

inline Batch unpack_batch(const Batch& batch) { return batch; }

inline Batch unpack_batch(const torch::data::Example<>& example) { return {example.data, example.target, {}}; }

inline Batch unpack_batch(const std::vector<torch::data::Example<>>& examples) {
  TORCH_CHECK(!examples.empty(), "ardent: a data loader gave an empty batch");
  std::vector<torch::Tensor> data;
  std::vector<torch::Tensor> targets;
  data.reserve(examples.size());
  targets.reserve(examples.size());
  for (const auto& e : examples) {
    data.push_back(e.data);
    targets.push_back(e.target);
  }
  // One label per example, whether stored as a scalar or as a one-element tensor.
  return {torch::stack(data), torch::stack(targets).reshape({-1}), {}};
}

inline Batch unpack_batch(const std::pair<torch::Tensor, torch::Tensor>& batch) {
  return {batch.first, batch.second, {}};
}

}  // namespace ardent
