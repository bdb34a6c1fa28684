#pragma once
// What MNIST, CIFAR-10 and CIFAR-100 share: a labelled image set held in memory, and the lookup
// of a data file that may be gzipped.

#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace ardent::data {

/// Images as float32 [N, C, H, W] in [0, 1] and labels as int64 [N], held in memory.
template <typename Self>
class LabelledImages : public torch::data::datasets::Dataset<Self> {
 public:
  torch::data::Example<> get(size_t index) override {
    return {images_[static_cast<int64_t>(index)], labels_[static_cast<int64_t>(index)]};
  }
  torch::optional<size_t> size() const override { return static_cast<size_t>(images_.size(0)); }

  const torch::Tensor& images() const { return images_; }
  const torch::Tensor& labels() const { return labels_; }

 protected:
  /// Takes uint8 pixels (scaled to [0, 1]) and integer labels.
  void assign(const torch::Tensor& pixels, const torch::Tensor& labels) {
    images_ = pixels.to(torch::kFloat32).div_(255.0);
    labels_ = labels.to(torch::kInt64);
  }

 private:
  torch::Tensor images_;
  torch::Tensor labels_;
};

namespace detail {

/// directory/name, else directory/name.gz; throws naming the reader and both names otherwise.
inline std::filesystem::path find_data_file(std::string_view reader, const std::filesystem::path& directory,
                                            const std::string& name) {
  for (const auto& candidate : {directory / name, directory / (name + ".gz")}) {
    if (std::filesystem::is_regular_file(candidate)) return candidate;
  }
  TORCH_CHECK(false, reader, ": ", directory.string(), ": has neither ", name, " nor ", name, ".gz");
}

}  // namespace detail
}  // namespace ardent::data
