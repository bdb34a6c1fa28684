#pragma once
// What ardent checks in a zip archive (the container of torch.save, torch::save and ardent's
// checkpoints) before LibTorch's reader allocates anything: the central directory is parsed here
// (PKWARE APPNOTE 6.3, sections 4.3.12 to 4.3.16, with the zip64 records of 4.3.14/4.3.15 and the
// extra field of 4.5.3), every record's size is bounded by the file's size (stored records) or by
// deflate's largest ratio, 1032:1 (compressed ones), and on request each record's CRC-32 is
// compared with its data. LibTorch's PyTorchStreamReader skips the CRC check, so without this a
// flipped bit in a tensor loads silently.

#include "ardent/io/limits.hpp"

#include <torch/torch.h>

#include <fmt/format.h>

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ardent::io::detail {

struct ZipEntry {
  uint16_t method = 0;  // 0: stored, 8: deflated
  uint32_t crc = 0;
  uint64_t compressed = 0;
  uint64_t uncompressed = 0;
  uint64_t local_header = 0;
};

/// Deflate's largest expansion (RFC 1951: a 258-byte match costs at least 2 bits, 258 * 4 = 1032).
inline constexpr uint64_t kMaxDeflateRatio = 1032;

inline uint64_t read_le(std::string_view bytes, uint64_t at, int width) {
  TORCH_CHECK(at <= bytes.size() && static_cast<uint64_t>(width) <= bytes.size() - at,
              "zip structure runs past the end of the file (byte ", at, ")");
  uint64_t v = 0;
  for (int i = 0; i < width; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
  return v;
}

/// The records of a zip archive by name, the archive's top folder stripped (torch.save writes
/// "<archive>/data.pkl"; PyTorchStreamReader names it "data.pkl"). Throws on any inconsistency.
inline std::map<std::string, ZipEntry> zip_directory(std::string_view bytes) {
  constexpr uint64_t eocd_size = 22;
  TORCH_CHECK(bytes.size() >= eocd_size, "too short for a zip archive (", bytes.size(), " bytes)");
  // The end-of-central-directory record: the last 22 bytes, or earlier by a comment of <= 65535.
  uint64_t eocd = bytes.size() - eocd_size;
  const uint64_t lowest = bytes.size() > eocd_size + 65535 ? bytes.size() - eocd_size - 65535 : 0;
  while (read_le(bytes, eocd, 4) != 0x06054b50) {
    TORCH_CHECK(eocd > lowest, "no zip end-of-central-directory record");
    --eocd;
  }
  uint64_t count = read_le(bytes, eocd + 10, 2);
  uint64_t directory = read_le(bytes, eocd + 16, 4);
  if (count == 0xFFFF || directory == 0xFFFFFFFF) {  // zip64
    TORCH_CHECK(eocd >= 20 && read_le(bytes, eocd - 20, 4) == 0x07064b50, "zip64 locator missing");
    const uint64_t record = read_le(bytes, eocd - 20 + 8, 8);
    TORCH_CHECK(read_le(bytes, record, 4) == 0x06064b50, "zip64 end-of-central-directory record missing");
    count = read_le(bytes, record + 32, 8);
    directory = read_le(bytes, record + 48, 8);
  }
  // Each central directory entry takes at least 46 bytes: a count beyond that is a lie.
  TORCH_CHECK(directory <= bytes.size() && count <= (bytes.size() - directory) / 46, "zip directory of ", count,
              " entries at byte ", directory, " does not fit in the file");
  std::map<std::string, ZipEntry> out;
  uint64_t at = directory;
  // What the deflated records inflate to, together, bounded by max_inflation times the file.
  uint64_t inflated = 0;
  const uint64_t most = inflation_bound(bytes.size());
  for (uint64_t i = 0; i < count; ++i) {
    TORCH_CHECK(read_le(bytes, at, 4) == 0x02014b50, "zip directory entry ", i, " is damaged (byte ", at, ")");
    ZipEntry e;
    e.method = static_cast<uint16_t>(read_le(bytes, at + 10, 2));
    e.crc = static_cast<uint32_t>(read_le(bytes, at + 16, 4));
    e.compressed = read_le(bytes, at + 20, 4);
    e.uncompressed = read_le(bytes, at + 24, 4);
    const uint64_t name_length = read_le(bytes, at + 28, 2);
    const uint64_t extra_length = read_le(bytes, at + 30, 2);
    const uint64_t comment_length = read_le(bytes, at + 32, 2);
    e.local_header = read_le(bytes, at + 42, 4);
    TORCH_CHECK(at + 46 + name_length <= bytes.size(), "zip directory entry ", i, " runs past the end of the file");
    std::string name(bytes.substr(at + 46, name_length));
    // The zip64 extra field holds, in this order, each of the sizes and the offset that are 0xFFFFFFFF.
    uint64_t extra = at + 46 + name_length;
    const uint64_t extra_end = extra + extra_length;
    while (extra + 4 <= extra_end) {
      const uint64_t id = read_le(bytes, extra, 2);
      const uint64_t size = read_le(bytes, extra + 2, 2);
      if (id == 0x0001) {
        uint64_t field = extra + 4;
        if (e.uncompressed == 0xFFFFFFFF) {
          e.uncompressed = read_le(bytes, field, 8);
          field += 8;
        }
        if (e.compressed == 0xFFFFFFFF) {
          e.compressed = read_le(bytes, field, 8);
          field += 8;
        }
        if (e.local_header == 0xFFFFFFFF) e.local_header = read_le(bytes, field, 8);
      }
      extra += 4 + size;
    }
    TORCH_CHECK(e.method == 0 || e.method == 8, "zip record '", name, "' uses compression method ", e.method,
                ", expected 0 (stored) or 8 (deflate)");
    TORCH_CHECK(e.local_header < bytes.size() && e.compressed <= bytes.size() - e.local_header, "zip record '", name,
                "' claims ", e.compressed, " bytes at byte ", e.local_header, ", beyond the file's ", bytes.size());
    TORCH_CHECK(e.method == 0 ? e.uncompressed == e.compressed : e.uncompressed / kMaxDeflateRatio <= e.compressed,
                "zip record '", name, "' claims ", e.uncompressed, " bytes from ", e.compressed, " stored ones");
    if (e.method == 8) {
      TORCH_CHECK(!__builtin_add_overflow(inflated, e.uncompressed, &inflated) && inflated <= most, "zip record '",
                  name, "' inflates the archive's compressed records to ", inflated,
                  " bytes or more, more than max_inflation = ", read_limits().max_inflation(), " times the file's ",
                  bytes.size(), " bytes (at least 1 MiB)", kRaiseLimitHint);
    }
    const auto slash = name.find('/');
    out[slash == std::string::npos ? name : name.substr(slash + 1)] = e;
    at += 46 + name_length + extra_length + comment_length;
  }
  return out;
}

/// The CRC-32 of the zip directory entry, as zlib computes it, over any length.
inline uint32_t crc32_of(const void* data, std::size_t size) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  while (size > 0) {
    const auto n = static_cast<uInt>(std::min<std::size_t>(size, 1U << 30));
    crc = ::crc32(crc, p, n);
    p += n;
    size -= n;
  }
  return static_cast<uint32_t>(crc);
}

/// LibTorch's archive reader over bytes in memory (no copy).
class BytesReadAdapter final : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit BytesReadAdapter(std::string_view bytes) : bytes_(bytes) {}
  std::size_t size() const override { return bytes_.size(); }
  std::size_t read(uint64_t pos, void* buf, std::size_t n, const char* /*what*/) const override {
    if (pos >= bytes_.size()) return 0;
    n = static_cast<std::size_t>(std::min<uint64_t>(n, bytes_.size() - pos));
    std::memcpy(buf, bytes_.data() + pos, n);
    return n;
  }

 private:
  std::string_view bytes_;
};

