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
        eval::EvalOptions().individual(false).batch_size(4));
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
        eval::EvalOptions().batch_size(10));
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
  std::vector<eval::EvalProgress> progress;
  torch::manual_seed(0);
  const auto report = evaluate(ref.model, x, y, suite,
                               eval::EvalOptions().batch_size(16).progress_every(1).on_progress(
                                   [&](const eval::EvalProgress& p) { progress.push_back(p); }));
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
  const auto from_tensors = evaluate(ref.model, x, y, none, eval::EvalOptions().batch_size(8));
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
  CHECK_THROWS_WITH(evaluate(model, x, y, none, eval::EvalOptions().batch_size(0)), ContainsSubstring("'batch_size'"));
  CHECK_THROWS_WITH(evaluate(model, x, y, none, eval::EvalOptions().progress_every(-1)),
                    ContainsSubstring("'progress_every'"));
}

TEST_CASE("the presets name their attacks and use the published settings", "[eval]") {
  const auto suite = eval::autoattack_lite(8.0 / 255);
  REQUIRE(suite.size() == 2);
  REQUIRE(suite[0].attack.target<attacks::APGD>() != nullptr);
  CHECK(suite[0].attack.target<attacks::PGD>() == nullptr);
  const auto& ce = suite[0].attack.target<attacks::APGD>()->options();
  const auto& t = suite[1].attack.target<attacks::APGD>()->options();
  CHECK(ce.loss() == attacks::APGDLoss::CE);
  CHECK(t.loss() == attacks::APGDLoss::TargetedDLR);
  CHECK(ce.steps() == 100);
  CHECK(t.n_target_classes() == 9);
  CHECK(ce.rho() == 0.75);
  CHECK_THAT(suite[0].name, ContainsSubstring("APGD-CE"));
  CHECK_THAT(suite[1].name, ContainsSubstring("APGD-T"));
  const auto cw = *eval::cw_linf(0.1, 10).attack.target<attacks::CWLinf>();
  CHECK(cw.options().step_size() == Approx(0.025));
  const auto rand = eval::autoattack_rand(0.1);
  REQUIRE(rand.size() == 2);
  CHECK(rand[0].attack.target<attacks::APGD>()->options().eot_samples() == 20);
  CHECK(rand[1].attack.target<attacks::APGD>()->options().loss() == attacks::APGDLoss::DLR);
  CHECK(rand[1].attack.settings()["eot_samples"] == 20);
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

// ---------------------------------------------------------------------------------------------
// Attacks described next to themselves, type-erased presets, the checks at the call, warnings.

namespace user {

// A user's attack, unknown to ardent: moves every pixel by +eps (then clamps to [0, 1]). Its
// settings come from its own to_json, found by argument-dependent lookup.
struct Brighten {
  double epsilon = 0.1;
  template <ardent::Model M>
  torch::Tensor perturb(M& /*model*/, const torch::Tensor& x, const torch::Tensor& /*labels*/) const {
    return (x + epsilon).clamp(0.0, 1.0);
  }
};
template <typename Json>
void to_json(Json& j, const Brighten& attack) {
  j = Json{{"attack", "Brighten"}, {"epsilon", attack.epsilon}, {"clip_min", 0.0}, {"clip_max", 1.0}};
}

// A gradient-free random search (sign vectors of the Linf ball, kept when they lower the margin):
// a stand-in for Square that any model type accepts. It says so with its type (the to_json below
// is for the report only).
struct RandomSearch {
  static constexpr bool gradient_free = true;
  double epsilon = 0.3;
  int64_t queries = 300;
  template <ardent::Model M>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const torch::Tensor& y) const {
    torch::NoGradGuard no_grad;
    const auto margin = [&](const torch::Tensor& point) {
      const auto z = ardent::forward(model, point);
      const auto mask = torch::one_hot(y, z.size(1)).to(torch::kBool);
      return z.gather(1, y.unsqueeze(1)).squeeze(1) - z.masked_fill(mask, -1e30).amax(1);
    };
    auto generator = at::detail::createCPUGenerator(7);
    auto best = x.clone();
    auto best_margin = margin(best);
    for (int64_t q = 0; q < queries; ++q) {
      const auto signs = torch::randint(0, 2, x.sizes(), generator, x.options()) * 2 - 1;
      const auto candidate = (x + epsilon * signs).clamp(0.0, 1.0);
      const auto m = margin(candidate);
      const auto better = m.lt(best_margin).logical_and(best_margin.gt(0));
      best = torch::where(better.reshape({-1, 1}), candidate, best);
      best_margin = torch::where(better, m, best_margin);
    }
    return best;
  }
};
template <typename Json>
void to_json(Json& j, const RandomSearch& attack) {
  j = Json{
      {"attack", "RandomSearch"}, {"gradient_free", true}, {"epsilon", attack.epsilon}, {"queries", attack.queries}};
}

// The same search with no to_json at all: what evaluate checks comes from its type (a pixel box
// through options(), gradient-free through a static member), so it is checked all the same.
struct SilentSearch {
  static constexpr bool gradient_free = true;
  struct Options {
    double clip_min() const { return 0.0; }
    double clip_max() const { return 1.0; }
  };
  Options options() const { return {}; }
  template <ardent::Model M>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const torch::Tensor& y) const {
    return RandomSearch{}.perturb(model, x, y);
  }
};

}  // namespace user

