#pragma once
// The views of the built-in soft targets that are not plain logits: what targets::Outputs and
// targets::Features hand the distillation loss.

#include <torch/torch.h>

#include <vector>

namespace ardent::targets {

/// Softmax probabilities [B, C], the view of targets::Outputs.
struct Probabilities {
  torch::Tensor value;
};

/// Intermediate feature maps, paired stage by stage between teacher and student, the view of
/// targets::Features.
struct FeatureMaps {
  std::vector<torch::Tensor> stages;
};

}  // namespace ardent::targets