/// A zip archive of torch.save or torch::save whose records are read only after the directory
/// above has bounded their sizes, and are compared with their CRC-32 when read.
class CheckedArchive {
 public:
  explicit CheckedArchive(std::string_view bytes)
      : directory_(zip_directory(bytes)), reader_(std::make_shared<BytesReadAdapter>(bytes)) {}

  bool has(const std::string& name) const { return directory_.count(name) > 0; }

  /// Whether this is what torch::save (LibTorch) or torch.jit.save writes: TorchScript code
  /// beside the data, rather than Python's torch.save of a state dict.
  bool is_module_archive() const {
    if (has("constants.pkl")) return true;
    const auto it = directory_.lower_bound("code/");
    return it != directory_.end() && it->first.rfind("code/", 0) == 0;
  }

  /// The record's bytes; throws when it is absent or fails its CRC-32 check.
  std::pair<std::shared_ptr<at::DataPtr>, std::size_t> record(const std::string& name) {
    const auto it = directory_.find(name);
    TORCH_CHECK(it != directory_.end() && reader_.hasRecord(name), "the archive has no record '", name, "'");
    auto [data, size] = reader_.getRecord(name);
    TORCH_CHECK(size == it->second.uncompressed, "record '", name, "' has ", size, " bytes, its directory entry ",
                it->second.uncompressed);
    const uint32_t crc = crc32_of(data.get(), size);
    TORCH_CHECK(crc == it->second.crc, "record '", name, "' fails its CRC-32 check (stored ",
                fmt::format("{:08x}, computed {:08x}", it->second.crc, crc), "): the file is corrupted");
    return {std::make_shared<at::DataPtr>(std::move(data)), size};
  }

  /// Reads every record once, checking each CRC-32.
  void verify() {
    for (const auto& name : reader_.getAllRecords()) record(name);
  }

 private:
  std::map<std::string, ZipEntry> directory_;
  caffe2::serialize::PyTorchStreamReader reader_;
};

}  // namespace ardent::io::detail