namespace {

// logits = W x + b on flat inputs [B, D].
struct LinearNetImpl : torch::nn::Module {
  LinearNetImpl(int64_t in, int64_t classes, uint64_t seed) {
    torch::manual_seed(seed);
    linear = register_module("linear", torch::nn::Linear(in, classes));
  }
  torch::Tensor forward(const torch::Tensor& x) { return linear->forward(x.flatten(1)); }
  torch::nn::Linear linear{nullptr};
};
TORCH_MODULE(LinearNet);

// Each one trips one sanity check: noise in eval mode, a final softmax, a quantised input (zero
// gradient everywhere and not robust).
struct NoisyNetImpl : LinearNetImpl {
  using LinearNetImpl::LinearNetImpl;
  torch::Tensor forward(const torch::Tensor& x) { return LinearNetImpl::forward(x) + 0.1 * torch::randn({1}); }
};
TORCH_MODULE(NoisyNet);
struct SoftmaxNetImpl : LinearNetImpl {
  using LinearNetImpl::LinearNetImpl;
  torch::Tensor forward(const torch::Tensor& x) { return torch::softmax(LinearNetImpl::forward(x), 1); }
};
TORCH_MODULE(SoftmaxNet);
struct StepNetImpl : LinearNetImpl {
  using LinearNetImpl::LinearNetImpl;
  torch::Tensor forward(const torch::Tensor& x) { return LinearNetImpl::forward(torch::round(x * 4) / 4); }
};
TORCH_MODULE(StepNet);

// Inputs in [0.3, 0.7]^D labelled with the model's own prediction (every point correct).
template <typename Net>
std::pair<torch::Tensor, torch::Tensor> own_labels(Net& model, int64_t n, int64_t d) {
  torch::manual_seed(1);
  const auto x = 0.3 + 0.4 * torch::rand({n, d});
  torch::NoGradGuard no_grad;
  return {x, model->forward(x).argmax(1)};
}

bool has_warning(const EvalReport& report, const std::string& check) {
  return std::any_of(report.warnings.begin(), report.warnings.end(),
                     [&](const eval::EvalWarning& w) { return w.check == check; });
}

}  // namespace

TEST_CASE("each attack describes itself next to its header; eval has no list of attack types", "[eval]") {
  CHECK(nlohmann::json(attacks::PGD(attacks::PGDOptions(0.1).steps(3)))["steps"] == 3);
  CHECK(eval::describe(attacks::FGSM(attacks::FGSMOptions(0.2)))["attack"] == "FGSM");
  CHECK(eval::describe(attacks::cw_linf(0.1, 4, 2.0))["kappa"] == 2.0);
  CHECK(eval::describe(attacks::APGD(attacks::APGDOptions(0.1).eot_samples(3)))["eot_samples"] == 3);
  CHECK(eval::describe(user::Brighten{0.2})["attack"] == "Brighten");
  CHECK(eval::describe(CountingAttack{}) == nlohmann::json::object());  // no to_json: no settings
}

