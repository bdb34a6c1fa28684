#pragma once
// MNIST-format IDX files (LeCun et al.; Fashion-MNIST, Xiao et al. 2017 uses the same format),
// plain or gzip-compressed. An IDX file is a big-endian header (magic 0x0000 08 NN: unsigned
// bytes, NN dimensions; then NN uint32 sizes) followed by the data in C order.

#include "ardent/data/labelled_images.hpp"

#include <torch/torch.h>

#include <fmt/format.h>
#include <zlib.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace ardent::data {

/// Where Debian's dataset-fashion-mnist package puts the files.
inline const std::filesystem::path kFashionMNISTDirectory = "/usr/share/datasets/fashion-mnist";

namespace detail {

/// Reads a whole file, gunzipping it when it is gzip-compressed (zlib reads plain files as they are).
inline std::vector<unsigned char> read_maybe_gzipped(const std::filesystem::path& path) {
  TORCH_CHECK(std::filesystem::is_regular_file(path), "ardent::data: ", path.string(), ": no such file");
  const std::unique_ptr<gzFile_s, int (*)(gzFile)> file(gzopen(path.c_str(), "rb"), gzclose);
  TORCH_CHECK(file != nullptr, "ardent::data: ", path.string(), ": cannot open");
  std::vector<unsigned char> bytes;
  std::array<unsigned char, 1 << 16> buffer{};
  while (true) {
    const int n = gzread(file.get(), buffer.data(), static_cast<unsigned>(buffer.size()));
    if (n < 0) {
      int code = 0;
      TORCH_CHECK(false, "ardent::data: ", path.string(), ": corrupt compressed data (", gzerror(file.get(), &code),
                  ")");
    }
    if (n == 0) break;
    bytes.insert(bytes.end(), buffer.begin(), buffer.begin() + n);
  }
  return bytes;
}

inline uint32_t big_endian_u32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24U) | (uint32_t{p[1]} << 16U) | (uint32_t{p[2]} << 8U) | uint32_t{p[3]};
}

}  // namespace detail

namespace detail {

/// The IDX data in `bytes` (see read_idx_u8); `where` names the file in errors. The element count
/// is multiplied with overflow checks: dimensions [2^31, 2^31, 4] would otherwise wrap to 0.
inline torch::Tensor parse_idx_u8(const std::vector<unsigned char>& bytes, int expected_dims,
                                  const std::string& where) {
  TORCH_CHECK(bytes.size() >= 4, "ardent::data: ", where, ": truncated: ", bytes.size(),
              " bytes, shorter than the 4-byte IDX magic number");
  TORCH_CHECK(bytes[0] == 0 && bytes[1] == 0 && bytes[2] == 0x08, "ardent::data: ", where,
              fmt::format(": wrong magic number {:02x}{:02x}{:02x}{:02x}, expected 000008{:02x} (IDX, unsigned bytes)",
                          bytes[0], bytes[1], bytes[2], bytes[3], expected_dims));
  TORCH_CHECK(bytes[3] == expected_dims, "ardent::data: ", where, ": has ", int{bytes[3]}, " dimensions, expected ",
              expected_dims);
  const std::size_t header = 4 + 4 * static_cast<std::size_t>(expected_dims);
  TORCH_CHECK(bytes.size() >= header, "ardent::data: ", where, ": truncated header: ", bytes.size(),
              " bytes, expected at least ", header);
  std::vector<int64_t> shape;
  uint64_t count = 1;
  bool overflow = false;
  for (int d = 0; d < expected_dims; ++d) {
    shape.push_back(big_endian_u32(bytes.data() + 4 + 4 * d));
    overflow = overflow || __builtin_mul_overflow(count, static_cast<uint64_t>(shape.back()), &count);
  }
  TORCH_CHECK(!overflow, "ardent::data: ", where, ": header promises ", fmt::format("{}", fmt::join(shape, " x ")),
              " bytes of data, more than 2^64");
  TORCH_CHECK(bytes.size() - header == count, "ardent::data: ", where, ": ",
              bytes.size() - header < count ? "truncated" : "trailing bytes", ": header promises ", count,
              " bytes of data, file has ", bytes.size() - header);
  return torch::from_blob(const_cast<unsigned char*>(bytes.data() + header), shape, torch::kUInt8).clone();
}

}  // namespace detail

/// An IDX file of unsigned bytes with `expected_dims` dimensions, as a uint8 tensor of its shape.
/// Throws with the path and the problem on a wrong magic number, a wrong dimension count or a
/// size that disagrees with the header.
inline torch::Tensor read_idx_u8(const std::filesystem::path& path, int expected_dims) {
  return detail::parse_idx_u8(detail::read_maybe_gzipped(path), expected_dims, path.string());
}

/// MNIST and Fashion-MNIST: images as float32 [N, 1, 28, 28] in [0, 1], labels as int64 [N].
/// Files are looked up as `<prefix>-images-idx3-ubyte[.gz]` and `<prefix>-labels-idx1-ubyte[.gz]`
/// with prefix `train` or `t10k`.
class MNIST : public LabelledImages<MNIST> {
 public:
  enum class Split { Train, Test };

  explicit MNIST(const std::filesystem::path& directory = kFashionMNISTDirectory, Split split = Split::Train) {
    const std::string prefix = split == Split::Train ? "train" : "t10k";
    constexpr std::string_view reader = "ardent::data::MNIST";
    const auto images = read_idx_u8(detail::find_data_file(reader, directory, prefix + "-images-idx3-ubyte"), 3);
    const auto labels = read_idx_u8(detail::find_data_file(reader, directory, prefix + "-labels-idx1-ubyte"), 1);
    TORCH_CHECK(images.size(1) == 28 && images.size(2) == 28, "ardent::data::MNIST: ", directory.string(),
                ": images are ", images.size(1), "x", images.size(2), ", expected 28x28");
    TORCH_CHECK(images.size(0) == labels.size(0), "ardent::data::MNIST: ", directory.string(), ": ", images.size(0),
                " images but ", labels.size(0), " labels");
    TORCH_CHECK(labels.numel() == 0 || labels.max().item<int64_t>() < 10, "ardent::data::MNIST: ", directory.string(),
                ": labels outside 0..9");
    assign(images.unsqueeze(1), labels);
  }
};

}  // namespace ardent::data
