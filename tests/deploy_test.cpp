// ardent::deploy: observers, BatchNorm folding, int8 weights, the int8 model against its dequantized
// reference, save/load, refusals.
#include "catch.hpp"
#include "helpers.hpp"

#include <ardent/deploy.hpp>
#include <ardent/eval/deployed.hpp>
#include <ardent/eval/evaluate.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>

using namespace ardent;

namespace {

std::filesystem::path temp_file(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / "ardent_deploy_test";
  std::filesystem::create_directories(dir);
  return dir / name;
}

template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// A trained SmallCNN (the reference of tests/data/attack_vectors) and its 64 MNIST images.
struct Trained {
  models::SmallCNN model;
  torch::Tensor x;
  torch::Tensor y;
};

Trained trained() {
  auto r = ardent_test::load_reference();
  return {ardent_test::small_cnn_copy(r.model), r.x, r.y};
}

void randomise_batch_norm(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& m : model.modules()) {
    if (auto* bn = m->as<torch::nn::BatchNorm2dImpl>()) {
      bn->running_mean.uniform_(-0.5, 0.5);
      bn->running_var.uniform_(0.5, 2.0);
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.uniform_(-0.2, 0.2);
    }
  }
}

}  // namespace

TEST_CASE("activation grids follow PyTorch's affine observers", "[deploy]") {
  const auto q = deploy::qparams_of_range(-1.0, 3.0, false);
  CHECK(q.scale == Approx(4.0 / 255).epsilon(1e-6));
  CHECK(q.zero_point == 64);                                        // 1 / (4 / 255) = 63.75
  const auto positive = deploy::qparams_of_range(0.5, 2.0, false);  // widened to contain 0
  CHECK(positive.zero_point == 0);
  CHECK(positive.scale == Approx(2.0 / 255).epsilon(1e-6));
  CHECK(deploy::qparams_of_range(-1.0, 3.0, true).scale == Approx(4.0 / 127).epsilon(1e-6));

  deploy::RangeObserver minmax(1, deploy::QuantizeOptions());
  minmax.observe(0, torch::tensor({-1.0, 2.0}), 1);
  minmax.observe(0, torch::tensor({-3.0, 1.0}), 1);
  CHECK(minmax.range(0) == std::pair<double, double>{-3.0, 2.0});

  // One outlier among 10,000 values: the percentile observer ignores it, MinMax does not.
  auto values = torch::linspace(0, 1, 10000);
  values[0] = 100.0;
  deploy::RangeObserver percentile(1,
                                   deploy::QuantizeOptions().observer(deploy::Observer::Percentile).percentile(99.0));
  percentile.observe(0, values, 1);
  CHECK(percentile.range(0).second == Approx(0.99).margin(0.01));
  CHECK(deploy::batch_range(values, deploy::QuantizeOptions()).second == 100.0);
}

TEST_CASE("int8 weights: symmetric, per channel or per tensor, within half a step", "[deploy]") {
  torch::manual_seed(0);
  auto w = torch::randn({4, 3, 3, 3}) * torch::tensor({0.01, 0.1, 1.0, 10.0}).reshape({4, 1, 1, 1});
  for (const bool per_channel : {true, false}) {
    const auto q = deploy::quantize_weight(w, per_channel);
    CHECK(q.scales.size(0) == (per_channel ? 4 : 1));
    CHECK(q.values.scalar_type() == torch::kInt8);
    const auto err = (q.dequantized() - w).abs().reshape({4, -1}).amax(1);
    const auto steps = per_channel ? q.scales : q.scales.expand({4});
    CHECK((err <= steps.to(torch::kFloat32) * 0.5 + 1e-6).all().item<bool>());
    // The largest weight of each channel lands at the end of the int8 range.
    const auto top = q.values.to(torch::kLong).abs().reshape({4, -1}).amax(1);
    if (per_channel) CHECK((top >= 127).all().item<bool>());
  }
}