TEST_CASE("a user's attack works in evaluate, in a Preset and a NamedAttack, on both model kinds", "[eval]") {
  auto ref = ardent_test::load_reference();
  const auto x = ref.x.slice(0, 0, 16);
  const auto y = ref.y.slice(0, 0, 16);
  auto net = ardent_test::small_cnn_copy(ref.model);
  net->train();  // evaluate runs it in eval mode and restores every flag
  std::vector<eval::Preset> suite{{"brighten", user::Brighten{0.3}}, eval::pgd(0.05, 2)};
  const auto from_script = evaluate(ref.model, x, y, suite, eval::EvalOptions().individual(false));
  const auto from_module = evaluate(net, x, y, suite, eval::EvalOptions().individual(false));
  CHECK(net->is_training());
  for (const auto& m : net->modules()) CHECK(m->is_training());
  CHECK(from_script.attacks[0].settings["attack"] == "Brighten");
  CHECK(from_module.attacks[0].settings["epsilon"] == 0.3);
  CHECK(from_script.clean_accuracy == from_module.clean_accuracy);
  CHECK(from_script.attacks[0].worst_case_accuracy == from_module.attacks[0].worst_case_accuracy);
  // Brighten is deterministic: its accuracy is that of the model on the brightened inputs.
  CHECK(from_script.attacks[0].worst_case_accuracy ==
        Approx(ardent::forward(ref.model, x)
                   .argmax(1)
                   .eq(y)
                   .logical_and(ardent::forward(ref.model, (x + 0.3).clamp(0, 1)).argmax(1).eq(y))
                   .to(torch::kDouble)
                   .mean()
                   .item<double>()));
  // An attack that only knows one model type goes in a NamedAttack of that type.
  const auto counted = evaluate(net, x, y, {eval::NamedAttack<models::SmallCNN>("brighten", user::Brighten{0.3})});
  CHECK(counted.attacks[0].worst_case_accuracy == from_module.attacks[0].worst_case_accuracy);
}

TEST_CASE("evaluate takes a braced list of presets", "[eval]") {
  auto ref = ardent_test::load_reference();
  const auto x = ref.x.slice(0, 0, 8);
  const auto y = ref.y.slice(0, 0, 8);
  const auto report = evaluate(ref.model, x, y, {eval::pgd(0.1, 2)});
  REQUIRE(report.attacks.size() == 1);
  CHECK(report.attacks[0].settings["steps"] == 2);
  const auto two = evaluate(ref.model, x, y, {eval::pgd(0.1, 2), eval::apgd_ce(0.1, 2)},
                            eval::EvalOptions().batch_size(4));
  CHECK(two.attacks.size() == 2);
  CHECK(two.worst_case_accuracy <= *two.attacks[0].robust_accuracy);
}

TEST_CASE("evaluate checks x and y once, at the call, naming ardent::evaluate", "[eval][errors]") {
  auto ref = ardent_test::load_reference();
  const auto x = ref.x.slice(0, 0, 8);
  const auto y = ref.y.slice(0, 0, 8);
  const std::vector<eval::Preset> suite{eval::pgd(0.1, 1)};
  const auto fails = [&](const torch::Tensor& xs, const torch::Tensor& ys, const std::string& argument,
                         const std::string& what) {
    CHECK_THROWS_WITH(evaluate(ref.model, xs, ys, suite),
                      ContainsSubstring("ardent::evaluate") && ContainsSubstring(argument) && ContainsSubstring(what));
  };
  fails(x, y + 10, "'y'", "expected class indices in [0, 10)");
  fails(x, y - 1 - y, "'y'", "[0, 10)");
  fails(x, y.to(torch::kInt), "'y'", "int64");
  fails(x, y.slice(0, 0, 7), "'y'", "one label per sample");
  fails(x * 2, y, "'x'", "pixel box [0, 1]");
  fails(x.to(torch::kDouble), y, "'x'", "dtype Double, expected the model's parameter dtype Float");
  fails(x.slice(2, 0, 14), y, "'x'", "cannot run on it");
  auto nan = x.clone();
  nan[0][0][0][0] = std::numeric_limits<float>::quiet_NaN();
  fails(nan, y, "'x'", "NaN");
  CHECK_THROWS_WITH(evaluate(ref.model, x, y, suite, eval::EvalOptions().progress_seconds(-1)),
                    ContainsSubstring("'progress_seconds'"));
  // A data loader's batches are checked as they come, with the same messages.
  auto loader = torch::data::make_data_loader<torch::data::samplers::SequentialSampler>(
      PairDataset(x, y + 10), torch::data::DataLoaderOptions().batch_size(4));
  CHECK_THROWS_WITH(evaluate(ref.model, *loader, suite),
                    ContainsSubstring("ardent::evaluate") && ContainsSubstring("[0, 10)"));
}

