// data::ImageFolder and ImageFolderBatches: PNG and JPEG decoding, resize and crop, corrupt files,
// and the background loader's order, shards and indices. The images are written here, with libpng
// and libjpeg, into a temporary folder.
#include <torch/torch.h>

#include "catch.hpp"

#include <ardent/data/image_batches.hpp>
#include <ardent/train/fit.hpp>

#include <unistd.h>

#include <fstream>
#include <set>

namespace {

namespace fs = std::filesystem;

/// A smooth RGB test image [3, h, w] of uint8 (JPEG keeps smooth images close).
torch::Tensor gradient_image(int64_t h, int64_t w, int64_t shift) {
  const auto y = torch::arange(h, torch::kFloat).view({1, h, 1}).expand({1, h, w});
  const auto x = torch::arange(w, torch::kFloat).view({1, 1, w}).expand({1, h, w});
  const auto r = (x * 255.0 / static_cast<double>(w)) + static_cast<double>(shift);
  const auto g = y * 255.0 / static_cast<double>(h);
  const auto b = (x + y) * 127.0 / static_cast<double>(w + h) + 64.0;
  return torch::cat({r, g, b}).clamp(0, 255).to(torch::kUInt8).contiguous();
}

std::string png_bytes(const torch::Tensor& chw) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(chw.size(2));
  image.height = static_cast<png_uint_32>(chw.size(1));
  image.format = chw.size(0) == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  const auto hwc = chw.permute({1, 2, 0}).contiguous();
  png_alloc_size_t size = 0;
  REQUIRE(png_image_write_to_memory(&image, nullptr, &size, 0, hwc.data_ptr<uint8_t>(), 0, nullptr) != 0);
  std::string out(size, '\0');
  REQUIRE(png_image_write_to_memory(&image, out.data(), &size, 0, hwc.data_ptr<uint8_t>(), 0, nullptr) != 0);
  out.resize(size);
  return out;
}

std::string jpeg_bytes(const torch::Tensor& chw, int quality = 95) {
  jpeg_compress_struct info;
  jpeg_error_mgr errors;
  info.err = jpeg_std_error(&errors);
  jpeg_create_compress(&info);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&info, &buffer, &size);
  info.image_width = static_cast<JDIMENSION>(chw.size(2));
  info.image_height = static_cast<JDIMENSION>(chw.size(1));
  info.input_components = 3;
  info.in_color_space = JCS_RGB;
  jpeg_set_defaults(&info);
  jpeg_set_quality(&info, quality, TRUE);
  jpeg_start_compress(&info, TRUE);
  const auto hwc = chw.permute({1, 2, 0}).contiguous();
  const auto stride = static_cast<std::size_t>(chw.size(2) * 3);
  while (info.next_scanline < info.image_height) {
    JSAMPROW row = hwc.data_ptr<uint8_t>() + info.next_scanline * stride;
    jpeg_write_scanlines(&info, &row, 1);
  }
  jpeg_finish_compress(&info);
  jpeg_destroy_compress(&info);
  std::string out(reinterpret_cast<const char*>(buffer), size);
  std::free(buffer);
  return out;
}

void write(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "";
}

struct Folder {
  fs::path root = fs::temp_directory_path() / ("ardent_images_test_" + std::to_string(::getpid()));
  Folder() { fs::remove_all(root); }
  ~Folder() { fs::remove_all(root); }
};

}  // namespace

TEST_CASE("decode_image: PNG exactly, JPEG closely, the format read from the bytes", "[data][images]") {
  const auto image = gradient_image(12, 20, 3);
  CHECK(torch::equal(ardent::data::decode_image(png_bytes(image), "a.png"), image));
  const auto gray = image.slice(0, 1, 2).contiguous();
  CHECK(torch::equal(ardent::data::decode_image(png_bytes(gray), "g.png", 1), gray));
  const auto jpeg = ardent::data::decode_image(jpeg_bytes(image), "named.png");  // a JPEG, whatever its name
  REQUIRE(jpeg.sizes() == image.sizes());
  CHECK((jpeg.to(torch::kFloat) - image.to(torch::kFloat)).abs().mean().item<double>() < 3.0);
}

