// ardent::evaluate (the AutoAttack protocol), its report, its presets, and the CIFAR-10 reader.
#include "catch.hpp"
#include "helpers.hpp"

#include <ardent/data/cifar.hpp>
#include <ardent/eval/evaluate.hpp>

#include <filesystem>
#include <fstream>
#include <memory>

using namespace ardent;

namespace {

// logits = (a, b) for inputs (a, b, tag): the tag identifies a sample to the attacks below.
struct TagNetImpl : torch::nn::Module {
  TagNetImpl() { scale = register_parameter("scale", torch::ones({1})); }
  torch::Tensor forward(const torch::Tensor& x) { return x.slice(1, 0, 2) * scale; }
  torch::Tensor scale;
};
TORCH_MODULE(TagNet);

// Records the tags it is given; breaks (swaps a and b of) the samples whose tag is in `breaks`.
struct CountingAttack {
  std::shared_ptr<std::vector<double>> seen = std::make_shared<std::vector<double>>();
  std::shared_ptr<std::vector<int64_t>> calls = std::make_shared<std::vector<int64_t>>();
  std::vector<double> breaks;

  torch::Tensor perturb(TagNet& /*model*/, const torch::Tensor& x, const torch::Tensor& /*labels*/) const {
    calls->push_back(x.size(0));
    auto out = x.clone();
    for (int64_t i = 0; i < x.size(0); ++i) {
      const double tag = x[i][2].item<double>();
      seen->push_back(tag);
      if (std::find(breaks.begin(), breaks.end(), tag) != breaks.end()) {
        out[i][0] = x[i][1];
        out[i][1] = x[i][0];
      }
    }
    return out;
  }
};

// Ten samples with tags 0..9, all of class 0 (a > b) except tags 8 and 9 (misclassified).
std::pair<torch::Tensor, torch::Tensor> tagged_data() {
  auto x = torch::zeros({10, 3});
  for (int64_t i = 0; i < 10; ++i) {
    x[i][0] = i < 8 ? 0.9 : 0.1;
    x[i][1] = i < 8 ? 0.1 : 0.9;
    x[i][2] = static_cast<double>(i);  // exact in float32
  }
  return {x, torch::zeros({10}, torch::kLong)};
}

struct PairDataset : torch::data::datasets::Dataset<PairDataset> {
  PairDataset(torch::Tensor x, torch::Tensor y) : x_(std::move(x)), y_(std::move(y)) {}
  torch::data::Example<> get(size_t i) override { return {x_[static_cast<int64_t>(i)], y_[static_cast<int64_t>(i)]}; }
  torch::optional<size_t> size() const override { return static_cast<size_t>(x_.size(0)); }
  torch::Tensor x_, y_;
};

std::vector<double> sorted(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

TEST_CASE("later attacks see only the points every earlier attack failed on", "[eval][protocol]") {
  TagNet model;
  const auto [x, y] = tagged_data();
  CountingAttack first{.breaks = {0, 1, 2}};
  CountingAttack second{.breaks = {3}};
  CountingAttack third{};

  SECTION("individual(false): the protocol alone") {
    const auto report = evaluate(
        model, x, y,
        {eval::NamedAttack<TagNet>("first", first), eval::NamedAttack<TagNet>("second", second),
         eval::NamedAttack<TagNet>("third", third)},
        EvalOptions().individual(false).batch_size(4));
    // Tags 8 and 9 are misclassified: no attack sees them.
    CHECK((sorted(*first.seen) == std::vector<double>{0, 1, 2, 3, 4, 5, 6, 7}));
    CHECK((sorted(*second.seen) == std::vector<double>{3, 4, 5, 6, 7}));
    CHECK((sorted(*third.seen) == std::vector<double>{4, 5, 6, 7}));
    CHECK(report.samples == 10);
    CHECK(report.clean_accuracy == Approx(0.8));
    CHECK(report.attacks[0].worst_case_accuracy == Approx(0.5));
    CHECK(report.attacks[1].worst_case_accuracy == Approx(0.4));
    CHECK(report.worst_case_accuracy == Approx(0.4));
    CHECK(report.attacks[1].attacked == 5);
    CHECK_FALSE(report.attacks[0].robust_accuracy.has_value());
  }
  SECTION("individual(true): each attack also alone, each point seen once, the chain on survivors") {
    const auto report = evaluate(
        model, x, y,
        {eval::NamedAttack<TagNet>("first", first), eval::NamedAttack<TagNet>("second", second),
         eval::NamedAttack<TagNet>("third", third)},
        EvalOptions().batch_size(10));
    CHECK((sorted(*second.seen) == std::vector<double>{0, 1, 2, 3, 4, 5, 6, 7}));
    CHECK((*second.calls == std::vector<int64_t>{5, 3}));  // the survivors, then the others
    CHECK(*report.attacks[0].robust_accuracy == Approx(0.5));
    CHECK(*report.attacks[1].robust_accuracy == Approx(0.7));
    CHECK(*report.attacks[2].robust_accuracy == Approx(0.8));
    CHECK(report.worst_case_accuracy == Approx(0.4));
    for (const auto& a : report.attacks) CHECK(report.worst_case_accuracy <= *a.robust_accuracy);
  }
}

TEST_CASE("on the reference model the worst case is at most every attack's accuracy", "[eval][reference]") {
  auto ref = ardent_test::load_reference();
  const auto x = ref.x.slice(0, 0, 32);
  const auto y = ref.y.slice(0, 0, 32);
  constexpr double eps = 0.05;
  std::vector<eval::Preset> suite{eval::pgd(eps, 5), eval::cw_linf(eps, 5)};
  for (auto& p : eval::autoattack_lite(eps, Norm::Linf, /*steps=*/5)) suite.push_back(p);
  std::vector<EvalProgress> progress;
  torch::manual_seed(0);
  const auto report = evaluate(ref.model, x, y, suite,
                               EvalOptions().batch_size(16).progress_every(1).on_progress(
                                   [&](const EvalProgress& p) { progress.push_back(p); }));
  REQUIRE(report.attacks.size() == 4);
  CHECK(report.clean_accuracy == Approx(ardent_test::accuracy(ardent::forward(ref.model, x), y)));
  for (const auto& a : report.attacks) {
    INFO(a.name);
    CHECK(report.worst_case_accuracy <= *a.robust_accuracy);
    CHECK(*a.robust_accuracy <= report.clean_accuracy);
  }
  for (std::size_t k = 1; k < report.attacks.size(); ++k) {
    CHECK(report.attacks[k].worst_case_accuracy <= report.attacks[k - 1].worst_case_accuracy);
  }
  CHECK(report.worst_case_accuracy == report.attacks.back().worst_case_accuracy);
  REQUIRE(progress.size() == 2);
  CHECK(progress[1].samples == 32);
  CHECK(progress[1].total == 32);

  SECTION("the report records each attack's settings, and prints and writes itself") {
    const auto json = report.to_json();
    CHECK(json["attacks"][0]["settings"]["attack"] == "PGD");
    CHECK(json["attacks"][0]["settings"]["steps"] == 5);
    CHECK(json["attacks"][1]["settings"]["attack"] == "CWLinf");
    CHECK(json["attacks"][2]["settings"]["loss"] == "CE");
    CHECK(json["attacks"][3]["settings"]["loss"] == "TargetedDLR");
    CHECK(json["attacks"][3]["settings"]["epsilon"] == eps);
    CHECK(json["worst_case_accuracy"] == report.worst_case_accuracy);
    const auto table = fmt::format("{}", report);
    CHECK_THAT(table, ContainsSubstring("APGD-T") && ContainsSubstring("worst-case robust accuracy"));
    const auto path = std::filesystem::temp_directory_path() / "ardent_eval_test_report.json";
    report.write_json(path);
    std::ifstream in(path);
    CHECK(nlohmann::json::parse(in) == json);
    std::filesystem::remove(path);
  }
}

TEST_CASE("evaluate over a data loader equals evaluate over tensors", "[eval]") {
  auto ref = ardent_test::load_reference();
  const auto x = ref.x.slice(0, 0, 20);
  const auto y = ref.y.slice(0, 0, 20);
  auto loader = torch::data::make_data_loader<torch::data::samplers::SequentialSampler>(
      PairDataset(x, y), torch::data::DataLoaderOptions().batch_size(8));
  const std::vector<eval::Preset> none{{"none", attacks::None()}};
  const auto from_loader = evaluate(ref.model, *loader, none);
  const auto from_tensors = evaluate(ref.model, x, y, none, EvalOptions().batch_size(8));
  CHECK(from_loader.samples == 20);
  CHECK(from_loader.clean_accuracy == from_tensors.clean_accuracy);
  CHECK(from_loader.worst_case_accuracy == from_tensors.clean_accuracy);
}

TEST_CASE("evaluate rejects bad input naming the argument", "[eval][errors]") {
  TagNet model;
  const auto [x, y] = tagged_data();
  const std::vector<eval::NamedAttack<TagNet>> none{{"none", CountingAttack{}}};
  CHECK_THROWS_WITH(evaluate(model, x, y.to(torch::kFloat), none), ContainsSubstring("'y'"));
  CHECK_THROWS_WITH(evaluate(model, x, y.slice(0, 0, 3), none), ContainsSubstring("'y'"));
  CHECK_THROWS_WITH(evaluate(model, x.to(torch::kLong), y, none), ContainsSubstring("'x'"));
  CHECK_THROWS_WITH(evaluate(model, torch::Tensor(), y, none), ContainsSubstring("'x'"));
  CHECK_THROWS_WITH(evaluate(model, x, y, none, EvalOptions().batch_size(0)), ContainsSubstring("'batch_size'"));
  CHECK_THROWS_WITH(evaluate(model, x, y, none, EvalOptions().progress_every(-1)),
                    ContainsSubstring("'progress_every'"));
}

TEST_CASE("the presets name their attacks and use the published settings", "[eval]") {
  const auto suite = eval::autoattack_lite(8.0 / 255);
  REQUIRE(suite.size() == 2);
  const auto& ce = std::get<attacks::APGD>(suite[0].attack).options();
  const auto& t = std::get<attacks::APGD>(suite[1].attack).options();
  CHECK(ce.loss() == attacks::APGDLoss::CE);
  CHECK(t.loss() == attacks::APGDLoss::TargetedDLR);
  CHECK(ce.steps() == 100);
  CHECK(t.n_target_classes() == 9);
  CHECK(ce.rho() == 0.75);
  CHECK_THAT(suite[0].name, ContainsSubstring("APGD-CE"));
  CHECK_THAT(suite[1].name, ContainsSubstring("APGD-T"));
  const auto cw = std::get<attacks::CWLinf>(eval::cw_linf(0.1, 10).attack);
  CHECK(cw.options().step_size() == Approx(0.025));
}

TEST_CASE("CIFAR-10 binary files are read, and malformed ones throw naming the path", "[eval][data]") {
  const auto dir = std::filesystem::temp_directory_path() / "ardent_cifar_test";
  std::filesystem::create_directories(dir);
  std::vector<unsigned char> bytes(2 * 3073);
  bytes[0] = 3;
  bytes[3073] = 9;
  for (std::size_t i = 1; i < 3073; ++i) bytes[i] = static_cast<unsigned char>(i % 256);
  bytes[3073 + 1 + 1024] = 255;  // the second image's first green pixel
  const auto write = [](const std::filesystem::path& path, const std::vector<unsigned char>& data) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  };
  write(dir / "test_batch.bin", bytes);
  const data::CIFAR10 test(dir, data::CIFAR10::Split::Test);
  CHECK((test.images().sizes() == torch::IntArrayRef{2, 3, 32, 32}));
  CHECK((torch::equal(test.labels(), torch::tensor({3, 9}, torch::kLong))));
  CHECK(test.images()[1][1][0][0].item<float>() == 1.0F);
  CHECK(test.images()[0][0][0][1].item<float>() == Approx(2.0 / 255));

  auto truncated = bytes;
  truncated.resize(3073 + 100);
  write(dir / "test_batch.bin", truncated);
  CHECK_THROWS_WITH(data::CIFAR10(dir, data::CIFAR10::Split::Test),
                    ContainsSubstring("test_batch.bin") && ContainsSubstring("truncated"));
  auto bad_label = bytes;
  bad_label[0] = 10;
  write(dir / "test_batch.bin", bad_label);
  CHECK_THROWS_WITH(data::CIFAR10(dir, data::CIFAR10::Split::Test),
                    ContainsSubstring("test_batch.bin") && ContainsSubstring("label"));
  CHECK_THROWS_WITH(data::CIFAR10(dir, data::CIFAR10::Split::Train), ContainsSubstring("data_batch_1.bin"));
  std::filesystem::remove_all(dir);
}
