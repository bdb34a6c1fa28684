// The CIFAR models (ResNet18, MobileNetV2, WideResNet) and PyTorch state dicts (load, save).
#include "catch.hpp"
#include "helpers.hpp"

#include <ardent/models/batch_norm.hpp>
#include <ardent/models/mobilenet_v2.hpp>
#include <ardent/models/resnet.hpp>
#include <ardent/models/small_cnn.hpp>
#include <ardent/models/state_dict.hpp>
#include <ardent/models/wide_resnet.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using ardent::models::MobileNetV2;
using ardent::models::ResNet18;
using ardent::models::SmallCNN;
using ardent::models::SmallCNNOptions;
using ardent::models::WideResNet;
using ardent::models::WideResNetOptions;

fs::path fixtures() { return ardent_test::data_dir() / "state_dicts"; }

struct TempDir {
  fs::path path;
  TempDir() : path(fs::temp_directory_path() / ("ardent_models_test_" + std::to_string(::getpid()))) {
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

int64_t count_parameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

std::map<std::string, std::vector<int64_t>> shapes_of(const torch::nn::Module& m) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const auto& p : m.named_parameters()) out[p.key()] = p.value().sizes().vec();
  for (const auto& b : m.named_buffers()) out[b.key()] = b.value().sizes().vec();
  return out;
}

std::vector<int64_t> dims(std::initializer_list<int64_t> d) { return d; }

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
  auto sa = ardent::state_dict_of(a);
  auto sb = ardent::state_dict_of(b);
  REQUIRE(sa.size() == sb.size());
  for (const auto& item : sa) {
    INFO(item.key());
    REQUIRE(sb.contains(item.key()));
    CHECK(item.value().dtype() == sb[item.key()].dtype());
    CHECK(torch::equal(item.value(), sb[item.key()]));
  }
}

}  // namespace

TEST_CASE("ResNet18 has the reference parameter count, names and shapes", "[models]") {
  torch::manual_seed(0);
  ResNet18 model;
  CHECK(count_parameters(*model) == 11173962);
  CHECK(count_parameters(*ResNet18(100)) == 11173962 + 90 * 512 + 90);

  auto shapes = shapes_of(*model);
  CHECK(shapes.at("conv1.weight") == dims({64, 3, 3, 3}));
  CHECK(shapes.at("bn1.num_batches_tracked").empty());
  CHECK(shapes.at("layer1.0.conv1.weight") == dims({64, 64, 3, 3}));
  CHECK(shapes.count("layer1.0.shortcut.0.weight") == 0);
  CHECK(shapes.at("layer2.0.shortcut.0.weight") == dims({128, 64, 1, 1}));
  CHECK(shapes.at("layer2.0.shortcut.1.running_var") == dims({128}));
  CHECK(shapes.count("layer2.1.shortcut.0.weight") == 0);
  CHECK(shapes.at("layer4.1.bn2.bias") == dims({512}));
  CHECK(shapes.at("linear.weight") == dims({10, 512}));
  CHECK(shapes.size() == 62 + 60);  // 62 parameter tensors, 20 BatchNorms x 3 buffers

  model->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::rand({2, 3, 32, 32});
  CHECK(model->forward(x).sizes() == dims({2, 10}));
  auto f = model->features(x);
  std::set<std::string> names;
  for (const auto& [k, v] : f) names.insert(k);
  CHECK(names == std::set<std::string>({"stem", "layer1", "layer2", "layer3", "layer4"}));
  CHECK(f.at("stem").sizes() == dims({2, 64, 32, 32}));
  CHECK(f.at("layer1").sizes() == dims({2, 64, 32, 32}));
  CHECK(f.at("layer2").sizes() == dims({2, 128, 16, 16}));
  CHECK(f.at("layer3").sizes() == dims({2, 256, 8, 8}));
  CHECK(f.at("layer4").sizes() == dims({2, 512, 4, 4}));

  CHECK_THROWS_WITH(model->forward(torch::rand({2, 1, 28, 28})), ContainsSubstring("'x'") &&
                                                                     ContainsSubstring("[2, 1, 28, 28]") &&
                                                                     ContainsSubstring("[B, 3, 32, 32]"));
  CHECK_THROWS_WITH(ResNet18(1), ContainsSubstring("num_classes") && ContainsSubstring("at least 2"));
}

