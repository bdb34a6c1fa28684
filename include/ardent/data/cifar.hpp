#pragma once
// CIFAR-10 (Krizhevsky 2009), binary version: data_batch_1.bin ... data_batch_5.bin (training,
// 50,000 images) and test_batch.bin (10,000). Each file is a sequence of 3073-byte records: one
// label byte (0..9), then 3072 pixel bytes, the 32x32 red plane, then green, then blue, each in
// row-major order. Files may also be gzip-compressed (name.bin.gz).

#include "ardent/data/mnist.hpp"

#include <string>
#include <vector>

namespace ardent::data {

/// Images as float32 [N, 3, 32, 32] in [0, 1], labels as int64 [N].
class CIFAR10 : public torch::data::datasets::Dataset<CIFAR10> {
 public:
  enum class Split { Train, Test };
  static constexpr std::size_t kRecordBytes = 3073;

  explicit CIFAR10(const std::filesystem::path& directory, Split split = Split::Train) {
    std::vector<torch::Tensor> images;
    std::vector<torch::Tensor> labels;
    std::vector<std::string> files;
    if (split == Split::Train) {
      for (int i = 1; i <= 5; ++i) files.push_back(fmt::format("data_batch_{}.bin", i));
    } else {
      files.emplace_back("test_batch.bin");
    }
    for (const auto& file : files) {
      auto [x, y] = read_file(find(directory, file));
      images.push_back(std::move(x));
      labels.push_back(std::move(y));
    }
    images_ = torch::cat(images).to(torch::kFloat32).div_(255.0);
    labels_ = torch::cat(labels).to(torch::kInt64);
  }

  /// One binary batch file: (uint8 images [n, 3, 32, 32], uint8 labels [n]). Throws naming the
  /// path when the file is empty, truncated (not a whole number of records) or has a label > 9.
  static std::pair<torch::Tensor, torch::Tensor> read_file(const std::filesystem::path& path) {
    const auto bytes = detail::read_maybe_gzipped(path);
    const auto where = path.string();
    TORCH_CHECK(!bytes.empty(), "ardent::data::CIFAR10: ", where, ": empty file, expected 3073-byte records");
    TORCH_CHECK(bytes.size() % kRecordBytes == 0, "ardent::data::CIFAR10: ", where,
                ": truncated or malformed: ", bytes.size(), " bytes is not a whole number of 3073-byte records (",
                bytes.size() % kRecordBytes, " bytes left over)");
    const auto n = static_cast<int64_t>(bytes.size() / kRecordBytes);
    const auto records = torch::from_blob(const_cast<unsigned char*>(bytes.data()), {n, 3073}, torch::kUInt8);
    auto labels = records.select(1, 0).clone();
    const int64_t largest = labels.max().item<int64_t>();
    TORCH_CHECK(largest < 10, "ardent::data::CIFAR10: ", where, ": malformed: label ", largest,
                " in a record's first byte, expected 0..9");
    auto images = records.slice(1, 1).reshape({n, 3, 32, 32}).clone();
    return {std::move(images), std::move(labels)};
  }

  torch::data::Example<> get(size_t index) override {
    return {images_[static_cast<int64_t>(index)], labels_[static_cast<int64_t>(index)]};
  }
  torch::optional<size_t> size() const override { return static_cast<size_t>(images_.size(0)); }

  const torch::Tensor& images() const { return images_; }
  const torch::Tensor& labels() const { return labels_; }

 private:
  static std::filesystem::path find(const std::filesystem::path& directory, const std::string& name) {
    for (const auto& candidate : {directory / name, directory / (name + ".gz")}) {
      if (std::filesystem::is_regular_file(candidate)) return candidate;
    }
    TORCH_CHECK(false, "ardent::data::CIFAR10: ", directory.string(), ": has neither ", name, " nor ", name, ".gz");
  }

  torch::Tensor images_;
  torch::Tensor labels_;
};

}  // namespace ardent::data