TEST_CASE("progress reports come with an estimate of the time left", "[eval]") {
  auto ref = ardent_test::load_reference();
  std::vector<eval::EvalProgress> seen;
  evaluate(ref.model, ref.x.slice(0, 0, 16), ref.y.slice(0, 0, 16), {eval::pgd(0.1, 1), eval::pgd(0.1, 1)},
           eval::EvalOptions().batch_size(4).progress_seconds(1e-9).on_progress(
               [&](const eval::EvalProgress& p) { seen.push_back(p); }));
  // After each attack but the last of each batch, and after each batch.
  REQUIRE(seen.size() == 8);
  CHECK_THAT(seen[0].attack, ContainsSubstring("PGD-1"));
  CHECK(seen[1].attack.empty());
  CHECK(seen[1].samples == 4);
  CHECK(seen.back().samples == 16);
  CHECK(seen.back().eta_seconds == Approx(0.0).margin(1e-9));
  for (const auto& p : seen) CHECK(p.eta_seconds >= 0);
}

TEST_CASE("each sanity check warns on a model built to trip it, and not on a normal one", "[eval][warnings]") {
  constexpr int64_t d = 32;
  const std::vector<eval::Preset> suite{eval::apgd_ce(0.05, 5)};
  LinearNet normal(d, 10, 3);
  const auto [x, y] = own_labels(normal, 64, d);
  const auto clean = evaluate(normal, x, y, suite);
  CHECK(clean.warnings.empty());

  SECTION("randomised") {
    NoisyNet noisy(d, 10, 3);
    const auto report = evaluate(noisy, x, y, suite);
    CHECK(has_warning(report, "randomised"));
    CHECK_THAT(report.table(), ContainsSubstring("[randomised]") && ContainsSubstring("autoattack_rand"));
  }
  SECTION("probabilities") {
    SoftmaxNet softmax(d, 10, 3);
    const auto report = evaluate(softmax, x, y, suite);
    CHECK(has_warning(report, "probabilities"));
    CHECK_FALSE(has_warning(report, "randomised"));
  }
  SECTION("classes: fewer classes than targets + 1") {
    LinearNet five(d, 5, 3);
    const auto [x5, y5] = own_labels(five, 16, d);
    const auto report = evaluate(five, x5, y5, {eval::apgd_t(0.05, 2, Norm::Linf, 9)});
    REQUIRE(has_warning(report, "classes"));
    CHECK_THAT(report.warnings[0].message, ContainsSubstring("APGD-T") && ContainsSubstring("5 classes"));
    CHECK_FALSE(has_warning(evaluate(five, x5, y5, {eval::apgd_t(0.05, 2, Norm::Linf, 4)}), "classes"));
  }
  SECTION("zero gradients, and gradient masking found by a gradient-free attack") {
    StepNet step(d, 10, 3);
    const auto [xs, ys] = own_labels(step, 64, d);
    const auto report = evaluate(step, xs, ys, {eval::apgd_ce(0.3, 10), {"random search", user::RandomSearch{}}});
    CHECK(has_warning(report, "zero_gradients"));
    CHECK(has_warning(report, "gradient_masking"));
    CHECK(report.attacks[1].worst_case_accuracy < report.attacks[0].worst_case_accuracy - 0.1);
    const auto json = report.to_json();
    CHECK(json["warnings"].size() == report.warnings.size());
    // The normal model under the same two attacks: APGD leaves nothing for the random search.
    const auto fine = evaluate(normal, x, y, {eval::apgd_ce(0.3, 10), {"random search", user::RandomSearch{}}});
    CHECK(fine.warnings.empty());
  }
}

TEST_CASE("what evaluate checks comes from the attacks' types, not their reports", "[eval]") {
  const auto standard = eval::autoattack(8.0 / 255);
  REQUIRE(standard.size() == 4);
  CHECK(standard[0].attack.capabilities().target_classes == 0);  // APGD-CE
  CHECK(standard[1].attack.capabilities().target_classes == 9);  // APGD-T
  CHECK(standard[1].attack.capabilities().classes_needed == 4);
  CHECK(standard[2].attack.capabilities().target_classes == 9);  // FAB-T
  CHECK(standard[3].attack.capabilities().gradient_free);        // Square
  CHECK_FALSE(standard[0].attack.capabilities().gradient_free);
  REQUIRE(standard[0].attack.capabilities().pixel_box);
  CHECK(*standard[0].attack.capabilities().pixel_box == std::pair(0.0, 1.0));
  const auto pgd = capabilities_of(attacks::PGD(attacks::PGDOptions(0.1).clip_min(-1.0)));
  REQUIRE(pgd.pixel_box);
  CHECK(pgd.pixel_box->first == -1.0);
  CHECK_FALSE(capabilities_of(user::Brighten{}).pixel_box);  // a box in its JSON only is no box

  AttackCapabilities dlr;
  dlr.classes_needed = 3;
  const auto warning = eval::checks::classes(2, {{"APGD-DLR", dlr}});
  REQUIRE(warning);
  CHECK_THAT(warning->message, ContainsSubstring("'APGD-DLR' needs at least 3 classes"));
}