TEST_CASE("BatchNorm folds into the convolution, and every model's graph computes the model", "[deploy]") {
  torch::manual_seed(1);
  torch::nn::Sequential seq(
      torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)), torch::nn::BatchNorm2d(8), torch::nn::ReLU6(),
      torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 8, 3).stride(2).groups(8)), torch::nn::BatchNorm2d(8),
      torch::nn::ReLU(), torch::nn::AdaptiveAvgPool2d(1), torch::nn::Flatten(), torch::nn::Linear(8, 5));
  randomise_batch_norm(*seq);
  seq->eval();
  const auto x = torch::rand({4, 3, 16, 16}) * 8;
  const auto g = deploy::to_graph(seq);
  CHECK(g.nodes.size() == 4);  // two convolutions, the pooling, the linear layer
  CHECK(torch::allclose(deploy::run_float(g, x), seq->forward(x), 1e-4, 1e-5));

  models::MobileNetV2 mobilenet(models::MobileNetV2Options(10).width_multiplier(0.25));
  models::ResNet18 resnet(models::ResNet18Options(10).width(4));
  randomise_batch_norm(*mobilenet);
  randomise_batch_norm(*resnet);
  mobilenet->eval();
  resnet->eval();
  const auto images = torch::rand({2, 3, 32, 32});
  torch::NoGradGuard no_grad;
  CHECK(
      torch::allclose(deploy::run_float(deploy::to_graph(mobilenet), images), mobilenet->forward(images), 1e-3, 1e-4));
  CHECK(torch::allclose(deploy::run_float(deploy::to_graph(resnet), images), resnet->forward(images), 1e-3, 1e-4));
  // Pre-activation blocks: bn2 folds into conv1, bn1 (which reads the residual sum) is a layer of its own.
  models::WideResNet wide(models::WideResNetOptions(10, 1));
  randomise_batch_norm(*wide);
  wide->eval();
  const auto wide_graph = deploy::to_graph(wide);
  CHECK(std::count_if(wide_graph.nodes.begin(), wide_graph.nodes.end(), [](const deploy::Node& n) {
          return std::holds_alternative<deploy::BatchNorm>(n);
        }) == 4);  // one per block (3) and the final one
  CHECK(torch::allclose(deploy::run_float(wide_graph, images), wide->forward(images), 1e-3, 1e-4));
  auto small = trained().model;
  CHECK(torch::allclose(deploy::run_float(deploy::to_graph(small), trained().x), small->forward(trained().x), 1e-4,
                        1e-4));
}

TEST_CASE("a layer the int8 kernels compute agrees with its dequantized reference within one step", "[deploy]") {
  torch::manual_seed(2);
  torch::nn::Sequential seq(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 16, 3).padding(1)), torch::nn::ReLU());
  const auto x = torch::rand({8, 3, 12, 12});
  for (const std::string engine : {"qnnpack", "onednn"}) {
    for (const bool per_channel : {true, false}) {
      auto q = deploy::quantize(seq, x, deploy::QuantizeOptions().engine(engine).per_channel(per_channel));
      const double step = q->program().activations.back().scale;
      const auto diff = (forward(q, x) - q->reference_forward(x)).abs().max().item<double>();
      INFO(engine << " per_channel " << per_channel << ": difference " << diff << ", step " << step);
      CHECK(diff <= step * 1.0001);
    }
  }
}

