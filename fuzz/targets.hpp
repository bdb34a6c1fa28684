#pragma once
// ardent's fuzz targets: each takes any bytes and must either succeed or throw std::exception,
// never crash, leak, read out of bounds or hit undefined behaviour (checked under AddressSanitizer
// and UndefinedBehaviorSanitizer). Used by the AFL++ binaries (fuzz/fuzz_main.cpp, through
// scripts/fuzz.sh) and by the corpus replay (fuzz/replay.cpp, ctest label `fuzz`).

#include <ardent/data/cifar.hpp>
#include <ardent/data/image_decode.hpp>
#include <ardent/data/mnist.hpp>
#include <ardent/io/state_dict.hpp>
#include <ardent/models/small_cnn.hpp>
#include <ardent/train/checkpoint.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace ardent_fuzz {

/// The state-dict reader (zip directory, CRC-32s, the pickle machine, tensor rebuilding), then a
/// load into a SmallCNN of width 2 (the key and shape checks).
inline void state_dict(const uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    const auto dict = ardent::io::detail::state_dict_from_bytes(bytes, "fuzz");
    for (const auto& item : dict) {
      if (item.value().numel() > 0 && item.value().numel() < (1 << 20)) (void)item.value().sum();
    }
  } catch (const std::exception&) {
  }
}

/// The bytes in a temporary file (the readers that take a path), removed by the destructor.
struct TemporaryFile {
  std::filesystem::path path;
  TemporaryFile(const uint8_t* data, std::size_t size, const std::string& name)
      : path(std::filesystem::temp_directory_path() / ("ardent_fuzz_" + std::to_string(::getpid()) + "_" + name)) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) return;
    std::fwrite(data, 1, size, f);
    std::fclose(f);
  }
  ~TemporaryFile() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
};

/// The IDX reader, for 1 and 3 dimensions (labels and images): in memory, and from a file, where
/// gzip-compressed input is inflated only after its header is checked (so a file whose header
/// promises gigabytes is a finding under the memory limit of scripts/fuzz.sh).
inline void idx(const uint8_t* data, std::size_t size) {
  const std::vector<unsigned char> bytes(data, data + size);
  const TemporaryFile file(data, size, "idx");
  for (int dims : {1, 3}) {
    try {
      (void)ardent::data::detail::parse_idx_u8(bytes, dims, "fuzz");
    } catch (const std::exception&) {
    }
    try {
      (void)ardent::data::read_idx_u8(file.path, dims);
    } catch (const std::exception&) {
    }
  }
}

/// The CIFAR-10 and CIFAR-100 record readers.
inline void cifar(const uint8_t* data, std::size_t size) {
  const std::vector<unsigned char> bytes(data, data + size);
  using Layout = ardent::data::detail::CifarRecordLayout;
  for (const auto& layout : {Layout{"cifar10", 1, 0, 10}, Layout{"cifar100", 2, 1, 100}}) {
    try {
      (void)ardent::data::detail::parse_cifar_records(bytes, layout, "fuzz");
    } catch (const std::exception&) {
    }
  }
}

/// The image decoder (data::ImageFolder's entry point): PNG and JPEG, RGB and luma.
inline void image(const uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (int64_t channels : {3, 1}) {
    try {
      (void)ardent::data::decode_image(bytes, "fuzz", channels).sum();
    } catch (const std::exception&) {
    }
  }
}

/// The checkpoint reader, into a SmallCNN of width 2 with Adam (from a temporary file).
inline void checkpoint(const uint8_t* data, std::size_t size) {
  const TemporaryFile file(data, size, "checkpoint.pt");
  static ardent::models::SmallCNN model(ardent::models::SmallCNNOptions(10).width(2));
  static torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(0.01));
  ardent::train::Checkpoint target{0, {{"student", model.ptr()}}, &optimizer};
  try {
    (void)ardent::train::load_checkpoint(target, file.path);
  } catch (const std::exception&) {
  }
}

}  // namespace ardent_fuzz