TEST_CASE("MobileNetV2 has the reference parameter count, names and shapes", "[models]") {
  torch::manual_seed(0);
  MobileNetV2 model;
  CHECK(count_parameters(*model) == 2296922);

  auto shapes = shapes_of(*model);
  CHECK(shapes.at("conv1.weight") == dims({32, 3, 3, 3}));
  CHECK(shapes.at("layers.0.conv1.weight") == dims({32, 32, 1, 1}));       // expansion 1
  CHECK(shapes.at("layers.0.conv2.weight") == dims({32, 1, 3, 3}));        // depthwise
  CHECK(shapes.at("layers.0.shortcut.0.weight") == dims({16, 32, 1, 1}));  // stride 1, 32 -> 16
  CHECK(shapes.at("layers.1.shortcut.1.running_mean") == dims({24}));
  CHECK(shapes.count("layers.2.shortcut.0.weight") == 0);  // 24 -> 24: identity
  CHECK(shapes.count("layers.3.shortcut.0.weight") == 0);  // stride 2: no residual
  CHECK(shapes.at("layers.16.conv3.weight") == dims({320, 960, 1, 1}));
  CHECK(shapes.count("layers.17.conv1.weight") == 0);
  CHECK(shapes.at("conv2.weight") == dims({1280, 320, 1, 1}));
  CHECK(shapes.at("bn2.num_batches_tracked").empty());
  CHECK(shapes.at("linear.weight") == dims({10, 1280}));

  model->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::rand({2, 3, 32, 32});
  CHECK(model->forward(x).sizes() == dims({2, 10}));
  auto f = model->features(x);
  CHECK(f.size() == 9);
  CHECK(f.at("stem").sizes() == dims({2, 32, 32, 32}));
  CHECK(f.at("stage1").sizes() == dims({2, 16, 32, 32}));
  CHECK(f.at("stage2").sizes() == dims({2, 24, 32, 32}));
  CHECK(f.at("stage3").sizes() == dims({2, 32, 16, 16}));
  CHECK(f.at("stage4").sizes() == dims({2, 64, 8, 8}));
  CHECK(f.at("stage5").sizes() == dims({2, 96, 8, 8}));
  CHECK(f.at("stage6").sizes() == dims({2, 160, 4, 4}));
  CHECK(f.at("stage7").sizes() == dims({2, 320, 4, 4}));
  CHECK(f.at("head").sizes() == dims({2, 1280, 4, 4}));
  CHECK_THROWS_WITH(model->forward(torch::rand({2, 1, 32, 32})), ContainsSubstring("expected [B, 3, H, W]"));
  CHECK_THROWS_WITH(MobileNetV2(0), ContainsSubstring("num_classes"));
}