TEST_CASE("decode_image: corrupt, truncated and foreign files are errors naming the file", "[data][images]") {
  const auto png = png_bytes(gradient_image(16, 16, 0));
  const auto jpeg = jpeg_bytes(gradient_image(16, 16, 0));
  CHECK_THAT(error_of([] { ardent::data::decode_image("", "empty.png"); }),
             Catch::Contains("'empty.png': the file is empty"));
  CHECK_THAT(error_of([] { ardent::data::decode_image("GIF89a....", "x.gif"); }),
             Catch::Contains("'x.gif': neither a PNG nor a JPEG"));
  CHECK_THAT(error_of([&] { ardent::data::decode_image(png.substr(0, png.size() / 2), "cut.png"); }),
             Catch::Contains("'cut.png': corrupt PNG data"));
  CHECK_THAT(error_of([&] { ardent::data::decode_image(png.substr(0, 20), "head.png"); }),
             Catch::Contains("'head.png'"));
  CHECK_THAT(error_of([&] { ardent::data::decode_image(jpeg.substr(0, jpeg.size() / 2), "cut.jpg"); }),
             Catch::Contains("'cut.jpg': corrupt JPEG data"));
  CHECK_THAT(error_of([&] { ardent::data::decode_image(jpeg.substr(0, 8), "head.jpg"); }),
             Catch::Contains("'head.jpg': corrupt JPEG data"));
  // A header claiming 2^20 x 2^20 pixels is refused before any allocation.
  auto huge = png;
  const char side[] = {0x00, 0x10, 0x00, 0x00};
  huge.replace(16, 4, side, 4);
  huge.replace(20, 4, side, 4);
  CHECK_THAT(error_of([&] { ardent::data::decode_image(huge, "huge.png"); }), Catch::Contains("'huge.png'"));
}

TEST_CASE("ImageFolder: classes in sorted order, resize of the shorter side, central crop", "[data][images]") {
  Folder folder;
  write(folder.root / "zebra" / "1.png", png_bytes(gradient_image(40, 60, 0)));
  write(folder.root / "ant" / "b.JPG", jpeg_bytes(gradient_image(30, 30, 10)));
  write(folder.root / "ant" / "a.png", png_bytes(gradient_image(32, 32, 20)));
  write(folder.root / "ant" / "notes.txt", "not an image");
  const ardent::data::ImageFolder set(folder.root, ardent::data::ImageFolderOptions().size(16).resize(20));
  CHECK(set.classes() == std::vector<std::string>{"ant", "zebra"});
  REQUIRE(set.size() == 3);
  CHECK(set.path(0).filename() == "a.png");
  CHECK(set.path(1).filename() == "b.JPG");
  CHECK(torch::equal(set.labels(), torch::tensor({0, 0, 1}, torch::kLong)));
  for (int64_t i = 0; i < set.size(); ++i) {
    const auto x = set.get(i);
    CHECK(x.sizes() == torch::IntArrayRef{3, 16, 16});
    CHECK(x.min().item<double>() >= 0.0);
    CHECK(x.max().item<double>() <= 1.0);
  }
  // Without resizing, an image is its decoded pixels / 255.
  const ardent::data::ImageFolder raw(folder.root);
  CHECK(torch::allclose(raw.get(0), gradient_image(32, 32, 20).to(torch::kFloat) / 255.0));
  // 40x60 -> shorter side 20 gives 20x30; the central 16x16 starts at row 2, column 7.
  const auto expected = torch::nn::functional::interpolate(raw.get(2).unsqueeze(0),
                                                           torch::nn::functional::InterpolateFuncOptions()
                                                               .size(std::vector<int64_t>{20, 30})
                                                               .mode(torch::kBilinear)
                                                               .align_corners(false)
                                                               .antialias(true))
                            .squeeze(0)
                            .clamp(0, 1)
                            .slice(1, 2, 18)
                            .slice(2, 7, 23);
  CHECK(torch::allclose(set.get(2), expected));
  CHECK_THAT(error_of([&] { ardent::data::ImageFolder(folder.root / "none"); }), Catch::Contains("is not a directory"));
  CHECK_THAT(error_of([&] { ardent::data::ImageFolder(folder.root, ardent::data::ImageFolderOptions().channels(2)); }),
             Catch::Contains("argument 'options.channels' is 2"));
}