TEST_CASE("BatchNorm layers and ReLU6 on the int8 kernels agree with the reference, on either engine", "[deploy]") {
  torch::manual_seed(5);
  // A BatchNorm after a pooling (no convolution to fold into), ReLU after it, ReLU6 after a convolution
  // whose outputs reach well past 6.
  torch::nn::Sequential seq(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)), torch::nn::MaxPool2d(2),
                            torch::nn::BatchNorm2d(8), torch::nn::ReLU(),
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 8, 3).padding(1)), torch::nn::ReLU6());
  randomise_batch_norm(*seq);
  seq->eval();
  const auto x = torch::rand({8, 3, 12, 12}) * 100;
  torch::NoGradGuard no_grad;
  REQUIRE(torch::relu(seq->forward(x)).max().item<double>() == 6.0);  // the clamp at 6 is reached
  models::WideResNet wide(models::WideResNetOptions(10, 1));
  randomise_batch_norm(*wide);
  wide->eval();
  const auto images = torch::rand({8, 3, 32, 32});
  for (const std::string engine : {"qnnpack", "onednn"}) {
    auto q = deploy::quantize(seq, x, deploy::QuantizeOptions().engine(engine));
    const double step = q->program().activations.back().scale;
    const auto out = forward(q, x);
    INFO(engine << ": difference " << (out - q->reference_forward(x)).abs().max().item<double>() << ", step " << step);
    CHECK((out - q->reference_forward(x)).abs().max().item<double>() <= 3 * step);  // a step per requantization
    CHECK(out.max().item<double>() <= 6.0 + 1e-6);

    auto qw = deploy::quantize(wide, images, deploy::QuantizeOptions().engine(engine));
    const auto logits = forward(qw, images);
    const auto reference = qw->reference_forward(images);
    const double wide_step = qw->program().activations.back().scale;
    INFO(engine << ": WideResNet difference " << (logits - reference).abs().max().item<double>() << ", step "
                << wide_step);
    CHECK((logits - reference).abs().max().item<double>() <= 8 * wide_step);
    const auto path = temp_file("wide.int8.pt");
    deploy::save_int8(qw, path);
    auto loaded = deploy::load_int8(path);
    CHECK(torch::equal(forward(loaded, images), logits));
  }
}

TEST_CASE("the int8 SmallCNN agrees with its reference and the float model, on either engine", "[deploy]") {
  auto t = trained();
  const auto previous = at::globalContext().qEngine();
  torch::NoGradGuard no_grad;
  const auto float_pred = t.model->forward(t.x).argmax(1);
  for (const std::string engine : {"qnnpack", "onednn"}) {
    auto q = deploy::quantize(t.model, t.x, deploy::QuantizeOptions().engine(engine));
    CHECK(at::globalContext().qEngine() == previous);  // the host's engine is left as it was
    const auto logits = forward(q, t.x);
    CHECK(at::globalContext().qEngine() == previous);
    const auto reference = q->reference_forward(t.x);
    const double step = q->program().activations.back().scale;
    INFO(engine << ": max difference " << (logits - reference).abs().max().item<double>() << ", step " << step);
    // Rounding differences of one step in a layer move the next layer's input by a step: a few steps at the end.
    CHECK((logits - reference).abs().max().item<double>() <= 4 * step);
    CHECK(logits.argmax(1).eq(reference.argmax(1)).to(torch::kFloat).mean().item<double>() >= 0.98);
    CHECK(logits.argmax(1).eq(float_pred).to(torch::kFloat).mean().item<double>() >= 0.95);
    CHECK(q->parameter_bytes() * 3.5 < static_cast<int64_t>(4 * torch::cat([&] {
                                                                  std::vector<torch::Tensor> flat;
                                                                  for (auto& p : t.model->parameters())
                                                                    flat.push_back(p.reshape({-1}));
                                                                  return flat;
                                                                }())
                                                                    .numel()));
  }
}

TEST_CASE("save_int8 / load_int8 round-trip, and bad files are refused by name", "[deploy]") {
  auto t = trained();
  auto q = deploy::quantize(t.model, t.x, deploy::QuantizeOptions().observer(deploy::Observer::Percentile));
  const auto path = temp_file("small.int8.pt");
  deploy::save_int8(q, path);
  auto loaded = deploy::load_int8(path);
  torch::NoGradGuard no_grad;
  CHECK(torch::equal(forward(loaded, t.x), forward(q, t.x)));
  CHECK(loaded->program().engine == "qnnpack");

  const auto float_file = temp_file("float.pt");
  torch::save(t.model, float_file.string());
  const auto wrong = error_of([&] { deploy::load_int8(float_file); });
  CHECK_THAT(wrong, Catch::Matchers::Contains(float_file.string()));
  CHECK_THAT(wrong, Catch::Matchers::Contains("not an int8 model"));

  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x5a);
  const auto corrupt = temp_file("corrupt.int8.pt");
  std::ofstream(corrupt, std::ios::binary) << bytes;
  CHECK_THAT(error_of([&] { deploy::load_int8(corrupt); }), Catch::Matchers::Contains(corrupt.string()));
  CHECK_THAT(error_of([&] { deploy::load_int8(temp_file("absent.pt")); }), Catch::Matchers::Contains("no such file"));
}

