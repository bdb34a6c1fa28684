// PyTorch state dicts (io/state_dict.hpp): Python's torch.save files read into ardent's models,
// mismatches listed, malformed files refused, and save/load round trips.
#include "catch.hpp"
#include "helpers.hpp"

#include <ardent/io/state_dict.hpp>
#include <ardent/models/mobilenet_v2.hpp>
#include <ardent/models/resnet.hpp>
#include <ardent/models/small_cnn.hpp>
#include <ardent/models/wide_resnet.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace ardent::models;

fs::path fixtures() { return ardent_test::data_dir() / "state_dicts"; }

struct TempDir {
  fs::path path;
  TempDir() : path(fs::temp_directory_path() / ("ardent_io_test_" + std::to_string(::getpid()))) {
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

// The model of make_fixtures.py's TinyBN: conv + BatchNorm, to check buffers.
class TinyBNImpl : public torch::nn::Module {
 public:
  TinyBNImpl() {
    conv_ = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3).padding(1).bias(false)));
    bn_ = register_module("bn", torch::nn::BatchNorm2d(4));
    fc_ = register_module("fc", torch::nn::Linear(4, 3));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return fc_->forward(torch::relu(bn_->forward(conv_->forward(x))).mean({2, 3}));
  }

 private:
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::BatchNorm2d bn_{nullptr};
  torch::nn::Linear fc_{nullptr};
};
TORCH_MODULE(TinyBN);

void require_same_state(const torch::nn::Module& a, const torch::nn::Module& b) {
  auto sa = ardent::io::state_dict_of(a);
  auto sb = ardent::io::state_dict_of(b);
  REQUIRE(sa.size() == sb.size());
  for (const auto& item : sa) {
    INFO(item.key());
    REQUIRE(sb.contains(item.key()));
    CHECK(item.value().dtype() == sb[item.key()].dtype());
    CHECK(torch::equal(item.value(), sb[item.key()]));
  }
}

}  // namespace

TEST_CASE("load_state_dict reads Python's torch.save files and reproduces their outputs", "[io]") {
  const auto x = ardent_test::read_bin(fixtures() / "smallcnn_w4_input.bin", {2, 1, 28, 28}, torch::kFloat32);
  const auto expected = ardent_test::read_bin(fixtures() / "smallcnn_w4_logits.bin", {2, 10}, torch::kFloat32);

  SECTION("DataParallel state dict: the module. prefix is stripped") {
    auto raw = ardent::io::read_state_dict(fixtures() / "smallcnn_w4_dataparallel.pt");
    CHECK(raw.keys() == std::vector<std::string>({"module.c1.weight", "module.c1.bias", "module.c2.weight",
                                                  "module.c2.bias", "module.fc.weight", "module.fc.bias"}));
    SmallCNN model(SmallCNNOptions(10).width(4));
    ardent::io::load_state_dict(model, fixtures() / "smallcnn_w4_dataparallel.pt");
    CHECK(torch::equal(model->named_parameters()["fc.bias"], raw["module.fc.bias"]));
    model->eval();
    torch::NoGradGuard no_grad;
    CHECK(torch::allclose(model->forward(x), expected, 1e-5, 1e-5));
  }
  SECTION("checkpoint with the state dict under \"state_dict\" and other Python objects beside it") {
    auto model = std::make_shared<ardent::models::SmallCNNImpl>(SmallCNNOptions(10).width(4));
    ardent::io::load_state_dict(model, fixtures() / "smallcnn_w4_checkpoint.pt");
    model->eval();
    torch::NoGradGuard no_grad;
    CHECK(torch::allclose(model->forward(x), expected, 1e-5, 1e-5));
  }
  SECTION("BatchNorm buffers, num_batches_tracked included") {
    TinyBN model;
    ardent::io::load_state_dict(model, fixtures() / "tinybn.pt");
    auto buffers = model->named_buffers();
    CHECK(buffers["bn.num_batches_tracked"].item<int64_t>() == 3);
    CHECK(buffers["bn.running_var"].ne(1.0).all().item<bool>());
    model->eval();
    torch::NoGradGuard no_grad;
    const auto xt = ardent_test::read_bin(fixtures() / "tinybn_input.bin", {2, 3, 6, 6}, torch::kFloat32);
    const auto yt = ardent_test::read_bin(fixtures() / "tinybn_logits.bin", {2, 3}, torch::kFloat32);
    CHECK(torch::allclose(model->forward(xt), yt, 1e-5, 1e-5));
  }
}

