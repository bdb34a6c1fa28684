#pragma once
// Decoding one PNG or JPEG file's bytes into a uint8 tensor [C, H, W] (C = 1 or 3), for
// data::ImageFolder. The format is read from the bytes (PNG's and JPEG's signatures), never from
// the file name.
//
// Why these decoders: libpng and libjpeg-turbo are the reference implementations of the two
// formats, packaged by every distribution (Debian: libpng-dev, libjpeg62-turbo-dev), maintained
// under continuous fuzzing (OSS-Fuzz), and libjpeg-turbo decodes with SIMD (2-6x libjpeg's
// speed). The alternatives cost more than they give: OpenCV and libvips bring a large library for
// two formats; stb_image is one header but has had many memory-safety bugs on malformed input,
// which a loader of users' folders meets.
//
// A corrupt, truncated or unsupported file throws a c10::Error that names it; so does an image
// larger than kMaxImagePixels (a crafted header must not allocate gigabytes). libjpeg's
// corrupt-data warnings (e.g. "Premature end of JPEG file", which it would fill with grey) are
// errors here too. Needs linking with libpng and libjpeg (CMake: the ardent::images target).

#include <torch/torch.h>

#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include <jpeglib.h>

namespace ardent::data {

/// The largest image decoded, in pixels (64 megapixels).
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 26;

namespace detail {

[[noreturn]] inline void fail_image(std::string_view name, std::string_view why) {
  TORCH_CHECK(false, "ardent::data::decode_image: '", name, "': ", why);
}

inline bool dimensions_allowed(int64_t width, int64_t height) {
  return width > 0 && height > 0 && width <= kMaxImagePixels / height;
}

inline torch::Tensor decode_png(const unsigned char* data, std::size_t size, int64_t channels, std::string_view name) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_memory(&image, data, size) == 0) {
    const std::string message = image.message;
    png_image_free(&image);
    fail_image(name, "not a valid PNG file: " + message);
  }
  if (!dimensions_allowed(image.width, image.height)) {
    png_image_free(&image);
    fail_image(name, "a PNG of " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                         " pixels, more than kMaxImagePixels");
  }
  image.format = channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  auto hwc = torch::empty({static_cast<int64_t>(image.height), static_cast<int64_t>(image.width), channels},
                          torch::kUInt8);
  if (png_image_finish_read(&image, nullptr, hwc.data_ptr<uint8_t>(), 0, nullptr) == 0) {
    const std::string message = image.message;
    png_image_free(&image);
    fail_image(name, "corrupt PNG data: " + message);
  }
  png_image_free(&image);
  return hwc.permute({2, 0, 1}).contiguous();
}

struct JpegErrorManager {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

/// libjpeg reports errors by calling error_exit, which must not return: it jumps back into
/// decode_jpeg_pixels. Warnings (level -1: corrupt data) jump too.
extern "C" inline void ardent_jpeg_error_exit(j_common_ptr info) {
  auto* errors = reinterpret_cast<JpegErrorManager*>(info->err);
  (*info->err->format_message)(info, errors->message);
  std::longjmp(errors->jump, 1);
}
extern "C" inline void ardent_jpeg_emit_message(j_common_ptr info, int level) {
  if (level < 0) ardent_jpeg_error_exit(info);
}

/// The libjpeg part, in a frame with trivially destructible locals only (longjmp skips destructors):
/// returns a malloc'd H x W x channels buffer, or nullptr with `message` set.
inline unsigned char* decode_jpeg_pixels(const unsigned char* data, std::size_t size, int channels, int* width,
                                         int* height, char* message) {
  jpeg_decompress_struct info;
  JpegErrorManager errors;
  info.err = jpeg_std_error(&errors.manager);
  errors.manager.error_exit = ardent_jpeg_error_exit;
  errors.manager.emit_message = ardent_jpeg_emit_message;
  unsigned char* volatile pixels = nullptr;
  if (setjmp(errors.jump) != 0) {
    jpeg_destroy_decompress(&info);
    std::free(pixels);
    std::snprintf(message, JMSG_LENGTH_MAX, "%s", errors.message);
    return nullptr;
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, data, static_cast<unsigned long>(size));
  jpeg_read_header(&info, TRUE);
  info.out_color_space = channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
  if (!dimensions_allowed(info.image_width, info.image_height)) {
    jpeg_destroy_decompress(&info);
    std::snprintf(message, JMSG_LENGTH_MAX, "a JPEG of %ux%u pixels, more than kMaxImagePixels", info.image_width,
                  info.image_height);
    return nullptr;
  }
  jpeg_start_decompress(&info);
  const std::size_t stride = static_cast<std::size_t>(info.output_width) * static_cast<std::size_t>(channels);
  pixels = static_cast<unsigned char*>(std::malloc(stride * info.output_height));
  if (pixels == nullptr) {
    jpeg_destroy_decompress(&info);
    std::snprintf(message, JMSG_LENGTH_MAX, "out of memory");
    return nullptr;
  }
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = pixels + static_cast<std::size_t>(info.output_scanline) * stride;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  *width = static_cast<int>(info.output_width);
  *height = static_cast<int>(info.output_height);
  jpeg_destroy_decompress(&info);
  return pixels;
}

inline torch::Tensor decode_jpeg(const unsigned char* data, std::size_t size, int64_t channels, std::string_view name) {
  int width = 0;
  int height = 0;
  char message[JMSG_LENGTH_MAX] = {};
  unsigned char* pixels = decode_jpeg_pixels(data, size, static_cast<int>(channels), &width, &height, message);
  if (pixels == nullptr) fail_image(name, std::string("corrupt JPEG data: ") + message);
  auto hwc = torch::from_blob(
      pixels, {height, width, channels}, [](void* p) { std::free(p); }, torch::kUInt8);
  return hwc.permute({2, 0, 1}).contiguous();
}

}  // namespace detail

/// Decodes a PNG or JPEG image (`bytes`, the file's contents) to uint8 [channels, H, W], RGB for 3
/// channels, luma for 1. `name` (the file's path) goes into every error message.
inline torch::Tensor decode_image(std::string_view bytes, std::string_view name, int64_t channels = 3) {
  TORCH_CHECK(channels == 1 || channels == 3, "ardent::data::decode_image: argument 'channels' is ", channels,
              ", expected 1 or 3");
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  static constexpr unsigned char png_signature[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (bytes.size() >= sizeof(png_signature) && std::memcmp(data, png_signature, sizeof(png_signature)) == 0) {
    return detail::decode_png(data, bytes.size(), channels, name);
  }
  if (bytes.size() >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) {
    return detail::decode_jpeg(data, bytes.size(), channels, name);
  }
  detail::fail_image(name, bytes.empty() ? "the file is empty" : "neither a PNG nor a JPEG file (by its first bytes)");
}

}  // namespace ardent::data
