#pragma once
// ImageFolder: a data set of image files in the layout torchvision's ImageFolder reads,
//
//   root/<class>/<image>.png|.jpg|.jpeg      (classes numbered 0.. in sorted order of their names)
//
// decoded on demand (data/image_decode.hpp: PNG and JPEG) and brought to one size as torchvision's
// Resize(resize) + CenterCrop(size) do: the shorter side is scaled to `resize` (bilinear, with
// antialiasing when shrinking), then the central size x size square is cut out. Pixels are floats
// in [0, 1], [C, size, size]. ImageFolderBatches (data/image_batches.hpp) batches, shards,
// augments and decodes it ahead in background threads.
//
// Files are listed once, at construction, sorted (class, then file name), so an example's index
// is the same in every process and every run over the same folder.

#include "ardent/core/check.hpp"
#include "ardent/data/image_decode.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace ardent::data {

struct ImageFolderOptions {
  /// Side of the square images returned (0: as decoded, which every image must then share).
  TORCH_ARG(int64_t, size) = 0;
  /// The shorter side is scaled to this before the central crop (0: to `size`).
  TORCH_ARG(int64_t, resize) = 0;
  /// 3 (RGB) or 1 (luma).
  TORCH_ARG(int64_t, channels) = 3;
};

class ImageFolder {
 public:
  explicit ImageFolder(std::filesystem::path root, ImageFolderOptions options = {})
      : root_(std::move(root)), options_(options) {
    const char* where = "ardent::data::ImageFolder";
    if (options_.channels() != 1 && options_.channels() != 3)
      fail_argument(where, "options.channels", fmt::format("is {}, expected 1 or 3", options_.channels()));
    if (options_.size() < 0 || options_.resize() < 0) {
      fail_argument(where, "options.size",
                    fmt::format("is {} (resize {}), expected >= 0", options_.size(), options_.resize()));
    }
    if (options_.resize() > 0 && options_.size() > options_.resize()) {
      fail_argument(where, "options.size",
                    fmt::format("is {}, expected <= options.resize ({})", options_.size(), options_.resize()));
    }
    TORCH_CHECK(std::filesystem::is_directory(root_), where, ": '", root_.string(), "' is not a directory");
    for (const auto& entry : std::filesystem::directory_iterator(root_)) {
      if (entry.is_directory()) classes_.push_back(entry.path().filename().string());
    }
    std::sort(classes_.begin(), classes_.end());
    for (std::size_t c = 0; c < classes_.size(); ++c) {
      std::vector<std::filesystem::path> files;
      for (const auto& entry : std::filesystem::directory_iterator(root_ / classes_[c])) {
        if (entry.is_regular_file() && is_image_name(entry.path())) files.push_back(entry.path());
      }
      std::sort(files.begin(), files.end());
      for (auto& f : files) {
        paths_.push_back(std::move(f));
        labels_.push_back(static_cast<int64_t>(c));
      }
    }
    TORCH_CHECK(!paths_.empty(), where, ": no .png, .jpg or .jpeg files in '", root_.string(),
                "/<class>/' (expected root/<class>/<image>)");
  }

  int64_t size() const { return static_cast<int64_t>(paths_.size()); }
  const std::vector<std::string>& classes() const { return classes_; }
  const std::filesystem::path& path(int64_t index) const { return paths_.at(static_cast<std::size_t>(index)); }
  int64_t label(int64_t index) const { return labels_.at(static_cast<std::size_t>(index)); }
  /// Every example's label, int64 [size()].
  torch::Tensor labels() const { return torch::tensor(labels_, torch::kLong); }
  const ImageFolderOptions& options() const { return options_; }

  /// Example `index` as floats in [0, 1], [C, size, size]; throws naming the file when it cannot be
  /// read or decoded. Safe to call from several threads.
  torch::Tensor get(int64_t index) const {
    TORCH_CHECK(index >= 0 && index < size(), "ardent::data::ImageFolder::get: argument 'index' is ", index,
                ", expected in [0, ", size(), ")");
    const auto& file = path(index);
    std::ifstream in(file, std::ios::binary);
    TORCH_CHECK(in, "ardent::data::ImageFolder: cannot open '", file.string(), "'");
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    TORCH_CHECK(!in.bad(), "ardent::data::ImageFolder: cannot read '", file.string(), "'");
    return transform(decode_image(bytes, file.string(), options_.channels()), file);
  }

 private:
  static bool is_image_name(const std::filesystem::path& p) {
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
    return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
  }

  /// Resize(resize) + CenterCrop(size), as floats in [0, 1].
  torch::Tensor transform(const torch::Tensor& pixels, const std::filesystem::path& file) const {
    auto image = pixels.to(torch::kFloat).div_(255.0);
    const int64_t size = options_.size();
    if (size == 0) return image;
    const int64_t target = options_.resize() > 0 ? options_.resize() : size;
    const int64_t h = image.size(1);
    const int64_t w = image.size(2);
    const int64_t shorter = std::min(h, w);
    if (shorter != target) {
      // The shorter side becomes `target`; the other keeps the aspect ratio (torchvision's rounding).
      const auto scaled = [&](int64_t side) { return side * target / shorter; };
      const std::vector<int64_t> out_size{h <= w ? target : scaled(h), h <= w ? scaled(w) : target};
      image = torch::nn::functional::interpolate(image.unsqueeze(0), torch::nn::functional::InterpolateFuncOptions()
                                                                         .size(out_size)
                                                                         .mode(torch::kBilinear)
                                                                         .align_corners(false)
                                                                         .antialias(shorter > target))
                  .squeeze(0)
                  .clamp_(0.0, 1.0);
    }
    TORCH_CHECK(image.size(1) >= size && image.size(2) >= size, "ardent::data::ImageFolder: '", file.string(), "' is ",
                image.size(2), "x", image.size(1), " after resizing, smaller than size ", size);
    const int64_t top = (image.size(1) - size) / 2;
    const int64_t left = (image.size(2) - size) / 2;
    return image.slice(1, top, top + size).slice(2, left, left + size).contiguous();
  }

  std::filesystem::path root_;
  ImageFolderOptions options_;
  std::vector<std::string> classes_;
  std::vector<std::filesystem::path> paths_;
  std::vector<int64_t> labels_;
};

}  // namespace ardent::data
