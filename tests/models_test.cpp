// The models: SmallCNN, ResNet18, MobileNetV2, WideResNet, and the batch_norm they share.
#include "catch.hpp"
#include "helpers.hpp"

#include <ardent/models/batch_norm.hpp>
#include <ardent/models/mobilenet_v2.hpp>
#include <ardent/models/resnet.hpp>
#include <ardent/models/small_cnn.hpp>
#include <ardent/models/wide_resnet.hpp>

#include <set>
#include <string>
#include <vector>

namespace {

using ardent::models::MobileNetV2;
using ardent::models::ResNet18;
using ardent::models::SmallCNN;
using ardent::models::SmallCNNOptions;
using ardent::models::WideResNet;
using ardent::models::WideResNetOptions;

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

}  // namespace

TEST_CASE("SmallCNN has the documented shape and features", "[models]") {
  ardent::models::SmallCNN model(ardent::models::SmallCNNOptions(10).width(16));
  int64_t count = 0;
  for (const auto& p : model->parameters()) count += p.numel();
  // (1*9+1)*16 + (16*9+1)*32 + (32*49+1)*10
  CHECK(count == 160 + 4640 + 15690);
  const auto x = torch::rand({2, 1, 28, 28});
  const auto features = model->features(x);
  CHECK(features.at("stage1").sizes() == torch::IntArrayRef{2, 16, 14, 14});
  CHECK(features.at("stage2").sizes() == torch::IntArrayRef{2, 32, 7, 7});
  CHECK(model->forward(x).sizes() == torch::IntArrayRef{2, 10});
  CHECK_THROWS_WITH(model->forward(torch::rand({2, 3, 32, 32})), ContainsSubstring("'x'"));
  CHECK_THROWS_WITH(ardent::models::SmallCNN(ardent::models::SmallCNNOptions(1)), ContainsSubstring("num_classes"));
}

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
