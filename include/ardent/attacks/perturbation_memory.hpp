#pragma once
// PerturbationMemory: each training example's last adversarial perturbation, kept across epochs so
// that the next epoch's attack starts from it (Zheng, Zhang, Yan, Tang and Xiong, "Efficient
// Adversarial Training with Transferable Adversarial Examples" (ATTA), CVPR 2020): perturbations
// found for one epoch's model transfer to the next, so a warm-started attack of 1-3 steps reaches
// the strength of a cold PGD-10.
//
// Memory: one input-sized perturbation per training example, examples x prod(example_shape) x
// (4 bytes, or 2 with half(true)): Fashion-MNIST's 60,000 x 1x28x28 take 188 MB (94 MB in half
// precision), CIFAR-10's 50,000 x 3x32x32 614 MB (307 MB). A module, so that its buffers
// ("perturbations" and "stored") go into checkpoints like a model's and a resumed run starts
// from exactly the perturbations an uninterrupted one would.

#include <torch/torch.h>

#include "ardent/core/check.hpp"

#include <vector>

namespace ardent::attacks {

struct PerturbationMemoryOptions {
  PerturbationMemoryOptions(int64_t examples, std::vector<int64_t> example_shape)
      : examples_(examples), example_shape_(std::move(example_shape)) {}
  /// Size of the data set: example indices lie in [0, examples).
  TORCH_ARG(int64_t, examples);
  /// Shape of one example (e.g. {1, 28, 28}).
  TORCH_ARG(std::vector<int64_t>, example_shape);
  /// Store in float16: half the memory; perturbations are rounded to about 3 significant digits
  /// (the start of the next attack, which is projected back onto the ball anyway).
  TORCH_ARG(bool, half) = false;
};

class PerturbationMemoryImpl : public torch::nn::Module {
 public:
  explicit PerturbationMemoryImpl(PerturbationMemoryOptions options) : options_(std::move(options)) {
    constexpr std::string_view name = "ardent::attacks::PerturbationMemory";
    if (options_.examples() < 1)
      fail_argument(name, "examples", fmt::format("is {}, expected at least 1", options_.examples()));
    for (const auto d : options_.example_shape()) {
      if (d < 1) fail_argument(name, "example_shape", fmt::format("has a dimension {}, expected >= 1", d));
    }
    std::vector<int64_t> shape{options_.examples()};
    shape.insert(shape.end(), options_.example_shape().begin(), options_.example_shape().end());
    perturbations_ = register_buffer("perturbations",
                                     torch::zeros(shape, options_.half() ? torch::kHalf : torch::kFloat));
    stored_ = register_buffer("stored", torch::zeros({options_.examples()}, torch::kBool));
  }

  const PerturbationMemoryOptions& options() const { return options_; }

  /// The start of each example's next attack: x + its stored perturbation where one is stored, else
  /// `fresh` (the attack's own start). Checks the indices against the memory's size.
  torch::Tensor start(const torch::Tensor& indices, const torch::Tensor& x, const torch::Tensor& fresh) const {
    check_indices(indices, x);
    const auto index = indices.to(perturbations_.device());
    const auto stored = stored_.index_select(0, index).to(x.device());
    const auto warm = x.detach() + perturbations_.index_select(0, index).to(x.device(), x.scalar_type());
    std::vector<int64_t> shape(static_cast<std::size_t>(x.dim()), 1);
    shape[0] = x.size(0);
    return torch::where(stored.reshape(shape), warm, fresh.detach());
  }

  /// Stores x_adv - x for each example (the start of its next attack).
  void remember(const torch::Tensor& indices, const torch::Tensor& x, const torch::Tensor& x_adv) {
    check_indices(indices, x);
    torch::NoGradGuard no_grad;
    const auto index = indices.to(perturbations_.device());
    perturbations_.index_copy_(0, index,
                               (x_adv - x).detach().to(perturbations_.device(), perturbations_.scalar_type()));
    stored_.index_fill_(0, index, true);
    if (!touched_.defined()) touched_ = torch::zeros_like(stored_);
    touched_.index_fill_(0, index, true);
  }

  /// The examples stored since the last clear_touched() (all false when none): what a rank of a
  /// data-parallel run contributes when the ranks' memories are merged.
  torch::Tensor touched() const { return touched_.defined() ? touched_ : torch::zeros_like(stored_); }
  void clear_touched() { touched_ = torch::Tensor(); }

  /// How many examples have a stored perturbation.
  int64_t stored_count() const { return stored_.sum().item<int64_t>(); }

 private:
  void check_indices(const torch::Tensor& indices, const torch::Tensor& x) const {
    constexpr std::string_view name = "ardent::attacks::PerturbationMemory";
    TORCH_CHECK(indices.defined() && indices.dim() == 1 && indices.scalar_type() == torch::kLong &&
                    indices.size(0) == x.size(0),
                name, ": argument 'indices' must be int64 [", x.size(0), "] (one data-set index per example), got ",
                indices.defined() ? shape_string(indices) : std::string("an undefined tensor"),
                " (data::ShuffledBatches gives each batch its indices)");
    std::vector<int64_t> example(x.sizes().begin() + 1, x.sizes().end());
    TORCH_CHECK(example == options_.example_shape(), name, ": the examples have shape ", shape_string(x),
                ", expected [B, ", fmt::format("{}", fmt::join(options_.example_shape(), ", ")), "]");
    if (indices.numel() == 0) return;
    const auto low = indices.min().item<int64_t>();
    const auto high = indices.max().item<int64_t>();
    TORCH_CHECK(low >= 0 && high < options_.examples(), name, ": argument 'indices' has values in [", low, ", ", high,
                "], expected [0, ", options_.examples(), ")");
  }

  PerturbationMemoryOptions options_;
  torch::Tensor perturbations_;
  torch::Tensor stored_;
  torch::Tensor touched_;
};

TORCH_MODULE(PerturbationMemory);

}  // namespace ardent::attacks