TEST_CASE("deploy refuses what it cannot quantize, by name", "[deploy]") {
  torch::nn::Sequential seq(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3)), torch::nn::Tanh());
  const auto x = torch::rand({2, 1, 8, 8});
  const auto message = error_of([&] { deploy::quantize(seq, x); });
  CHECK_THAT(message, Catch::Matchers::Contains("layer '1'") && Catch::Matchers::Contains("Tanh"));
  torch::nn::Sequential conv(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3)));
  CHECK_THAT(error_of([&] { deploy::quantize(conv, x, deploy::QuantizeOptions().engine("fbgemm")); }),
             Catch::Matchers::Contains("'engine' is \"fbgemm\""));

  auto t = trained();
  auto q = deploy::quantize(t.model, t.x.slice(0, 0, 8));
  // No gradient: a gradient attack stops with an error, it does not report gradient masking as robustness.
  attacks::PGD pgd(attacks::PGDOptions(0.1).steps(2).step_size(0.05));
  CHECK_THROWS(pgd.perturb(q, t.x.slice(0, 0, 2), t.y.slice(0, 0, 2)));
}

TEST_CASE("quantization-aware: fake quantization with straight-through gradients", "[deploy][qat]") {
  torch::manual_seed(3);
  torch::nn::Sequential seq(torch::nn::Flatten(), torch::nn::Linear(6, 3));
  const auto x = torch::rand({5, 6, 1, 1});
  auto qat = deploy::quantization_aware(seq, torch::cat({x, 2 * x, -x}));
  qat->eval();
  auto xg = x.clone().requires_grad_(true);
  qat->forward(xg).sum().backward();
  const auto weight = qat->named_parameters()["layer1_weight"];
  const auto w_q = deploy::quantize_weight(weight, true).dequantized();
  const auto in = deploy::qparams_of_range(qat->ranges()[0].first, qat->ranges()[0].second, false);
  const auto x_q = at::fake_quantize_per_tensor_affine(x.reshape({5, 6}), in.scale, in.zero_point, 0, 255);
  // The calibration images span twice the inputs, so nothing saturates: every rounding passes the gradient
  // straight through, d sum(y) / dx = 1 W_q and d sum(y) / dW = 1^T fq(x).
  CHECK(torch::allclose(xg.grad().reshape({5, 6}), torch::ones({5, 3}).mm(w_q), 1e-5, 1e-6));
  CHECK(torch::allclose(weight.grad(), torch::ones({3, 5}).mm(x_q), 1e-5, 1e-6));
  // Outside the grid's range the gradient is 0.
  auto far = (x * 0 + 10.0).requires_grad_(true);
  qat->forward(far).sum().backward();
  CHECK(far.grad().abs().max().item<double>() == 0.0);
}

TEST_CASE("quantization-aware: ranges follow training batches, and quantize uses them", "[deploy][qat]") {
  auto t = trained();
  auto qat = deploy::quantization_aware(t.model, t.x);
  const auto before = qat->ranges();
  qat->eval();
  qat->forward(t.x * 3);
  CHECK(qat->ranges() == before);  // eval mode: fixed
  qat->train();
  qat->forward(t.x * 3);
  CHECK(qat->ranges()[1].second > before[1].second);  // the first convolution saw larger inputs
  qat->eval();
  torch::NoGradGuard no_grad;
  auto q = deploy::quantize(qat, t.x);
  const auto fake = qat->forward(t.x);
  CHECK(torch::allclose(q->reference_forward(t.x), fake, 1e-4, 1e-4));
  CHECK(forward(q, t.x).argmax(1).eq(fake.argmax(1)).to(torch::kFloat).mean().item<double>() >= 0.98);
}

