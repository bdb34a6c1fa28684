// The attack contract (docs/design.md, "Guarantees every part keeps"), run over every built-in attack, the attacks
// against the reference vectors of an independent implementation (tests/data/attack_vectors), and the
// fast-training attacks (FGSM with a random start, N-FGSM, warm starts) against their formulas written out here.
#include "attack_contract.hpp"
#include "catch.hpp"
#include "helpers.hpp"

#include <ardent/ardent.hpp>

#include <tuple>

using namespace ardent;
using ardent_test::accuracy;

namespace {

// Each case builds an attack of one kind for a given epsilon and says which ball it respects.
struct FGSMCase {
  static attacks::FGSM make(double eps) { return attacks::FGSM(eps); }
  static constexpr Norm norm = Norm::Linf;
  static constexpr bool bounded = true;
  static constexpr bool objectives = true;
  static constexpr bool moves = true;
};
struct FGSMRandomStartCase {
  static attacks::FGSM make(double eps) {
    return attacks::FGSM(attacks::FGSMOptions(eps).random_start(true).step_size(1.25 * eps));
  }
  static constexpr Norm norm = Norm::Linf;
  static constexpr bool bounded = true;
  static constexpr bool objectives = true;
  static constexpr bool moves = true;
};
// Unprojected N-FGSM reaches 3 eps by design; its bound is checked by its own test below.
struct NFGSMProjectedCase {
  static attacks::NFGSM make(double eps) { return attacks::NFGSM(attacks::NFGSMOptions(eps).project(true)); }
  static constexpr Norm norm = Norm::Linf;
  static constexpr bool bounded = true;
  static constexpr bool objectives = true;
  static constexpr bool moves = true;
};
struct PGDLinfCase {
  static attacks::PGD make(double eps) { return attacks::PGD(attacks::PGDOptions(eps).step_size(0.05).steps(5)); }
  static constexpr Norm norm = Norm::Linf;
  static constexpr bool bounded = true;
  static constexpr bool objectives = true;
  static constexpr bool moves = true;
};
struct PGDL2Case {
  static attacks::PGD make(double eps) {
    return attacks::PGD(attacks::PGDOptions(eps * 4).step_size(0.3).steps(5).norm(Norm::L2));
  }
  static constexpr Norm norm = Norm::L2;
  static constexpr bool bounded = true;
  static constexpr bool objectives = true;
  static constexpr bool moves = true;
};
struct PGDRestartsCase {
  static attacks::PGD make(double eps) {
    return attacks::PGD(attacks::PGDOptions(eps).step_size(0.05).steps(3).restarts(3));
  }
  static constexpr Norm norm = Norm::Linf;
  static constexpr bool bounded = true;
  static constexpr bool objectives = true;
  static constexpr bool moves = true;
};
struct BIMCase {
  static attacks::BIM make(double eps) { return attacks::BIM(attacks::BIMOptions(eps).step_size(0.05).steps(5)); }
  static constexpr Norm norm = Norm::Linf;
  static constexpr bool bounded = true;
  static constexpr bool objectives = true;
  static constexpr bool moves = true;
};
struct MIFGSMCase {
  static attacks::MIFGSM make(double eps) {
    return attacks::MIFGSM(attacks::MIFGSMOptions(eps).step_size(0.05).steps(5));
  }
  static constexpr Norm norm = Norm::Linf;
  static constexpr bool bounded = true;
  static constexpr bool objectives = true;
  static constexpr bool moves = true;
};
struct NoneCase {
  static attacks::None make(double /*eps*/) { return attacks::None(); }
  static constexpr Norm norm = Norm::Linf;
  static constexpr bool bounded = true;
  static constexpr bool objectives = true;
  static constexpr bool moves = false;
};
using AllAttacks = std::tuple<FGSMCase, FGSMRandomStartCase, NFGSMProjectedCase, PGDLinfCase, PGDL2Case,
                              PGDRestartsCase, BIMCase, MIFGSMCase, NoneCase>;

}  // namespace