TEST_CASE("load_state_dict lists missing, unexpected and wrongly shaped keys", "[io]") {
  TempDir tmp;
  SECTION("wrong shapes: both shapes are named and the model is left unchanged") {
    torch::manual_seed(1);
    SmallCNN wide(SmallCNNOptions(10).width(8));
    auto before = wide->named_parameters()["c1.weight"].clone();
    CHECK_THROWS_WITH(ardent::io::load_state_dict(wide, fixtures() / "smallcnn_w4_dataparallel.pt"),
                      ContainsSubstring("smallcnn_w4_dataparallel.pt") &&
                          ContainsSubstring("c1.weight (file [4, 1, 3, 3], model [8, 1, 3, 3])") &&
                          ContainsSubstring("fc.weight (file [10, 392], model [10, 784])") &&
                          ContainsSubstring("missing keys []") && ContainsSubstring("unexpected keys []"));
    CHECK(torch::equal(wide->named_parameters()["c1.weight"], before));
  }
  SECTION("renamed and extra keys") {
    SmallCNN source(SmallCNNOptions(10).width(4));
    torch::OrderedDict<std::string, torch::Tensor> renamed;
    for (const auto& item : ardent::io::state_dict_of(*source)) {
      std::string key = item.key();
      if (key.rfind("c1.", 0) == 0) key = "conv1." + key.substr(3);
      renamed.insert(key, item.value());
    }
    renamed.insert("extra.running_mean", torch::zeros({3}));
    ardent::io::write_state_dict(renamed, tmp.path / "renamed.pt");
    SmallCNN target(SmallCNNOptions(10).width(4));
    CHECK_THROWS_WITH(ardent::io::load_state_dict(target, tmp.path / "renamed.pt"),
                      ContainsSubstring("missing keys [c1.bias, c1.weight]") &&
                          ContainsSubstring("unexpected keys [conv1.weight, conv1.bias, extra.running_mean]") &&
                          ContainsSubstring("wrongly shaped keys []"));
  }
  SECTION("a partial module. prefix is not stripped") {
    SmallCNN source(SmallCNNOptions(10).width(4));
    torch::OrderedDict<std::string, torch::Tensor> partly;
    for (const auto& item : ardent::io::state_dict_of(*source)) {
      partly.insert(item.key() == "fc.bias" ? item.key() : "module." + item.key(), item.value());
    }
    ardent::io::write_state_dict(partly, tmp.path / "partly.pt");
    CHECK_THROWS_WITH(ardent::io::load_state_dict(source, tmp.path / "partly.pt"),
                      ContainsSubstring("unexpected keys [module.c1.weight"));
  }
}