TEST_CASE("ImageFolderBatches: ShuffledBatches' order and shards, with indices, in background threads",
          "[data][images]") {
  Folder folder;
  for (int i = 0; i < 23; ++i) {
    const auto name = fmt::format("{:02d}.png", i);
    write(folder.root / (i % 3 == 0 ? "c0" : "c1") / name, png_bytes(gradient_image(8, 8, i)));
  }
  const ardent::data::ImageFolder set(folder.root);
  const auto all = torch::stack([&] {
    std::vector<torch::Tensor> images;
    for (int64_t i = 0; i < set.size(); ++i) images.push_back(set.get(i));
    return images;
  }());
  // The reference: ShuffledBatches over the decoded images, at the global batch 2 x 3.
  ardent::data::ShuffledBatches reference(all, set.labels(), 6, 11);
  reference.set_epoch(2);
  std::vector<std::pair<torch::Tensor, torch::Tensor>> expected;
  for (auto&& batch : reference) expected.emplace_back(batch.inputs, batch.labels);

  for (int64_t workers : {0, 2}) {
    std::vector<std::vector<ardent::data::ImageBatch>> ranks(2);
    for (int64_t r = 0; r < 2; ++r) {
      ardent::data::ImageFolderBatches batches(set, 3, 11,
                                               ardent::data::ImageFolderBatchesOptions().workers(workers).prefetch(2));
      batches.set_shard(r, 2);
      batches.set_epoch(2);
      CHECK(batches.batches_per_epoch() == static_cast<int64_t>(expected.size()));
      for (auto&& batch : batches) ranks[static_cast<std::size_t>(r)].push_back(batch);
    }
    std::set<int64_t> seen;
    for (std::size_t k = 0; k < expected.size(); ++k) {
      const auto& a = ranks[0][k];
      const auto& b = ranks[1][k];
      // Together the two ranks' k-th batches are the k-th global batch, in order.
      CHECK(torch::equal(torch::cat({a.inputs, b.inputs}), expected[k].first));
      CHECK(torch::equal(torch::cat({a.labels, b.labels}), expected[k].second));
      for (const auto* batch : {&a, &b}) {
        CHECK(torch::equal(batch->labels, set.labels().index_select(0, batch->indices)));
        for (int64_t i = 0; i < batch->indices.size(0); ++i) {
          CHECK(seen.insert(batch->indices[i].item<int64_t>()).second);  // no example twice
          CHECK(torch::equal(batch->inputs[i], all[batch->indices[i].item<int64_t>()]));
        }
      }
    }
    CHECK(static_cast<int64_t>(seen.size()) == set.size());
  }

  // Augmentation depends on (seed, epoch, batch) only: two loaders agree.
  auto options = ardent::data::ImageFolderBatchesOptions().workers(2).augment_padding(2);
  ardent::data::ImageFolderBatches first(set, 4, 5, options);
  ardent::data::ImageFolderBatches second(set, 4, 5, options.workers(1));
  auto a = first.begin();
  auto b = second.begin();
  CHECK(torch::equal((*a).inputs, (*b).inputs));
  CHECK_FALSE(torch::equal((*a).inputs, all.index_select(0, (*a).indices)));
}

TEST_CASE("ImageFolderBatches: a corrupt file stops the step naming it, or is skipped and counted", "[data][images]") {
  Folder folder;
  for (int i = 0; i < 6; ++i) write(folder.root / "c" / fmt::format("{}.png", i), png_bytes(gradient_image(8, 8, i)));
  const auto good = png_bytes(gradient_image(8, 8, 0));
  write(folder.root / "c" / "3.png", good.substr(0, good.size() - 30));
  const ardent::data::ImageFolder set(folder.root);
  ardent::data::ImageFolderBatches strict(set, 2, 0, ardent::data::ImageFolderBatchesOptions().shuffle(false));
  const auto message = error_of([&] {
    for (auto&& batch : strict) (void)batch;
  });
  CHECK_THAT(message, Catch::Contains("3.png': corrupt PNG data"));

  ardent::data::ImageFolderBatches lenient(set, 2, 0,
                                           ardent::data::ImageFolderBatchesOptions().shuffle(false).skip_corrupt(true));
  int64_t images = 0;
  for (auto&& batch : lenient) {
    images += batch.inputs.size(0);
    CHECK((batch.indices != 3).all().item<bool>());
  }
  CHECK(images == 5);
  REQUIRE(lenient.skipped().size() == 1);
  CHECK_THAT(lenient.skipped()[0], Catch::Contains("3.png"));
}

namespace {

/// A trainer that records what fit() hands it.
struct Recorder {
  torch::nn::Linear model{3 * 8 * 8, 2};
  std::vector<int64_t> sizes;
  ardent::train::StepResult step(const torch::Tensor& x, const torch::Tensor& y, torch::optim::Optimizer& optimizer) {
    optimizer.zero_grad();
    const auto loss = torch::nn::functional::cross_entropy(model->forward(x.flatten(1)), y);
    loss.backward();
    optimizer.step();
    sizes.push_back(x.size(0));
    return {loss.item<double>(), std::nullopt, std::nullopt, std::nullopt, x.size(0)};
  }
  std::vector<torch::Tensor> parameters() { return model->parameters(); }
  void train(bool on = true) { model->train(on); }
};

}  // namespace

TEST_CASE("ImageFolderBatches feeds ardent::train::fit as it is", "[data][images]") {
  Folder folder;
  for (int i = 0; i < 10; ++i)
    write(folder.root / (i % 2 ? "a" : "b") / fmt::format("{}.png", i), png_bytes(gradient_image(8, 8, i)));
  const ardent::data::ImageFolder set(folder.root);
  ardent::data::ImageFolderBatches batches(set, 4, 0);
  Recorder trainer;
  torch::optim::SGD optimizer(trainer.parameters(), torch::optim::SGDOptions(0.1));
  const auto summary = ardent::train::fit(trainer, batches, optimizer, 2);
  CHECK(summary.epochs_completed == 2);
  CHECK(trainer.sizes == std::vector<int64_t>{4, 4, 2, 4, 4, 2});
}
