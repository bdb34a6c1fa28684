// The data readers, IDX (MNIST, Fashion-MNIST) and CIFAR binary files, and ShuffledBatches' indices.
#include "catch.hpp"
#include "helpers.hpp"

#include <ardent/ardent.hpp>
#include <ardent/data/batches.hpp>
#include <ardent/data/cifar.hpp>

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <set>

namespace {

std::vector<unsigned char> idx_header(unsigned char dims, std::vector<uint32_t> sizes) {
  std::vector<unsigned char> bytes{0, 0, 0x08, dims};
  for (auto s : sizes) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<unsigned char>((s >> shift) & 0xFFU));
  }
  return bytes;
}

struct TempDir {
  std::filesystem::path path;
  TempDir() : path(std::filesystem::temp_directory_path() / ("ardent_test_" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

void write_plain(const std::filesystem::path& path, const std::vector<unsigned char>& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void write_gzip(const std::filesystem::path& path, const std::vector<unsigned char>& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  REQUIRE(file != nullptr);
  REQUIRE(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  gzclose(file);
}

// A tiny MNIST-format data set of n images whose pixels encode their index and label.
void write_tiny_mnist(const std::filesystem::path& dir, const std::string& prefix, uint32_t n, bool gzip) {
  auto images = idx_header(3, {n, 28, 28});
  auto labels = idx_header(1, {n});
  for (uint32_t i = 0; i < n; ++i) {
    for (int p = 0; p < 28 * 28; ++p) images.push_back(static_cast<unsigned char>((i * 50 + p) % 256));
    labels.push_back(static_cast<unsigned char>(i % 10));
  }
  const std::string suffix = gzip ? ".gz" : "";
  auto write = gzip ? write_gzip : write_plain;
  write(dir / (prefix + "-images-idx3-ubyte" + suffix), images);
  write(dir / (prefix + "-labels-idx1-ubyte" + suffix), labels);
}

}  // namespace

TEST_CASE("IDX files are read plain or gzipped, and malformed ones are rejected", "[data]") {
  TempDir tmp;
  SECTION("plain and gzip give the same data set") {
    write_tiny_mnist(tmp.path, "train", 3, /*gzip=*/false);
    write_tiny_mnist(tmp.path, "t10k", 3, /*gzip=*/true);
    const ardent::data::MNIST train(tmp.path, ardent::data::MNIST::Split::Train);
    const ardent::data::MNIST test(tmp.path, ardent::data::MNIST::Split::Test);
    CHECK(train.images().sizes() == torch::IntArrayRef{3, 1, 28, 28});
    CHECK(train.images().dtype() == torch::kFloat32);
    CHECK(torch::equal(train.images(), test.images()));
    CHECK(train.labels().dtype() == torch::kLong);
    CHECK(train.labels()[2].item<int64_t>() == 2);
    CHECK(train.images()[1][0][0][1].item<float>() == Approx(51.0 / 255));
  }
  SECTION("a wrong magic number") {
    auto bytes = idx_header(1, {2});
    bytes[2] = 0x0D;  // float data
    bytes.push_back(0);
    bytes.push_back(1);
    write_plain(tmp.path / "bad", bytes);
    CHECK_THROWS_WITH(ardent::data::read_idx_u8(tmp.path / "bad", 1),
                      ContainsSubstring("bad") && ContainsSubstring("magic"));
  }
  SECTION("truncated data") {
    auto bytes = idx_header(1, {5});
    bytes.push_back(1);
    write_gzip(tmp.path / "short.gz", bytes);
    CHECK_THROWS_WITH(ardent::data::read_idx_u8(tmp.path / "short.gz", 1),
                      ContainsSubstring("short.gz") && ContainsSubstring("truncated"));
    write_plain(tmp.path / "tiny", {0, 0});
    CHECK_THROWS_WITH(ardent::data::read_idx_u8(tmp.path / "tiny", 1), ContainsSubstring("truncated"));
  }
  SECTION("image and label counts that disagree") {
    write_tiny_mnist(tmp.path, "train", 3, false);
    write_plain(tmp.path / "train-labels-idx1-ubyte", [] {
      auto b = idx_header(1, {2});
      b.insert(b.end(), {0, 1});
      return b;
    }());
    CHECK_THROWS_WITH(ardent::data::MNIST(tmp.path), ContainsSubstring("3 images but 2 labels"));
  }
  SECTION("a missing file") {
    CHECK_THROWS_WITH(ardent::data::MNIST(tmp.path / "nowhere"), ContainsSubstring("nowhere"));
  }
}

TEST_CASE("Fashion-MNIST from Debian's package loads", "[data][fashion]") {
  const ardent::data::MNIST test(ardent::data::kFashionMNISTDirectory, ardent::data::MNIST::Split::Test);
  CHECK(test.size().value() == 10000);
  CHECK(test.images().min().item<float>() >= 0.0F);
  CHECK(test.images().max().item<float>() <= 1.0F);
  CHECK(torch::bincount(test.labels()).eq(1000).all().item<bool>());  // the test set is balanced
}

TEST_CASE("CIFAR-100 binary files give fine or coarse labels, and malformed ones are rejected", "[data][cifar]") {
  TempDir tmp;
  std::vector<unsigned char> bytes(2 * 3074);
  bytes[0] = 5;  // coarse, fine, pixels
  bytes[1] = 42;
  bytes[3074] = 19;
  bytes[3075] = 99;
  bytes[3074 + 2 + 2048] = 255;  // the second image's first blue pixel
  write_plain(tmp.path / "test.bin", bytes);
  const ardent::data::CIFAR100 fine(tmp.path, ardent::data::CIFAR100::Split::Test);
  CHECK(fine.images().sizes() == torch::IntArrayRef{2, 3, 32, 32});
  CHECK(torch::equal(fine.labels(), torch::tensor({42, 99}, torch::kLong)));
  CHECK(fine.images()[1][2][0][0].item<float>() == 1.0F);
  const ardent::data::CIFAR100 coarse(tmp.path, ardent::data::CIFAR100::Split::Test, /*coarse=*/true);
  CHECK(torch::equal(coarse.labels(), torch::tensor({5, 19}, torch::kLong)));

  auto truncated = bytes;
  truncated.resize(3074 + 10);
  write_gzip(tmp.path / "train.bin.gz", truncated);
  CHECK_THROWS_WITH(ardent::data::CIFAR100(tmp.path),
                    ContainsSubstring("train.bin.gz") && ContainsSubstring("truncated"));
  auto bad = bytes;
  bad[1] = 100;
  write_plain(tmp.path / "test.bin", bad);
  CHECK_THROWS_WITH(ardent::data::CIFAR100(tmp.path, ardent::data::CIFAR100::Split::Test),
                    ContainsSubstring("test.bin") && ContainsSubstring("label 100"));
  CHECK_THROWS_WITH(ardent::data::CIFAR100(tmp.path / "nowhere"), ContainsSubstring("train.bin"));
}

TEST_CASE("ShuffledBatches gives each batch its examples' indices", "[data][fast]") {
  const auto images = torch::arange(50, torch::kFloat).reshape({50, 1, 1, 1});
  const auto labels = torch::arange(50, torch::kLong);
  ardent::data::ShuffledBatches one(images, labels, 8, 3);
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::vector<int64_t> seen;
    for (const auto& batch : one) {
      CHECK(torch::equal(batch.indices, batch.labels));  // labels are the positions here
      for (int64_t i = 0; i < batch.indices.size(0); ++i) seen.push_back(batch.indices[i].item<int64_t>());
    }
    std::sort(seen.begin(), seen.end());
    std::vector<int64_t> all(50);
    std::iota(all.begin(), all.end(), 0);
    CHECK(seen == all);  // a permutation per epoch
  }
  std::set<int64_t> rank0;
  std::set<int64_t> rank1;
  for (const int64_t rank : {0, 1}) {
    ardent::data::ShuffledBatches shard(images, labels, 5, 3);
    shard.set_shard(rank, 2);
    for (const auto& batch : shard) {
      for (int64_t i = 0; i < batch.indices.size(0); ++i)
        (rank == 0 ? rank0 : rank1).insert(batch.indices[i].item<int64_t>());
    }
  }
  for (const auto i : rank0) CHECK(rank1.count(i) == 0);  // disjoint across ranks
  CHECK(rank0.size() + rank1.size() == 50);
}