TEMPLATE_LIST_TEST_CASE("every attack honours the attack contract", "[attacks][contract]", AllAttacks) {
  ardent_test::check_attack_contract<TestType>();
}

namespace {
// The reference's criterion: within 1e-5, except at most 0.1% of elements (a gradient within
// rounding of zero may legitimately flip one step).
void check_matches(const torch::Tensor& ours, const torch::Tensor& theirs) {
  const auto differs = (ours - theirs).abs().gt(1e-5);
  const double fraction = differs.to(torch::kDouble).mean().item<double>();
  INFO("fraction of elements differing by more than 1e-5: " << fraction);
  CHECK(fraction <= 0.001);
}
}  // namespace

TEST_CASE("attacks match the reference vectors, on TorchScript and on a ModuleHolder copy", "[attacks][reference]") {
  auto ref = ardent_test::load_reference();
  auto holder = ardent_test::small_cnn_copy(ref.model);
  {
    torch::NoGradGuard no_grad;
    REQUIRE(torch::allclose(ardent::forward(holder, ref.x), ardent::forward(ref.model, ref.x), 1e-5, 1e-5));
    CHECK(accuracy(ardent::forward(ref.model, ref.x), ref.y) == Approx(0.71875));
  }
  const attacks::FGSM fgsm(0.1);
  const attacks::PGD pgd(attacks::PGDOptions(0.1).step_size(0.01).steps(10).random_start(false));
  const attacks::BIM bim(attacks::BIMOptions(0.1).step_size(0.01).steps(10));

  SECTION("FGSM") {
    check_matches(fgsm.perturb(ref.model, ref.x, ref.y), ardent_test::reference_adversarial("fgsm"));
    check_matches(fgsm.perturb(holder, ref.x, ref.y), ardent_test::reference_adversarial("fgsm"));
  }
  SECTION("PGD") {
    check_matches(pgd.perturb(ref.model, ref.x, ref.y), ardent_test::reference_adversarial("pgd"));
    check_matches(pgd.perturb(holder, ref.x, ref.y), ardent_test::reference_adversarial("pgd"));
  }
  SECTION("BIM") {
    check_matches(bim.perturb(ref.model, ref.x, ref.y), ardent_test::reference_adversarial("bim"));
    check_matches(bim.perturb(holder, ref.x, ref.y), ardent_test::reference_adversarial("bim"));
  }
}

TEST_CASE("robust accuracy, targeted attacks and objectives behave", "[attacks]") {
  auto ref = ardent_test::load_reference();
  torch::NoGradGuard no_grad;
  const double clean = accuracy(ardent::forward(ref.model, ref.x), ref.y);

  SECTION("robust accuracy is at most the clean accuracy") {
    torch::manual_seed(0);
    const attacks::PGD pgd(attacks::PGDOptions(0.1).step_size(0.01).steps(10));
    const attacks::MIFGSM mifgsm(attacks::MIFGSMOptions(0.1).step_size(0.01).steps(10));
    const attacks::PGD pgd_l2(attacks::PGDOptions(2.0).step_size(0.25).steps(10).norm(Norm::L2));
    for (const auto& x_adv : {pgd.perturb(ref.model, ref.x, ref.y), mifgsm.perturb(ref.model, ref.x, ref.y),
                              pgd_l2.perturb(ref.model, ref.x, ref.y)}) {
      const double robust = accuracy(ardent::forward(ref.model, x_adv), ref.y);
      CHECK(robust <= clean);
      CHECK(robust < clean - 0.2);  // an attack of this size breaks a naturally trained model
    }
  }
  SECTION("targeted PGD reaches its targets far more often than chance") {
    const auto targets = (ref.y + 1).remainder(10);
    const attacks::PGD pgd(attacks::PGDOptions(0.2).step_size(0.02).steps(20));
    torch::manual_seed(0);
    const auto x_adv = pgd.perturb(ref.model, ref.x, Targeted{targets});
    const double hit = accuracy(ardent::forward(ref.model, x_adv), targets);
    INFO("target hit rate " << hit);
    CHECK(hit > 0.5);  // chance is 0.1
  }
  SECTION("the objective overload with CrossEntropy{y} equals the labels overload") {
    const attacks::PGD pgd(attacks::PGDOptions(0.1).step_size(0.01).steps(5).random_start(false));
    CHECK(torch::equal(pgd.perturb(ref.model, ref.x, ref.y),
                       pgd.perturb(ref.model, ref.x, objectives::CrossEntropy{ref.y})));
  }
  SECTION("restarts never lower any sample's loss below a single run's") {
    const objectives::CrossEntropy ce{ref.y};
    auto options = attacks::PGDOptions(0.05).step_size(0.01).steps(3);
    torch::manual_seed(3);
    const auto single = attacks::PGD(options).perturb(ref.model, ref.x, ref.y);
    torch::manual_seed(3);  // the first restart draws the same start as the single run
    const auto several = attacks::PGD(options.restarts(4)).perturb(ref.model, ref.x, ref.y);
    const auto gain = ce(ardent::forward(ref.model, several)) - ce(ardent::forward(ref.model, single));
    CHECK(gain.min().item<double>() >= -1e-6);
    CHECK(gain.max().item<double>() > 0.0);
  }
}