TEST_CASE("read_state_dict rejects truncated, garbage, empty and legacy files naming the path", "[io]") {
  TempDir tmp;
  std::ifstream in(fixtures() / "smallcnn_w4_dataparallel.pt", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(bytes.size() > 1000);
  auto write = [&](const std::string& name, const std::string& content) {
    std::ofstream(tmp.path / name, std::ios::binary) << content;
    return tmp.path / name;
  };
  SmallCNN model(SmallCNNOptions(10).width(4));
  auto before = model->named_parameters()["fc.weight"].clone();

  for (std::size_t keep : {bytes.size() / 2, bytes.size() - 30, std::size_t{10}}) {
    INFO(keep);
    auto path = write("cut_" + std::to_string(keep) + ".pt", bytes.substr(0, keep));
    CHECK_THROWS_WITH(ardent::io::load_state_dict(model, path),
                      ContainsSubstring(path.string()) && ContainsSubstring("truncated or malformed"));
  }
  // A valid zip archive whose pickle is cut short or holds an unknown opcode: the pickle machine
  // itself must notice.
  {
    std::istringstream stream(bytes);
    caffe2::serialize::PyTorchStreamReader reader(&stream);
    auto [pkl, pkl_size] = reader.getRecord("data.pkl");
    const std::string pickle(static_cast<const char*>(pkl.get()), pkl_size);
    auto rewrite = [&](const std::string& name, const std::string& new_pickle) {
      const auto path = tmp.path / name;
      caffe2::serialize::PyTorchStreamWriter writer(path.string());
      writer.writeRecord("data.pkl", new_pickle.data(), new_pickle.size());
      for (const auto& record : reader.getAllRecords()) {
        if (record.rfind("data/", 0) != 0) continue;
        auto [ptr, size] = reader.getRecord(record);
        writer.writeRecord(record, ptr.get(), size);
      }
      writer.writeEndOfFile();
      return path;
    };
    CHECK_NOTHROW(ardent::io::read_state_dict(rewrite("rewritten.pt", pickle)));
    auto cut = rewrite("cut_pickle.pt", pickle.substr(0, pickle.size() / 2));
    CHECK_THROWS_WITH(ardent::io::read_state_dict(cut), ContainsSubstring("cut_pickle.pt") &&
                                                            ContainsSubstring("truncated or malformed") &&
                                                            ContainsSubstring("pickle"));
    auto odd = rewrite("odd_pickle.pt", std::string("\x80\x02\xff.", 4));
    CHECK_THROWS_WITH(ardent::io::read_state_dict(odd), ContainsSubstring("unsupported pickle opcode 0xff"));
    auto list = rewrite("list_pickle.pt", std::string("\x80\x02]q\x00.", 6));
    CHECK_THROWS_WITH(ardent::io::read_state_dict(list), ContainsSubstring("holds a list, expected a state dict"));
  }
  CHECK_THROWS_WITH(ardent::io::load_state_dict(model, write("garbage.pt", "this is not a checkpoint")),
                    ContainsSubstring("garbage.pt") && ContainsSubstring("not a zip archive"));
  CHECK_THROWS_WITH(ardent::io::load_state_dict(model, write("empty.pt", "")),
                    ContainsSubstring("empty.pt") && ContainsSubstring("empty"));
  CHECK_THROWS_WITH(ardent::io::load_state_dict(model, tmp.path / "missing.pt"),
                    ContainsSubstring("missing.pt") && ContainsSubstring("cannot be opened"));
  CHECK_THROWS_WITH(ardent::io::load_state_dict(model, fixtures() / "smallcnn_w4_legacy.pt"),
                    ContainsSubstring("smallcnn_w4_legacy.pt") && ContainsSubstring("legacy") &&
                        ContainsSubstring("torch.save(torch.load("));
  CHECK(torch::equal(model->named_parameters()["fc.weight"], before));
}

TEST_CASE("save_state_dict and load_state_dict round-trip bit-identically", "[io]") {
  TempDir tmp;
  torch::manual_seed(3);
  SECTION("ResNet18 after a training step of BatchNorm statistics") {
    ResNet18 a;
    {
      torch::NoGradGuard no_grad;
      a->train();
      a->forward(torch::rand({2, 3, 32, 32}));
    }
    const auto path = tmp.path / "resnet18.pt";
    ardent::io::save_state_dict(a, path);
    CHECK(fs::exists(path));
    for (const auto& entry : fs::directory_iterator(tmp.path)) CHECK(entry.path() == path);  // no temporary left
    ResNet18 b;
    ardent::io::load_state_dict(b, path);
    require_same_state(*a, *b);
    CHECK(b->named_buffers()["bn1.num_batches_tracked"].item<int64_t>() == 1);
    a->eval();
    b->eval();
    torch::NoGradGuard no_grad;
    auto x = torch::rand({1, 3, 32, 32});
    CHECK(torch::equal(a->forward(x), b->forward(x)));
  }
  SECTION("MobileNetV2, saved twice to the same path") {
    MobileNetV2 a;
    const auto path = tmp.path / "mnv2.pt";
    ardent::io::save_state_dict(MobileNetV2(), path);
    ardent::io::save_state_dict(a, path);  // replaces the first file
    MobileNetV2 b;
    ardent::io::load_state_dict(b, path);
    require_same_state(*a, *b);
  }
  SECTION("WideResNet with the Python class's sub_block1 loads into the default one, not the reverse") {
    WideResNet python_like(WideResNetOptions(16, 2).sub_block1(true));
    const auto path = tmp.path / "wrn_sub.pt";
    ardent::io::save_state_dict(python_like, path);
    CHECK(ardent::io::read_state_dict(path).contains("sub_block1.layer.0.conv1.weight"));
    WideResNet plain(WideResNetOptions(16, 2));
    ardent::io::load_state_dict(plain, path);
    CHECK(torch::equal(plain->named_parameters()["block3.layer.1.conv2.weight"],
                       python_like->named_parameters()["block3.layer.1.conv2.weight"]));

    const auto plain_path = tmp.path / "wrn.pt";
    ardent::io::save_state_dict(plain, plain_path);
    WideResNet wants_sub(WideResNetOptions(16, 2).sub_block1(true));
    CHECK_THROWS_WITH(ardent::io::load_state_dict(wants_sub, plain_path),
                      ContainsSubstring("missing keys [sub_block1.layer.0.bn1.bias"));
    // Only WideResNet skips sub_block1 keys: elsewhere they are unexpected.
    SmallCNN cnn(SmallCNNOptions(10).width(4));
    auto sd = ardent::io::state_dict_of(*cnn);
    sd.insert("sub_block1.layer.0.conv1.weight", torch::zeros({1}));
    ardent::io::write_state_dict(sd, tmp.path / "cnn_sub.pt");
    CHECK_THROWS_WITH(ardent::io::load_state_dict(cnn, tmp.path / "cnn_sub.pt"),
                      ContainsSubstring("unexpected keys [sub_block1.layer.0.conv1.weight]"));
  }
}