TEST_CASE("a user's attack without to_json is still checked: its pixel box and gradient masking", "[eval][warnings]") {
  STATIC_REQUIRE(!std::is_constructible_v<nlohmann::json, const user::SilentSearch&>);
  STATIC_REQUIRE(GradientFreeAttack<user::SilentSearch>);
  constexpr int64_t d = 32;
  StepNet step(d, 10, 3);
  const auto [xs, ys] = own_labels(step, 64, d);
  const auto report = evaluate(step, xs, ys, {eval::apgd_ce(0.3, 10), {"silent search", user::SilentSearch{}}});
  CHECK(report.attacks[1].settings.empty());
  CHECK(has_warning(report, "gradient_masking"));
  const std::vector<eval::NamedAttack<StepNet>> alone{{"silent search", user::SilentSearch{}}};
  CHECK_THROWS_WITH(evaluate(step, xs * 3, ys, alone), ContainsSubstring("'x'") && ContainsSubstring("silent search") &&
                                                           ContainsSubstring("pixel box [0, 1]"));
}

TEST_CASE("APGD with expectation over transformation averages the gradient over passes", "[eval][apgd]") {
  auto ref = ardent_test::load_reference();
  const auto x = ref.x.slice(0, 0, 8);
  const auto y = ref.y.slice(0, 0, 8);
  // On a deterministic model the mean of n equal gradients is the gradient: same result.
  torch::manual_seed(5);
  const auto one = attacks::APGD(attacks::APGDOptions(0.05).steps(5)).perturb(ref.model, x, y);
  torch::manual_seed(5);
  const auto three = attacks::APGD(attacks::APGDOptions(0.05).steps(5).eot_samples(3)).perturb(ref.model, x, y);
  CHECK(torch::allclose(one, three, 1e-5, 1e-6));
  CHECK_THROWS_WITH(attacks::APGD(attacks::APGDOptions(0.05).eot_samples(0)), ContainsSubstring("'eot_samples'"));
}

TEST_CASE("the RobustBench entry has the fields of RobustBench's model entries", "[eval][robustbench]") {
  auto ref = ardent_test::load_reference();
  const auto report = evaluate(ref.model, ref.x.slice(0, 0, 16), ref.y.slice(0, 0, 16), {eval::apgd_ce(8.0 / 255, 2)});
  const auto metadata = eval::RobustBenchMetadata()
                            .name("ARD student")
                            .link("https://arxiv.org/abs/1905.09747")
                            .authors("A, B")
                            .dataset("fashion-mnist")
                            .venue("ardent")
                            .architecture("SmallCNN-16");
  const auto path = std::filesystem::temp_directory_path() / "ardent_eval_test_robustbench.json";
  report.write_robustbench_json(path, metadata);
  std::ifstream in(path);
  const auto j = nlohmann::json::parse(in);
  std::filesystem::remove(path);
  for (const char* key : {"link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
                          "architecture", "eps", "clean_acc", "reported", "autoattack_acc", "footnote", "unreliable"}) {
    INFO(key);
    CHECK(j.contains(key));
  }
  CHECK(j["eps"] == "8/255");
  CHECK(j["clean_acc"] == fmt::format("{:.2f}", 100 * report.clean_accuracy));
  CHECK(j["autoattack_acc"] == fmt::format("{:.2f}", 100 * report.worst_case_accuracy));
  CHECK(j["architecture"] == "SmallCNN-16");
  CHECK(j["number_forward_passes"] == 1);
  CHECK(j["additional_data"] == false);
  // Not AutoAttack standard: the footnote says what it was.
  CHECK_THAT(j["footnote"].get<std::string>(), ContainsSubstring("not AutoAttack standard"));
  CHECK(report.robustbench_json(eval::RobustBenchMetadata(metadata).eps("0.1"))["eps"] == "0.1");
}