TEST_CASE("BIM with steps(0) takes Kurakin's number of steps", "[attacks]") {
  CHECK(attacks::BIM(attacks::BIMOptions(8.0 / 255)).steps() == 10);   // min(8 + 4, 1.25 * 8)
  CHECK(attacks::BIM(attacks::BIMOptions(16.0 / 255)).steps() == 20);  // min(16 + 4, 20)
  CHECK(attacks::BIM(attacks::BIMOptions(0.1)).steps() == 29);         // min(25.5 + 4, 31.875)
  CHECK(attacks::BIM(attacks::BIMOptions(0.1).steps(7)).steps() == 7);
}

namespace {
// A user-written attack: random signs of size epsilon, clamped to [0, 1].
struct RandomSignAttack {
  double epsilon = 0.1;
  template <Model M>
  torch::Tensor perturb(M& /*model*/, const torch::Tensor& x, const torch::Tensor& /*labels*/) const {
    return (x + epsilon * torch::randint_like(x, 2).mul(2).sub(1)).clamp(0, 1);
  }
};
struct NotAnAttack {
  torch::Tensor run(const torch::Tensor& x) const { return x; }
};
}  // namespace

TEST_CASE("the Attack concept accepts user attacks and rejects types without perturb", "[attacks][concept]") {
  STATIC_REQUIRE(Attack<RandomSignAttack>);
  STATIC_REQUIRE(Attack<RandomSignAttack, models::SmallCNN>);
  STATIC_REQUIRE_FALSE(Attack<NotAnAttack>);
  STATIC_REQUIRE_FALSE(TargetedAttack<RandomSignAttack>);
  STATIC_REQUIRE(Attack<attacks::PGD, models::SmallCNN>);
  STATIC_REQUIRE(Attack<attacks::PGD, std::shared_ptr<models::SmallCNNImpl>>);
}