TEST_CASE("quantization-aware: a WideResNet's BatchNorm layers train, and quantize keeps them", "[deploy][qat]") {
  torch::manual_seed(6);
  models::WideResNet wide(models::WideResNetOptions(10, 1));
  randomise_batch_norm(*wide);
  wide->eval();
  const auto images = torch::rand({4, 3, 32, 32});
  auto qat = deploy::quantization_aware(wide, images);
  const auto params = qat->named_parameters();
  const auto* scale = params.find("layer1_scale");  // layer 0 is the stem convolution, layer 1 block 1's bn1
  REQUIRE(scale != nullptr);
  qat->train();
  qat->forward(images).sum().backward();
  CHECK(scale->grad().defined());
  CHECK(scale->grad().abs().sum().item<double>() > 0);
  qat->eval();
  torch::NoGradGuard no_grad;
  auto q = deploy::quantize(qat, images);
  CHECK(torch::allclose(q->reference_forward(images), qat->forward(images), 1e-4, 1e-4));
}

TEST_CASE("a quantization-aware model is a Distiller's student", "[deploy][qat]") {
  auto t = trained();
  models::SmallCNN teacher(models::SmallCNNOptions(10).width(4));
  teacher->eval();
  auto student = deploy::quantization_aware(t.model, t.x);
  auto ard = make_ard(teacher, student, 1.0, 30.0, attacks::PGDOptions(0.1).step_size(0.05).steps(2));
  torch::optim::SGD sgd(student->parameters(), 0.01);
  const auto before = student->named_parameters()["layer0_weight"].clone();
  const auto result = ard.step(t.x.slice(0, 0, 16), t.y.slice(0, 0, 16), sgd);
  CHECK(std::isfinite(result.loss));
  CHECK(!torch::equal(before, student->named_parameters()["layer0_weight"]));
}

TEST_CASE("a transfer attack crafts on its source; eval::deployed is not white-box", "[deploy][eval]") {
  auto t = trained();
  const auto x = t.x.slice(0, 0, 16);
  const auto y = t.y.slice(0, 0, 16);
  auto q = deploy::quantize(t.model, t.x);
  // BIM has no random start: the transfer's images are exactly BIM's on the source.
  const auto bim = eval::bim(0.1, 5);
  const auto transferred = eval::transfer(t.model, bim, "float").attack.perturb(q, x, y);
  CHECK(torch::equal(transferred, bim.attack.perturb(t.model, x, y)));

  const auto report = evaluate(q, x, y, eval::deployed(0.1, /*square_queries=*/50, /*apgd_steps=*/5));
  CHECK(!report.white_box());
  CHECK(!report.to_json()["white_box"].get<bool>());
  REQUIRE(report.attacks.size() == 3);
  CHECK_THAT(report.attacks[0].name, Catch::Matchers::Contains("transfer APGD-CE"));
  CHECK_THAT(report.table(), Catch::Matchers::Contains("Not a white-box evaluation"));
  CHECK(report.worst_case_accuracy <= report.clean_accuracy);
  const auto with_source = evaluate(q, x, y, eval::deployed(0.1, t.model, "float student", 50, 5));
  CHECK(with_source.attacks[1].settings["transfer_source"] == "float student");
  // Without an int8 model or a source there is no float twin to transfer from.
  CHECK_THROWS_WITH(evaluate(t.model, x, y, eval::deployed(0.1, 50, 5)),
                    Catch::Matchers::Contains("eval::deployed(eps, source)"));
  CHECK(evaluate(t.model, x, y, {eval::apgd_ce(0.1, 5)}).white_box());
}