TEST_CASE("the AutoAttack versions hold the reference code's attacks in its order", "[eval]") {
  const auto standard = eval::autoattack(8.0 / 255);
  REQUIRE(standard.size() == 4);
  CHECK(standard[0].attack.settings()["loss"] == "CE");
  CHECK(standard[1].attack.settings()["loss"] == "TargetedDLR");
  CHECK(standard[1].attack.settings()["n_target_classes"] == 9);
  const auto* fab = standard[2].attack.target<attacks::FAB>();
  REQUIRE(fab != nullptr);
  CHECK(fab->options().targeted());
  CHECK(fab->options().target_classes() == 9);
  CHECK(fab->options().steps() == 100);
  const auto* square = standard[3].attack.target<attacks::Square>();
  REQUIRE(square != nullptr);
  CHECK(square->options().queries() == 5000);
  CHECK(square->options().p_init() == 0.8);
  CHECK_FALSE(square->options().rescale_schedule());
  CHECK(standard[3].attack.settings()["gradient_free"] == true);
  CHECK(eval::autoattack(0.5, Norm::L2)[2].attack.target<attacks::FAB>()->options().norm() == Norm::L2);

  const auto plus = eval::autoattack_plus(8.0 / 255);
  REQUIRE(plus.size() == 6);
  CHECK(plus[0].attack.settings()["restarts"] == 5);
  CHECK(plus[1].attack.settings()["loss"] == "DLR");
  CHECK_FALSE(plus[2].attack.target<attacks::FAB>()->options().targeted());
  CHECK(plus[2].attack.target<attacks::FAB>()->options().restarts() == 5);
  CHECK(plus[3].attack.target<attacks::Square>() != nullptr);
  CHECK(plus[4].attack.settings()["loss"] == "TargetedDLR");
  CHECK(plus[5].attack.target<attacks::FAB>()->options().targeted());

  const auto quick = eval::autoattack_quick(8.0 / 255);
  REQUIRE(quick.size() == 4);
  for (const auto& p : quick) CHECK_THAT(p.name, ContainsSubstring("quick"));
  CHECK(quick[1].attack.settings()["n_target_classes"] == 3);
  CHECK(quick[3].attack.target<attacks::Square>()->options().queries() < 5000);
  CHECK(eval::square(0.1, 300).attack.target<attacks::Square>()->options().queries() == 300);
  CHECK(eval::fab_t(0.1).attack.target<attacks::FAB>()->options().target_classes() == 9);
}

TEST_CASE("autoattack(eps): the worst case is at most each attack alone; masking is flagged", "[eval][autoattack]") {
  // Inputs as 1x4x8 images (Square needs [B, C, H, W]); the linear model flattens them.
  constexpr int64_t d = 32;
  const auto images = [](const torch::Tensor& flat) { return flat.reshape({-1, 1, 4, 8}); };

  SECTION("a normal (linear) model: no warning") {
    LinearNet normal(d, 10, 3);
    auto [x, y] = own_labels(normal, 24, d);
    const auto report = evaluate(normal, images(x), y, eval::autoattack(0.05));
    REQUIRE(report.attacks.size() == 4);
    CHECK_THAT(report.attacks[2].name, ContainsSubstring("FAB-T"));
    CHECK_THAT(report.attacks[3].name, ContainsSubstring("Square"));
    for (const auto& a : report.attacks) {
      INFO(a.name);
      CHECK(report.worst_case_accuracy <= *a.robust_accuracy);
      CHECK(*a.robust_accuracy <= report.clean_accuracy);
    }
    for (std::size_t k = 1; k < 4; ++k) {
      CHECK(report.attacks[k].worst_case_accuracy <= report.attacks[k - 1].worst_case_accuracy);
    }
    CHECK(report.is_autoattack_standard());
    CHECK(report.robustbench_json(eval::RobustBenchMetadata().eps("0.05"))["footnote"].is_null());
    CHECK(report.warnings.empty());
  }
  SECTION("a masked model (a step function of the input: zero gradient, not robust)") {
    StepNet step(d, 10, 3);
    auto [x, y] = own_labels(step, 24, d);
    const auto report = evaluate(step, images(x), y, eval::autoattack(0.3));
    CHECK(has_warning(report, "gradient_masking"));
    CHECK(has_warning(report, "zero_gradients"));
    CHECK(report.attacks[3].worst_case_accuracy < report.attacks[2].worst_case_accuracy);
    for (const auto& a : report.attacks) CHECK(report.worst_case_accuracy <= *a.robust_accuracy);
    CHECK_THAT(report.table(), ContainsSubstring("[gradient_masking]"));
  }
}