TEST_CASE("attacks reject bad input with a message naming the argument", "[attacks][errors]") {
  torch::manual_seed(0);
  ardent_test::MixedNet model;
  const auto x = torch::rand({4, 1, 8, 8});
  const auto y = torch::randint(5, {4}, torch::kLong);
  const attacks::PGD pgd(attacks::PGDOptions(0.1));

  SECTION("bad options") {
    CHECK_THROWS_WITH(attacks::PGD(attacks::PGDOptions(-0.1)), ContainsSubstring("'epsilon'"));
    CHECK_THROWS_WITH(attacks::PGD(attacks::PGDOptions(0.1).step_size(-1)), ContainsSubstring("'step_size'"));
    CHECK_THROWS_WITH(attacks::PGD(attacks::PGDOptions(0.1).steps(-1)), ContainsSubstring("'steps'"));
    CHECK_THROWS_WITH(attacks::PGD(attacks::PGDOptions(0.1).restarts(0)), ContainsSubstring("'restarts'"));
    CHECK_THROWS_WITH(attacks::PGD(attacks::PGDOptions(0.1).random_start(false).restarts(2)),
                      ContainsSubstring("'restarts'") && ContainsSubstring("random_start"));
    CHECK_THROWS_WITH(attacks::PGD(attacks::PGDOptions(0.1).clip_min(1).clip_max(0)),
                      ContainsSubstring("'clip_min/clip_max'"));
    CHECK_THROWS_WITH(attacks::FGSM(attacks::FGSMOptions(std::nan(""))), ContainsSubstring("'epsilon'"));
    CHECK_THROWS_WITH(attacks::BIM(attacks::BIMOptions(-1)), ContainsSubstring("'epsilon'"));
    CHECK_THROWS_WITH(attacks::MIFGSM(attacks::MIFGSMOptions(0.1).decay(-1)), ContainsSubstring("'decay'"));
    CHECK_THROWS_WITH(attacks::MIFGSM(attacks::MIFGSMOptions(0.1).step_size(-1)), ContainsSubstring("'step_size'"));
  }
  SECTION("a Linf budget wider than the pixel box (8 for 8/255) is refused, naming the likely intent") {
    CHECK_THROWS_WITH(attacks::PGD(attacks::PGDOptions(8)),
                      ContainsSubstring("'epsilon'") && ContainsSubstring("[0, 1]") && ContainsSubstring("8/255"));
    CHECK_THROWS_WITH(attacks::FGSM(attacks::FGSMOptions(8)), ContainsSubstring("8/255"));
    CHECK_THROWS_WITH(attacks::APGD(attacks::APGDOptions(2)), ContainsSubstring("2/255"));
    CHECK_NOTHROW(attacks::PGD(attacks::PGDOptions(8).clip_max(255)));   // a box in pixel levels
    CHECK_NOTHROW(attacks::PGD(attacks::PGDOptions(2).norm(Norm::L2)));  // an L2 radius may exceed 1
    CHECK_NOTHROW(attacks::PGD(attacks::PGDOptions(1)));                 // the whole box, as asked
  }
  SECTION("bad labels") {
    CHECK_THROWS_WITH(pgd.perturb(model, x, y.to(torch::kFloat)),
                      ContainsSubstring("'labels'") && ContainsSubstring("int64"));
    CHECK_THROWS_WITH(pgd.perturb(model, x, y.slice(0, 0, 3)), ContainsSubstring("'labels'"));
    CHECK_THROWS_WITH(pgd.perturb(model, x, y.unsqueeze(1)), ContainsSubstring("'labels'"));
    CHECK_THROWS_WITH(pgd.perturb(model, x, torch::full({4}, 5, torch::kLong)),
                      ContainsSubstring("'labels'") && ContainsSubstring("[0, 5)"));
    CHECK_THROWS_WITH(pgd.perturb(model, x, torch::full({4}, -1, torch::kLong)), ContainsSubstring("'labels'"));
    CHECK_THROWS_WITH(pgd.perturb(model, x, Targeted{torch::full({4}, 7, torch::kLong)}),
                      ContainsSubstring("'targets'"));
  }
  SECTION("bad inputs") {
    CHECK_THROWS_WITH(pgd.perturb(model, (x * 255).to(torch::kUInt8), y),
                      ContainsSubstring("'x'") && ContainsSubstring("floating-point"));
    auto with_nan = x.clone();
    with_nan[0][0][0][0] = std::nan("");
    CHECK_THROWS_WITH(pgd.perturb(model, with_nan, y), ContainsSubstring("'x'") && ContainsSubstring("NaN"));
    auto with_inf = x.clone();
    with_inf[1][0][2][2] = INFINITY;
    CHECK_THROWS_WITH(pgd.perturb(model, with_inf, y), ContainsSubstring("'x'") && ContainsSubstring("Inf"));
    CHECK_THROWS_WITH(pgd.perturb(model, x + 1.5, y), ContainsSubstring("'x'") && ContainsSubstring("pixel box"));
    CHECK_THROWS_WITH(pgd.perturb(model, x.to(torch::kMeta), y),
                      ContainsSubstring("'x'") && ContainsSubstring("device"));
    CHECK_THROWS_WITH(attacks::FGSM(0.1).perturb(model, x - 0.5, y), ContainsSubstring("'x'"));
    CHECK_THROWS_WITH(attacks::None().perturb(model, x + 2, y), ContainsSubstring("'x'"));
  }
}

