#pragma once
// CIFAR-10 and CIFAR-100 (Krizhevsky 2009). CIFAR-10, binary version: data_batch_1.bin ... data_batch_5.bin (training,
// 50,000 images) and test_batch.bin (10,000). Each file is a sequence of 3073-byte records: one
// label byte (0..9), then 3072 pixel bytes, the 32x32 red plane, then green, then blue, each in
// row-major order. Files may also be gzip-compressed (name.bin.gz).

#include "ardent/data/mnist.hpp"

#include <string>
#include <vector>

namespace ardent::data {

namespace detail {

/// A CIFAR record: `label_bytes` label bytes (the label used is at `label_index`), then 3072 pixels.
struct CifarRecordLayout {
  const char* reader;
  std::size_t label_bytes;
  std::size_t label_index;
  int64_t classes;
};

/// (uint8 images [n, 3, 32, 32], uint8 labels [n]) from one binary file; throws naming the path when
/// the file is empty, not a whole number of records, or has a label outside [0, classes).
inline std::pair<torch::Tensor, torch::Tensor> parse_cifar_records(const std::vector<unsigned char>& bytes,
                                                                   const CifarRecordLayout& layout,
                                                                   const std::string& where) {
  const std::size_t record = layout.label_bytes + 3072;
  TORCH_CHECK(!bytes.empty(), layout.reader, ": ", where, ": empty file, expected ", record, "-byte records");
  TORCH_CHECK(bytes.size() % record == 0, layout.reader, ": ", where, ": truncated or malformed: ", bytes.size(),
              " bytes is not a whole number of ", record, "-byte records (", bytes.size() % record,
              " bytes left over)");
  const auto n = static_cast<int64_t>(bytes.size() / record);
  const auto records = torch::from_blob(const_cast<unsigned char*>(bytes.data()), {n, static_cast<int64_t>(record)},
                                        torch::kUInt8);
  auto labels = records.select(1, static_cast<int64_t>(layout.label_index)).clone();
  const int64_t largest = labels.max().item<int64_t>();
  TORCH_CHECK(largest < layout.classes, layout.reader, ": ", where, ": malformed: label ", largest,
              " in a record, expected 0..", layout.classes - 1);
  auto images = records.slice(1, static_cast<int64_t>(layout.label_bytes)).reshape({n, 3, 32, 32}).clone();
  return {std::move(images), std::move(labels)};
}

inline std::pair<torch::Tensor, torch::Tensor> read_cifar_records(const std::filesystem::path& path,
                                                                  const CifarRecordLayout& layout) {
  return parse_cifar_records(read_maybe_gzipped(path), layout, path.string());
}

}  // namespace detail

/// Images as float32 [N, 3, 32, 32] in [0, 1], labels as int64 [N].
class CIFAR10 : public LabelledImages<CIFAR10> {
 public:
  enum class Split { Train, Test };

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
      auto [x, y] = read_file(detail::find_data_file("ardent::data::CIFAR10", directory, file));
      images.push_back(std::move(x));
      labels.push_back(std::move(y));
    }
    assign(torch::cat(images), torch::cat(labels));
  }

  /// One binary batch file: (uint8 images [n, 3, 32, 32], uint8 labels [n]). Throws naming the
  /// path when the file is empty, truncated (not a whole number of records) or has a label > 9.
  static std::pair<torch::Tensor, torch::Tensor> read_file(const std::filesystem::path& path) {
    return detail::read_cifar_records(path, {"ardent::data::CIFAR10", 1, 0, 10});
  }
};

/// CIFAR-100 (Krizhevsky 2009), binary version: train.bin (50,000 images) and test.bin (10,000),
/// 3074-byte records: the coarse label (0..19), the fine label (0..99), then 3072 pixel bytes as in
/// CIFAR-10. Labels are the fine ones unless `coarse` is set.
class CIFAR100 : public LabelledImages<CIFAR100> {
 public:
  enum class Split { Train, Test };

  explicit CIFAR100(const std::filesystem::path& directory, Split split = Split::Train, bool coarse = false) {
    const std::string name = split == Split::Train ? "train.bin" : "test.bin";
    const auto [images, labels] = read_file(detail::find_data_file("ardent::data::CIFAR100", directory, name), coarse);
    assign(images, labels);
  }

  /// One binary file: (uint8 images [n, 3, 32, 32], uint8 fine or coarse labels [n]).
  static std::pair<torch::Tensor, torch::Tensor> read_file(const std::filesystem::path& path, bool coarse = false) {
    return detail::read_cifar_records(path, {"ardent::data::CIFAR100", 2, coarse ? 0U : 1U, coarse ? 20 : 100});
  }
};

}  // namespace ardent::data