TEST_CASE("ResNet18 and MobileNetV2 for other channels, widths and image sizes", "[models]") {
  torch::manual_seed(0);
  ResNet18 resnet(ardent::models::ResNet18Options(10).in_channels(1).width(16));
  auto shapes = shapes_of(*resnet);
  CHECK(shapes.at("conv1.weight") == dims({16, 1, 3, 3}));
  CHECK(shapes.at("layer4.1.conv2.weight") == dims({128, 128, 3, 3}));
  CHECK(shapes.at("linear.weight") == dims({10, 128}));
  MobileNetV2 mobilenet(ardent::models::MobileNetV2Options(10).in_channels(1).width_multiplier(0.25));
  shapes = shapes_of(*mobilenet);
  CHECK(shapes.at("conv1.weight") == dims({8, 1, 3, 3}));               // 32 x 0.25
  CHECK(shapes.count("layers.0.shortcut.0.weight") == 0);               // 16 x 0.25 = 4, at least 8: 8 -> 8, identity
  CHECK(shapes.at("layers.16.conv3.weight") == dims({80, 240, 1, 1}));  // 320 x 0.25; 6 x 40 hidden
  CHECK(shapes.at("conv2.weight") == dims({1280, 80, 1, 1}));           // the head keeps 1280
  CHECK(count_parameters(*MobileNetV2(ardent::models::MobileNetV2Options(10).width_multiplier(1.0))) == 2296922);

  resnet->eval();
  mobilenet->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::rand({2, 1, 28, 28});  // Fashion-MNIST: layer4 and the head end at 4x4
  CHECK(resnet->features(x).at("layer4").sizes() == dims({2, 128, 4, 4}));
  CHECK(resnet->forward(x).sizes() == dims({2, 10}));
  CHECK(mobilenet->features(x).at("head").sizes() == dims({2, 1280, 4, 4}));
  CHECK(mobilenet->forward(x).sizes() == dims({2, 10}));
  CHECK_THROWS_WITH(resnet->forward(torch::rand({2, 3, 28, 28})), ContainsSubstring("expected [B, 1, H, W]"));
  CHECK_THROWS_WITH(ResNet18(ardent::models::ResNet18Options(10).width(0)),
                    ContainsSubstring("'in_channels'/'width' are 3/0"));
  CHECK_THROWS_WITH(MobileNetV2(ardent::models::MobileNetV2Options(10).width_multiplier(0)),
                    ContainsSubstring("width_multiplier"));
}

namespace {
/// Sums over one participant: batch_norm must then be BatchNorm2d itself.
struct OneParticipant : ardent::models::BatchNormReduction {
  int calls = 0;
  torch::Tensor sum(const torch::Tensor& local) override {
    ++calls;
    return local * 1.0;
  }
};
}  // namespace

TEST_CASE("batch_norm with a reduction computes BatchNorm2d: output, gradients, running statistics", "[models]") {
  torch::manual_seed(0);
  for (const bool cumulative : {false, true}) {
    auto options = torch::nn::BatchNorm2dOptions(3);
    if (cumulative) options.momentum(c10::nullopt);  // running statistics: the cumulative average
    torch::nn::BatchNorm2d reference(options), reduced(options);
    {
      torch::NoGradGuard no_grad;
      reference->weight.uniform_(0.5, 1.5);
      reference->bias.uniform_(-0.5, 0.5);
      reduced->weight.copy_(reference->weight);
      reduced->bias.copy_(reference->bias);
    }
    OneParticipant one;
    REQUIRE(ardent::models::batch_norm_reduction() == nullptr);
    ardent::models::detail::batch_norm_reduction() = &one;
    for (int step = 0; step < 3; ++step) {
      const auto x = (torch::randn({4, 3, 5, 5}) * 2 + 1).requires_grad_(true);
      const auto weights = torch::randn({4, 3, 5, 5});
      const auto y_ref = reference->forward(x);
      const auto y = ardent::models::batch_norm(reduced, x);
      CHECK(torch::allclose(y, y_ref, 1e-5, 1e-5));
      const auto g_ref = torch::autograd::grad({(y_ref * weights).sum()}, {x, reference->weight, reference->bias});
      const auto g = torch::autograd::grad({(y * weights).sum()}, {x, reduced->weight, reduced->bias});
      for (int i = 0; i < 3; ++i) CHECK(torch::allclose(g[i], g_ref[i], 1e-4, 1e-5));
      CHECK(torch::allclose(reduced->running_mean, reference->running_mean, 1e-5, 1e-6));
      CHECK(torch::allclose(reduced->running_var, reference->running_var, 1e-5, 1e-6));
      CHECK(reduced->num_batches_tracked.item<int64_t>() == step + 1);
    }
    CHECK(one.calls == 6);  // two sums per training forward
    reduced->eval();        // eval mode: the running statistics, no reduction
    reference->eval();
    const auto x = torch::randn({2, 3, 5, 5});
    CHECK(torch::allclose(ardent::models::batch_norm(reduced, x), reference->forward(x), 1e-5, 1e-6));
    CHECK(one.calls == 6);
    ardent::models::detail::batch_norm_reduction() = nullptr;
  }
}