namespace {
// Counts the checked and the unchecked evaluations of cross-entropy.
struct CountingObjective {
  torch::Tensor labels;
  std::shared_ptr<int> checked = std::make_shared<int>(0);
  std::shared_ptr<int> unchecked_calls = std::make_shared<int>(0);
  torch::Tensor operator()(const torch::Tensor& logits) const {
    ++*checked;
    return objectives::CrossEntropy{labels}(logits);
  }
  torch::Tensor unchecked(const torch::Tensor& logits) const {
    ++*unchecked_calls;
    return objectives::CrossEntropy{labels}.unchecked(logits);
  }
};
}  // namespace

TEST_CASE("arguments are checked once per call; the steps run unchecked", "[attacks][errors]") {
  torch::manual_seed(0);
  ardent_test::MixedNet model;
  const auto x = torch::rand({4, 1, 8, 8});
  const auto y = torch::randint(5, {4}, torch::kLong);
  SECTION("PGD") {
    CountingObjective objective{y};
    attacks::PGD(attacks::PGDOptions(0.1).step_size(0.02).steps(5)).perturb(model, x, objective);
    CHECK(*objective.checked == 1);
    CHECK(*objective.unchecked_calls == 4);
  }
  SECTION("APGD") {
    CountingObjective objective{y};
    attacks::APGD(attacks::APGDOptions(0.1).steps(5)).perturb(model, x, objective);
    CHECK(*objective.checked == 1);
    CHECK(*objective.unchecked_calls == 5);
  }
  SECTION("the first step's check still catches labels out of range") {
    CHECK_THROWS_WITH(attacks::PGD(attacks::PGDOptions(0.1)).perturb(model, x, torch::full({4}, 9, torch::kLong)),
                      ContainsSubstring("'labels'") && ContainsSubstring("[0, 5)"));
  }
}

TEST_CASE("the attack kit is public and gives a user's attack the built-ins' guarantees", "[attacks][kit]") {
  torch::manual_seed(0);
  ardent_test::MixedNet model;
  model->train();
  const auto x = torch::rand({4, 1, 8, 8});
  const auto y = torch::randint(5, {4}, torch::kLong);
  // A two-step PGD written with the kit, called under InferenceMode with inference-mode labels.
  const auto user_pgd = [&model](const torch::Tensor& input, const torch::Tensor& labels) {
    attacks::check_call("UserPGD", model, input, labels, 0.0, 1.0);
    const attacks::AttackScope scope(model);
    CHECK_FALSE(model->is_training());
    const auto objective = attacks::to_objective(labels);
    const auto clean = attacks::attack_copy(input);
    auto x_adv = attacks::random_start(Norm::Linf, clean, 0.1, 0.0, 1.0);
    for (int k = 0; k < 2; ++k) {
      const auto g = attacks::loss_and_gradient(model, x_adv, objective, k == 0).gradient;
      x_adv = attacks::project(Norm::Linf, x_adv + 0.05 * g.sign(), clean, 0.1, 0.0, 1.0);
    }
    return x_adv.detach();
  };
  torch::Tensor x_adv;
  {
    c10::InferenceMode inference;
    x_adv = user_pgd(x.clone(), y.clone());
  }
  CHECK(model->is_training());  // the mode is restored
  for (const auto& p : model->parameters()) {
    CHECK(p.requires_grad());
    CHECK_FALSE(p.grad().defined());
  }
  CHECK((x_adv - x).abs().max().item<double>() <= 0.1 + 1e-6);
  CHECK_THROWS_WITH(user_pgd(x + 2, y), ContainsSubstring("UserPGD") && ContainsSubstring("'x'"));
}

