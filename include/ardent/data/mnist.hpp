#pragma once
// MNIST-format IDX files (LeCun et al.; Fashion-MNIST, Xiao et al. 2017 uses the same format),
// plain or gzip-compressed. An IDX file is a big-endian header (magic 0x0000 08 NN: unsigned
// bytes, NN dimensions; then NN uint32 sizes) followed by the data in C order.

#include "ardent/data/labelled_images.hpp"
#include "ardent/io/limits.hpp"

#include <torch/torch.h>

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
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

/// A file opened with zlib, which reads gzip-compressed and plain files alike.
using GzFile = std::unique_ptr<gzFile_s, int (*)(gzFile)>;

inline GzFile open_maybe_gzipped(const std::filesystem::path& path) {
  std::error_code ec;
  TORCH_CHECK(std::filesystem::is_regular_file(path, ec), "ardent::data: ", path.string(), ": no such file");
  const auto size = std::filesystem::file_size(path, ec);
  TORCH_CHECK(!ec && size <= io::read_limits().max_file_bytes(), "ardent::data: ", path.string(), ": ", size,
              " bytes, more than the largest file accepted, max_file_bytes = ", io::read_limits().max_file_bytes(),
              io::kRaiseLimitHint);
  GzFile file(gzopen(path.c_str(), "rb"), gzclose);
  TORCH_CHECK(file != nullptr, "ardent::data: ", path.string(), ": cannot open");
  return file;
}

/// Reads up to `size` bytes into `out`; returns how many (fewer at the end of the data).
inline std::size_t read_some(gzFile file, unsigned char* out, std::size_t size, const std::filesystem::path& path) {
  std::size_t done = 0;
  while (done < size) {
    const auto chunk = static_cast<unsigned>(std::min<std::size_t>(size - done, 1U << 30));
    const int n = gzread(file, out + done, chunk);
    if (n < 0) {
      int code = 0;
      TORCH_CHECK(false, "ardent::data: ", path.string(), ": corrupt compressed data (", gzerror(file, &code), ")");
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

/// The most bytes a file may hold once inflated: its own size when stored plain,
/// io::inflation_bound of it when gzip-compressed.
inline uint64_t inflated_bound(gzFile file, const std::filesystem::path& path) {
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path, ec);
  return gzdirect(file) == 1 ? size : io::inflation_bound(size);
}

/// Reads a whole file, gunzipping it when it is gzip-compressed, at most inflated_bound() bytes.
inline std::vector<unsigned char> read_maybe_gzipped(const std::filesystem::path& path) {
  const auto file = open_maybe_gzipped(path);
  std::vector<unsigned char> bytes;
  std::array<unsigned char, 1 << 16> buffer{};
  const uint64_t most = inflated_bound(file.get(), path);
  while (true) {
    const std::size_t n = read_some(file.get(), buffer.data(), buffer.size(), path);
    if (n == 0) break;
    bytes.insert(bytes.end(), buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
    TORCH_CHECK(bytes.size() <= most, "ardent::data: ", path.string(),
                ": inflates to more than max_inflation = ", io::read_limits().max_inflation(),
                " times its compressed size (at least 1 MiB)", io::kRaiseLimitHint);
  }
  return bytes;
}

inline uint32_t big_endian_u32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24U) | (uint32_t{p[1]} << 16U) | (uint32_t{p[2]} << 8U) | uint32_t{p[3]};
}

}  // namespace detail