TEST_CASE("WideResNet: WRN-34-10 parameter count, names, sub_block1, WRN-16-2 forward", "[models]") {
  torch::manual_seed(0);
  {
    WideResNet wrn(WideResNetOptions(34, 10));
    CHECK(count_parameters(*wrn) == 46160474);
    auto shapes = shapes_of(*wrn);
    CHECK(shapes.at("conv1.weight") == dims({16, 3, 3, 3}));
    CHECK(shapes.at("block1.layer.0.bn1.weight") == dims({16}));
    CHECK(shapes.at("block1.layer.0.convShortcut.weight") == dims({160, 16, 1, 1}));
    CHECK(shapes.count("block1.layer.1.convShortcut.weight") == 0);
    CHECK(shapes.at("block1.layer.4.conv2.weight") == dims({160, 160, 3, 3}));
    CHECK(shapes.count("block1.layer.5.conv1.weight") == 0);
    CHECK(shapes.at("block2.layer.0.convShortcut.weight") == dims({320, 160, 1, 1}));
    CHECK(shapes.at("block3.layer.0.conv1.weight") == dims({640, 320, 3, 3}));
    CHECK(shapes.at("bn1.running_mean") == dims({640}));
    CHECK(shapes.at("fc.weight") == dims({10, 640}));
    CHECK(shapes.count("sub_block1.layer.0.conv1.weight") == 0);
    // The reference initialisation: zero linear bias, unit BN weight, He-normal convolutions.
    CHECK(torch::equal(wrn->named_parameters()["fc.bias"], torch::zeros({10})));
    const double std = wrn->named_parameters()["block3.layer.1.conv1.weight"].std().item<double>();
    CHECK(std == Approx(std::sqrt(2.0 / (9 * 640))).epsilon(0.02));
  }
  {
    WideResNet with_sub(WideResNetOptions(16, 2).sub_block1(true));
    WideResNet without(WideResNetOptions(16, 2));
    auto shapes = shapes_of(*with_sub);
    CHECK(shapes.at("sub_block1.layer.1.conv2.weight") == dims({32, 32, 3, 3}));
    int64_t sub = 0;
    for (const auto& p : with_sub->named_parameters()) {
      if (p.key().rfind("sub_block1.", 0) == 0) sub += p.value().numel();
    }
    CHECK(sub > 0);
    CHECK(count_parameters(*with_sub) == count_parameters(*without) + sub);
  }

  WideResNet wrn(WideResNetOptions(16, 2).num_classes(7));
  wrn->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::rand({2, 3, 32, 32});
  CHECK(wrn->forward(x).sizes() == dims({2, 7}));
  auto f = wrn->features(x);
  CHECK(f.size() == 5);
  CHECK(f.at("stem").sizes() == dims({2, 16, 32, 32}));
  CHECK(f.at("block1").sizes() == dims({2, 32, 32, 32}));
  CHECK(f.at("block2").sizes() == dims({2, 64, 16, 16}));
  CHECK(f.at("block3").sizes() == dims({2, 128, 8, 8}));
  CHECK(f.at("head").sizes() == dims({2, 128, 8, 8}));
  CHECK(f.at("head").min().item<float>() >= 0.0F);

  CHECK_THROWS_WITH(WideResNet(WideResNetOptions(33, 10)),
                    ContainsSubstring("'depth' is 33") && ContainsSubstring("6n + 4"));
  CHECK_THROWS_WITH(WideResNet(WideResNetOptions(16, 0)), ContainsSubstring("'widen_factor' is 0"));
  CHECK_THROWS_WITH(WideResNet(WideResNetOptions(16, 1).dropout(1.0)), ContainsSubstring("'dropout'"));
}