namespace {

// A fixed model whose input gradient is easy to write independently: logits = W flatten(x) + b.
struct LinearNetImpl : torch::nn::Module {
  LinearNetImpl() { head = register_module("head", torch::nn::Linear(16, 3)); }
  torch::Tensor forward(const torch::Tensor& x) { return head->forward(x.flatten(1)); }
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(LinearNet);

/// The input gradient of the summed cross-entropy at x, by plain autograd.
torch::Tensor ce_gradient(LinearNet& model, const torch::Tensor& x, const torch::Tensor& y) {
  auto input = x.detach().clone().requires_grad_(true);
  const auto loss = torch::nn::functional::cross_entropy(
      model->forward(input), y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  return torch::autograd::grad({loss}, {input})[0];
}

struct Fixture {
  LinearNet model;
  torch::Tensor x;
  torch::Tensor y;
  Fixture() {
    torch::manual_seed(3);
    model = LinearNet();
    x = torch::rand({8, 1, 4, 4});
    y = torch::randint(3, {8}, torch::kLong);
  }
};

}  // namespace

TEST_CASE("FGSM with a random start is one clipped sign step from a uniform point of the ball", "[attacks][fast]") {
  Fixture f;
  const double eps = 0.1;
  const double a = 1.25 * eps;
  torch::manual_seed(7);
  const auto x_adv =
      attacks::FGSM(attacks::FGSMOptions(eps).random_start(true).step_size(a)).perturb(f.model, f.x, f.y);

  torch::manual_seed(7);
  const auto x0 = (f.x + torch::empty_like(f.x).uniform_(-eps, eps)).clamp(0, 1);
  const auto stepped = x0 + a * ce_gradient(f.model, x0, f.y).sign();
  const auto expected = torch::max(torch::min(stepped, f.x + eps), f.x - eps).clamp(0, 1);
  CHECK(torch::allclose(x_adv, expected, 0, 1e-6));
  CHECK((x_adv - f.x).abs().max().item<double>() <= eps + 1e-6);

  SECTION("the defaults are Goodfellow's FGSM: x + eps sign(grad L(x))") {
    const auto fgsm = attacks::FGSM(eps).perturb(f.model, f.x, f.y);
    CHECK(torch::allclose(fgsm, (f.x + eps * ce_gradient(f.model, f.x, f.y).sign()).clamp(0, 1), 0, 1e-6));
  }
}

TEST_CASE("N-FGSM steps from strongly noised points without projecting back to the ball", "[attacks][fast]") {
  Fixture f;
  const double eps = 0.1;
  torch::manual_seed(11);
  const attacks::NFGSM nfgsm(attacks::NFGSMOptions(eps).noise(2 * eps).step_size(eps).project(false));
  const auto x_adv = nfgsm.perturb(f.model, f.x, f.y);

  torch::manual_seed(11);
  const auto x0 = (f.x + torch::empty_like(f.x).uniform_(-2 * eps, 2 * eps)).clamp(0, 1);
  const auto expected = (x0 + eps * ce_gradient(f.model, x0, f.y).sign()).clamp(0, 1);
  CHECK(torch::allclose(x_adv, expected, 0, 1e-6));
  const double distance = (x_adv - f.x).abs().max().item<double>();
  CHECK(distance > eps);  // not projected
  CHECK(distance <= nfgsm.radius() + 1e-6);
  CHECK(nfgsm.radius() == Approx(3 * eps));

  SECTION("project(true) clips the perturbation to the eps ball") {
    torch::manual_seed(11);
    const auto projected = attacks::NFGSM(attacks::NFGSMOptions(eps).project(true)).perturb(f.model, f.x, f.y);
    CHECK(torch::allclose(projected, torch::max(torch::min(expected, f.x + eps), f.x - eps), 0, 1e-6));
  }
  SECTION("bad options are refused, naming them") {
    CHECK_THROWS_WITH(attacks::NFGSM(attacks::NFGSMOptions(eps).noise(-1)), ContainsSubstring("'noise'"));
    CHECK_THROWS_WITH(attacks::FGSM(attacks::FGSMOptions(eps).step_size(-1)), ContainsSubstring("'step_size'"));
  }
}

TEST_CASE("a warm-started attack starts each example from its stored perturbation", "[attacks][fast][warm]") {
  Fixture f;
  const double eps = 0.1;
  attacks::PerturbationMemory memory(attacks::PerturbationMemoryOptions(20, {1, 4, 4}));
  const auto indices = torch::tensor({3, 1, 4, 15, 9, 2, 6, 5}, torch::kLong);
  // Two PGD steps of 0.05: the first call starts at random points of the ball.
  const attacks::WarmStart warm(attacks::PGD(attacks::PGDOptions(eps).step_size(0.05).steps(2)), memory);
  warm.for_examples(indices);
  const auto first = warm.perturb(f.model, f.x, f.y);
  CHECK(memory->stored_count() == 8);
  CHECK(torch::equal(memory->named_buffers()["perturbations"].index_select(0, indices), first - f.x));
  CHECK((first - f.x).abs().max().item<double>() <= eps + 1e-6);

  SECTION("the stored perturbation is the next start: with step size 0 the attack returns it") {
    const attacks::WarmStart still(attacks::PGD(attacks::PGDOptions(eps).step_size(0).steps(1)), memory);
    still.for_examples(indices);
    CHECK(torch::allclose(still.perturb(f.model, f.x, f.y), first, 0, 1e-7));
    // A cold run of the same attack starts elsewhere (random start).
    CHECK_FALSE(torch::allclose(attacks::PGD(attacks::PGDOptions(eps).step_size(0).steps(1)).perturb(f.model, f.x, f.y),
                                first, 0, 1e-7));
  }
  SECTION("a perturbation stored for other inputs never leaves the ball around these") {
    warm.for_examples(indices);
    const auto shifted = (f.x + 0.3).clamp(0, 1);
    const auto second = warm.perturb(f.model, shifted, f.y);
    CHECK((second - shifted).abs().max().item<double>() <= eps + 1e-6);
  }
  SECTION("without indices, or with indices outside the memory, it refuses") {
    CHECK_THROWS_WITH(warm.perturb(f.model, f.x, f.y), ContainsSubstring("without the batch's example indices"));
    warm.for_examples(torch::full({8}, 20, torch::kLong));
    CHECK_THROWS_WITH(warm.perturb(f.model, f.x, f.y), ContainsSubstring("'indices'"));
  }
  SECTION("the memory round-trips through a checkpoint bit for bit, in half precision too") {
    const auto path = std::filesystem::temp_directory_path() / "ardent_fast_memory.pt";
    for (const bool half : {false, true}) {
      attacks::PerturbationMemory stored(attacks::PerturbationMemoryOptions(20, {1, 4, 4}).half(half));
      stored->remember(indices, f.x, first);
      train::Checkpoint out{1, {{"perturbations", stored.ptr()}}, nullptr, {}, {}};
      train::save_checkpoint(out, path);
      attacks::PerturbationMemory loaded(attacks::PerturbationMemoryOptions(20, {1, 4, 4}).half(half));
      train::Checkpoint in{0, {{"perturbations", loaded.ptr()}}, nullptr, {}, {}};
      CHECK(train::load_checkpoint(in, path) == 1);
      for (const auto& name : {"perturbations", "stored"}) {
        CHECK(torch::equal(stored->named_buffers()[name], loaded->named_buffers()[name]));
      }
    }
    std::filesystem::remove(path);
    std::filesystem::remove(train::previous_checkpoint_path(path));
  }
}