namespace detail {

/// What an IDX header says: the shape, and the data bytes it promises (overflow-checked: dimensions
/// [2^31, 2^31, 4] would otherwise wrap to 0). `header` holds the first `available` bytes.
struct IdxHeader {
  std::vector<int64_t> shape;
  uint64_t count = 1;
  std::size_t bytes = 0;  // the header's own length
};

inline IdxHeader parse_idx_header(const unsigned char* header, std::size_t available, int expected_dims,
                                  const std::string& where) {
  TORCH_CHECK(available >= 4, "ardent::data: ", where, ": truncated: ", available,
              " bytes, shorter than the 4-byte IDX magic number");
  TORCH_CHECK(header[0] == 0 && header[1] == 0 && header[2] == 0x08, "ardent::data: ", where,
              fmt::format(": wrong magic number {:02x}{:02x}{:02x}{:02x}, expected 000008{:02x} (IDX, unsigned bytes)",
                          header[0], header[1], header[2], header[3], expected_dims));
  TORCH_CHECK(header[3] == expected_dims, "ardent::data: ", where, ": has ", int{header[3]}, " dimensions, expected ",
              expected_dims);
  IdxHeader out;
  out.bytes = 4 + 4 * static_cast<std::size_t>(expected_dims);
  TORCH_CHECK(available >= out.bytes, "ardent::data: ", where, ": truncated header: ", available,
              " bytes, expected at least ", out.bytes);
  bool overflow = false;
  for (int d = 0; d < expected_dims; ++d) {
    out.shape.push_back(big_endian_u32(header + 4 + 4 * d));
    overflow = overflow || __builtin_mul_overflow(out.count, static_cast<uint64_t>(out.shape.back()), &out.count);
  }
  TORCH_CHECK(!overflow, "ardent::data: ", where, ": header promises ", fmt::format("{}", fmt::join(out.shape, " x ")),
              " bytes of data, more than 2^64");
  return out;
}

/// The IDX data in `bytes` (see read_idx_u8); `where` names the file in errors.
inline torch::Tensor parse_idx_u8(const std::vector<unsigned char>& bytes, int expected_dims,
                                  const std::string& where) {
  const auto header = parse_idx_header(bytes.data(), bytes.size(), expected_dims, where);
  TORCH_CHECK(bytes.size() - header.bytes == header.count, "ardent::data: ", where, ": ",
              bytes.size() - header.bytes < header.count ? "truncated" : "trailing bytes", ": header promises ",
              header.count, " bytes of data, file has ", bytes.size() - header.bytes);
  return torch::from_blob(const_cast<unsigned char*>(bytes.data() + header.bytes), header.shape, torch::kUInt8).clone();
}

}  // namespace detail

/// An IDX file of unsigned bytes with `expected_dims` dimensions, as a uint8 tensor of its shape.
/// Throws with the path and the problem on a wrong magic number, a wrong dimension count or a
/// size that disagrees with the header.
inline torch::Tensor read_idx_u8(const std::filesystem::path& path, int expected_dims) {
  // The header is read and checked first; then exactly the bytes it promises are inflated, if the
  // file can hold them (inflated_bound), into the tensor itself.
  const auto file = detail::open_maybe_gzipped(path);
  std::array<unsigned char, 4 + 4 * 4> prefix{};
  std::size_t got = detail::read_some(file.get(), prefix.data(), 4, path);
  const int dims = got == 4 && prefix[3] <= 4 ? prefix[3] : expected_dims;
  got += detail::read_some(file.get(), prefix.data() + got, 4 * static_cast<std::size_t>(dims), path);
  const auto header = detail::parse_idx_header(prefix.data(), got, expected_dims, path.string());
  const uint64_t bound = detail::inflated_bound(file.get(), path);
  TORCH_CHECK(header.count <= bound, "ardent::data: ", path.string(), ": header promises ", header.count,
              " bytes of data, more than the file can hold (", bound, " bytes: its size",
              gzdirect(file.get()) == 1 ? "" : " times max_inflation, at least 1 MiB", ")", io::kRaiseLimitHint);
  auto out = torch::empty(header.shape, torch::kUInt8);
  const std::size_t data = detail::read_some(file.get(), out.data_ptr<uint8_t>(), header.count, path);
  unsigned char extra = 0;
  const bool trailing = data == header.count && detail::read_some(file.get(), &extra, 1, path) > 0;
  TORCH_CHECK(data == header.count && !trailing, "ardent::data: ", path.string(), ": ",
              trailing ? "trailing bytes" : "truncated", ": header promises ", header.count,
              " bytes of data, file has ", trailing ? "more" : std::to_string(data));
  return out;
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