TEST_CASE("load_state_dict reads Python's torch.save files and reproduces their outputs", "[models]") {
  const auto x = ardent_test::read_bin(fixtures() / "smallcnn_w4_input.bin", {2, 1, 28, 28}, torch::kFloat32);
  const auto expected = ardent_test::read_bin(fixtures() / "smallcnn_w4_logits.bin", {2, 10}, torch::kFloat32);

  SECTION("DataParallel state dict: the module. prefix is stripped") {
    auto raw = ardent::read_state_dict(fixtures() / "smallcnn_w4_dataparallel.pt");
    CHECK(raw.keys() == std::vector<std::string>({"module.c1.weight", "module.c1.bias", "module.c2.weight",
                                                  "module.c2.bias", "module.fc.weight", "module.fc.bias"}));
    SmallCNN model(SmallCNNOptions(10).width(4));
    ardent::load_state_dict(model, fixtures() / "smallcnn_w4_dataparallel.pt");
    CHECK(torch::equal(model->named_parameters()["fc.bias"], raw["module.fc.bias"]));
    model->eval();
    torch::NoGradGuard no_grad;
    CHECK(torch::allclose(model->forward(x), expected, 1e-5, 1e-5));
  }
  SECTION("checkpoint with the state dict under \"state_dict\" and other Python objects beside it") {
    auto model = std::make_shared<ardent::models::SmallCNNImpl>(SmallCNNOptions(10).width(4));
    ardent::load_state_dict(model, fixtures() / "smallcnn_w4_checkpoint.pt");
    model->eval();
    torch::NoGradGuard no_grad;
    CHECK(torch::allclose(model->forward(x), expected, 1e-5, 1e-5));
  }
  SECTION("BatchNorm buffers, num_batches_tracked included") {
    TinyBN model;
    ardent::load_state_dict(model, fixtures() / "tinybn.pt");
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

TEST_CASE("load_state_dict lists missing, unexpected and wrongly shaped keys", "[models]") {
  TempDir tmp;
  SECTION("wrong shapes: both shapes are named and the model is left unchanged") {
    torch::manual_seed(1);
    SmallCNN wide(SmallCNNOptions(10).width(8));
    auto before = wide->named_parameters()["c1.weight"].clone();
    CHECK_THROWS_WITH(ardent::load_state_dict(wide, fixtures() / "smallcnn_w4_dataparallel.pt"),
                      ContainsSubstring("smallcnn_w4_dataparallel.pt") &&
                          ContainsSubstring("c1.weight (file [4, 1, 3, 3], model [8, 1, 3, 3])") &&
                          ContainsSubstring("fc.weight (file [10, 392], model [10, 784])") &&
                          ContainsSubstring("missing keys []") && ContainsSubstring("unexpected keys []"));
    CHECK(torch::equal(wide->named_parameters()["c1.weight"], before));
  }
  SECTION("renamed and extra keys") {
    SmallCNN source(SmallCNNOptions(10).width(4));
    torch::OrderedDict<std::string, torch::Tensor> renamed;
    for (const auto& item : ardent::state_dict_of(*source)) {
      std::string key = item.key();
      if (key.rfind("c1.", 0) == 0) key = "conv1." + key.substr(3);
      renamed.insert(key, item.value());
    }
    renamed.insert("extra.running_mean", torch::zeros({3}));
    ardent::write_state_dict(renamed, tmp.path / "renamed.pt");
    SmallCNN target(SmallCNNOptions(10).width(4));
    CHECK_THROWS_WITH(ardent::load_state_dict(target, tmp.path / "renamed.pt"),
                      ContainsSubstring("missing keys [c1.bias, c1.weight]") &&
                          ContainsSubstring("unexpected keys [conv1.weight, conv1.bias, extra.running_mean]") &&
                          ContainsSubstring("wrongly shaped keys []"));
  }
  SECTION("a partial module. prefix is not stripped") {
    SmallCNN source(SmallCNNOptions(10).width(4));
    torch::OrderedDict<std::string, torch::Tensor> partly;
    for (const auto& item : ardent::state_dict_of(*source)) {
      partly.insert(item.key() == "fc.bias" ? item.key() : "module." + item.key(), item.value());
    }
    ardent::write_state_dict(partly, tmp.path / "partly.pt");
    CHECK_THROWS_WITH(ardent::load_state_dict(source, tmp.path / "partly.pt"),
                      ContainsSubstring("unexpected keys [module.c1.weight"));
  }
}

TEST_CASE("read_state_dict rejects truncated, garbage, empty and legacy files naming the path", "[models]") {
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
    CHECK_THROWS_WITH(ardent::load_state_dict(model, path),
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
    CHECK_NOTHROW(ardent::read_state_dict(rewrite("rewritten.pt", pickle)));
    auto cut = rewrite("cut_pickle.pt", pickle.substr(0, pickle.size() / 2));
    CHECK_THROWS_WITH(ardent::read_state_dict(cut), ContainsSubstring("cut_pickle.pt") &&
                                                        ContainsSubstring("truncated or malformed") &&
                                                        ContainsSubstring("pickle"));
    auto odd = rewrite("odd_pickle.pt", std::string("\x80\x02\xff.", 4));
    CHECK_THROWS_WITH(ardent::read_state_dict(odd), ContainsSubstring("unsupported pickle opcode 0xff"));
    auto list = rewrite("list_pickle.pt", std::string("\x80\x02]q\x00.", 6));
    CHECK_THROWS_WITH(ardent::read_state_dict(list), ContainsSubstring("holds a list, expected a state dict"));
  }
  CHECK_THROWS_WITH(ardent::load_state_dict(model, write("garbage.pt", "this is not a checkpoint")),
                    ContainsSubstring("garbage.pt") && ContainsSubstring("not a zip archive"));
  CHECK_THROWS_WITH(ardent::load_state_dict(model, write("empty.pt", "")),
                    ContainsSubstring("empty.pt") && ContainsSubstring("empty"));
  CHECK_THROWS_WITH(ardent::load_state_dict(model, tmp.path / "missing.pt"),
                    ContainsSubstring("missing.pt") && ContainsSubstring("cannot be opened"));
  CHECK_THROWS_WITH(ardent::load_state_dict(model, fixtures() / "smallcnn_w4_legacy.pt"),
                    ContainsSubstring("smallcnn_w4_legacy.pt") && ContainsSubstring("legacy") &&
                        ContainsSubstring("torch.save(torch.load("));
  CHECK(torch::equal(model->named_parameters()["fc.weight"], before));
}

TEST_CASE("save_state_dict and load_state_dict round-trip bit-identically", "[models]") {
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
    ardent::save_state_dict(a, path);
    CHECK(fs::exists(path));
    for (const auto& entry : fs::directory_iterator(tmp.path)) CHECK(entry.path() == path);  // no temporary left
    ResNet18 b;
    ardent::load_state_dict(b, path);
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
    ardent::save_state_dict(MobileNetV2(), path);
    ardent::save_state_dict(a, path);  // replaces the first file
    MobileNetV2 b;
    ardent::load_state_dict(b, path);
    require_same_state(*a, *b);
  }
  SECTION("WideResNet with the Python class's sub_block1 loads into the default one, not the reverse") {
    WideResNet python_like(WideResNetOptions(16, 2).sub_block1(true));
    const auto path = tmp.path / "wrn_sub.pt";
    ardent::save_state_dict(python_like, path);
    CHECK(ardent::read_state_dict(path).contains("sub_block1.layer.0.conv1.weight"));
    WideResNet plain(WideResNetOptions(16, 2));
    ardent::load_state_dict(plain, path);
    CHECK(torch::equal(plain->named_parameters()["block3.layer.1.conv2.weight"],
                       python_like->named_parameters()["block3.layer.1.conv2.weight"]));

    const auto plain_path = tmp.path / "wrn.pt";
    ardent::save_state_dict(plain, plain_path);
    WideResNet wants_sub(WideResNetOptions(16, 2).sub_block1(true));
    CHECK_THROWS_WITH(ardent::load_state_dict(wants_sub, plain_path),
                      ContainsSubstring("missing keys [sub_block1.layer.0.bn1.bias"));
    // Only WideResNet skips sub_block1 keys: elsewhere they are unexpected.
    SmallCNN cnn(SmallCNNOptions(10).width(4));
    auto sd = ardent::state_dict_of(*cnn);
    sd.insert("sub_block1.layer.0.conv1.weight", torch::zeros({1}));
    ardent::write_state_dict(sd, tmp.path / "cnn_sub.pt");
    CHECK_THROWS_WITH(ardent::load_state_dict(cnn, tmp.path / "cnn_sub.pt"),
                      ContainsSubstring("unexpected keys [sub_block1.layer.0.conv1.weight]"));
  }
}
