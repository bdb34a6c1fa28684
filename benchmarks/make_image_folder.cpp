// Writes a folder of generated images in ImageFolder's layout, root/<class>/<n>.png|.jpg, for the
// loader benchmark (benchmarks/image_folder.sh) and the image fuzz seeds (fuzz/corpus/image). Needs
// only libpng and libjpeg:
//
//   g++ -O2 -std=c++20 benchmarks/make_image_folder.cpp -o make_image_folder -lpng -ljpeg
//   make_image_folder ROOT COUNT SIDE png|jpg [CLASSES=10] [CHANNELS=3]
//
// Image n is a smooth two-tone gradient with noise, drawn from a generator seeded by n (the same
// folder on every run).
#include <png.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <jpeglib.h>

namespace {

std::vector<unsigned char> pixels(int n, int side, int channels) {
  std::mt19937 random(static_cast<unsigned>(n));
  std::uniform_int_distribution<int> colour(0, 255);
  std::normal_distribution<double> noise(0.0, 12.0);
  int from[3];
  int to[3];
  for (int c = 0; c < 3; ++c) {
    from[c] = colour(random);
    to[c] = colour(random);
  }
  std::vector<unsigned char> out(static_cast<std::size_t>(side) * side * channels);
  for (int y = 0; y < side; ++y) {
    for (int x = 0; x < side; ++x) {
      const double t = (x + y) / (2.0 * side);
      for (int c = 0; c < channels; ++c) {
        const double v = from[c] + t * (to[c] - from[c]) + noise(random);
        out[(static_cast<std::size_t>(y) * side + x) * channels + c] = static_cast<unsigned char>(v < 0     ? 0
                                                                                                  : v > 255 ? 255
                                                                                                            : v);
      }
    }
  }
  return out;
}

bool write_png(const std::string& path, const std::vector<unsigned char>& data, int side, int channels) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(side);
  image.height = static_cast<png_uint_32>(side);
  image.format = channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  return png_image_write_to_file(&image, path.c_str(), 0, data.data(), 0, nullptr) != 0;
}

bool write_jpeg(const std::string& path, const std::vector<unsigned char>& data, int side, int channels) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) return false;
  jpeg_compress_struct info;
  jpeg_error_mgr errors;
  info.err = jpeg_std_error(&errors);
  jpeg_create_compress(&info);
  jpeg_stdio_dest(&info, file);
  info.image_width = static_cast<JDIMENSION>(side);
  info.image_height = static_cast<JDIMENSION>(side);
  info.input_components = channels;
  info.in_color_space = channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&info);
  jpeg_set_quality(&info, 90, TRUE);
  jpeg_start_compress(&info, TRUE);
  while (info.next_scanline < info.image_height) {
    auto* row = const_cast<JSAMPROW>(data.data() + static_cast<std::size_t>(info.next_scanline) * side * channels);
    jpeg_write_scanlines(&info, &row, 1);
  }
  jpeg_finish_compress(&info);
  jpeg_destroy_compress(&info);
  return std::fclose(file) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s ROOT COUNT SIDE png|jpg [CLASSES=10] [CHANNELS=3]\n", argv[0]);
    return 2;
  }
  const std::filesystem::path root = argv[1];
  const int count = std::atoi(argv[2]);
  const int side = std::atoi(argv[3]);
  const std::string format = argv[4];
  const int classes = argc > 5 ? std::atoi(argv[5]) : 10;
  const int channels = argc > 6 ? std::atoi(argv[6]) : 3;
  if (count < 1 || side < 1 || classes < 1 || (channels != 1 && channels != 3) ||
      (format != "png" && format != "jpg")) {
    std::fprintf(stderr, "make_image_folder: bad arguments\n");
    return 2;
  }
  for (int n = 0; n < count; ++n) {
    const auto dir = root / ("class" + std::to_string(n % classes));
    std::filesystem::create_directories(dir);
    const auto path = (dir / (std::to_string(n) + "." + format)).string();
    const auto data = pixels(n, side, channels);
    if (!(format == "png" ? write_png(path, data, side, channels) : write_jpeg(path, data, side, channels))) {
      std::fprintf(stderr, "make_image_folder: cannot write %s\n", path.c_str());
      return 1;
    }
  }
  std::printf("make_image_folder: %d %dx%d %s images in %s\n", count, side, side, format.c_str(), root.c_str());
  return 0;
}
