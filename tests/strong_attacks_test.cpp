// The attack contract (docs/design.md, "Guarantees every part keeps") over CW, CW-Linf and APGD, and their behaviour on
// the reference model of tests/data/attack_vectors.
#include "attack_contract.hpp"
#include "catch.hpp"
#include "helpers.hpp"

#include <ardent/attacks/apgd.hpp>
#include <ardent/attacks/cw.hpp>
#include <ardent/attacks/cw_linf.hpp>
#include <ardent/objectives/targeted_dlr.hpp>

#include <tuple>

using namespace ardent;
using ardent_test::accuracy;

namespace {

// `bounded`: the result lies in the epsilon ball of `norm` (CW is not bounded by any ball).
// `objectives`: the attack accepts an arbitrary objective.
struct CWCase {
  static attacks::CW make(double /*eps*/) { return attacks::CW(attacks::CWOptions().c(10).steps(20).lr(0.1)); }
  static constexpr bool bounded = false;
  static constexpr bool objectives = false;
  static constexpr bool moves = true;
  static constexpr Norm norm = Norm::L2;
};
struct CWSearchCase {
  static attacks::CW make(double /*eps*/) {
    return attacks::CW(attacks::CWOptions().steps(10).lr(0.1).binary_search_steps(3).kappa(0.1));
  }
  static constexpr bool bounded = false;
  static constexpr bool objectives = false;
  static constexpr bool moves = true;
  static constexpr Norm norm = Norm::L2;
};
struct CWLinfCase {
  static attacks::CWLinf make(double eps) { return attacks::cw_linf(eps, 5); }
  static constexpr bool bounded = true;
  static constexpr bool objectives = false;
  static constexpr bool moves = true;
  static constexpr Norm norm = Norm::Linf;
};
struct APGDCECase {
  static attacks::APGD make(double eps) { return attacks::APGD(attacks::APGDOptions(eps).steps(8)); }
  static constexpr bool bounded = true;
  static constexpr bool objectives = true;
  static constexpr bool moves = true;
  static constexpr Norm norm = Norm::Linf;
};
struct APGDDLRCase {
  static attacks::APGD make(double eps) {
    return attacks::APGD(attacks::APGDOptions(eps).steps(8).loss(attacks::APGDLoss::DLR).restarts(2));
  }
  static constexpr bool bounded = true;
  static constexpr bool objectives = true;
  static constexpr bool moves = true;
  static constexpr Norm norm = Norm::Linf;
};
struct APGDTCase {
  static attacks::APGD make(double eps) {
    return attacks::APGD(attacks::APGDOptions(eps).steps(8).loss(attacks::APGDLoss::TargetedDLR).n_target_classes(3));
  }
  static constexpr bool bounded = true;
  static constexpr bool objectives = true;
  static constexpr bool moves = true;
  static constexpr Norm norm = Norm::Linf;
};
struct APGDL2Case {
  static attacks::APGD make(double eps) { return attacks::APGD(attacks::APGDOptions(eps * 4).steps(8).norm(Norm::L2)); }
  static constexpr bool bounded = true;
  static constexpr bool objectives = true;
  static constexpr bool moves = true;
  static constexpr Norm norm = Norm::L2;
};
using StrongAttacks = std::tuple<CWCase, CWSearchCase, CWLinfCase, APGDCECase, APGDDLRCase, APGDTCase, APGDL2Case>;

}  // namespace

TEMPLATE_LIST_TEST_CASE("the strong attacks honour the attack contract", "[strong][contract]", StrongAttacks) {
  ardent_test::check_attack_contract<TestType>();
}

TEST_CASE("the strong attacks reject bad options naming the argument", "[strong][errors]") {
  using namespace ardent::attacks;
  CHECK_THROWS_WITH(CW(CWOptions().c(-1)), ContainsSubstring("'c'"));
  CHECK_THROWS_WITH(CW(CWOptions().kappa(-1)), ContainsSubstring("'kappa'"));
  CHECK_THROWS_WITH(CW(CWOptions().lr(0)), ContainsSubstring("'lr'"));
  CHECK_THROWS_WITH(CW(CWOptions().steps(-1)), ContainsSubstring("'steps'"));
  CHECK_THROWS_WITH(CW(CWOptions().binary_search_steps(0)), ContainsSubstring("'binary_search_steps'"));
  CHECK_THROWS_WITH(CW(CWOptions().clip_min(1).clip_max(0)), ContainsSubstring("'clip_min/clip_max'"));
  CHECK_THROWS_WITH(APGD(APGDOptions(-0.1)), ContainsSubstring("'epsilon'"));
  CHECK_THROWS_WITH(APGD(APGDOptions(0.1).steps(-1)), ContainsSubstring("'steps'"));
  CHECK_THROWS_WITH(APGD(APGDOptions(0.1).restarts(0)), ContainsSubstring("'restarts'"));
  CHECK_THROWS_WITH(APGD(APGDOptions(0.1).n_target_classes(0)), ContainsSubstring("'n_target_classes'"));
  CHECK_THROWS_WITH(APGD(APGDOptions(0.1).rho(1.5)), ContainsSubstring("'rho'"));
  CHECK_THROWS_WITH(APGD(APGDOptions(0.1).momentum(0)), ContainsSubstring("'momentum'"));
  CHECK_THROWS_WITH(cw_linf(-1), ContainsSubstring("'epsilon'"));
  CHECK_THROWS_WITH(cw_linf(0.1, 0), ContainsSubstring("'steps'"));
  CHECK_THROWS_WITH(CWLinf(PGDOptions(0.1), -1), ContainsSubstring("'kappa'"));
  CHECK_THROWS_WITH(CWLinf(PGDOptions(0.1).norm(Norm::L2)), ContainsSubstring("'norm'"));
  CHECK_THROWS_WITH(apgd_checkpoints(-1), ContainsSubstring("'steps'"));
}

TEST_CASE("the strong attacks satisfy the Attack concepts", "[strong][concept]") {
  STATIC_REQUIRE(Attack<attacks::CW>);
  STATIC_REQUIRE(TargetedAttack<attacks::CW>);
  STATIC_REQUIRE(Attack<attacks::CW, models::SmallCNN>);
  STATIC_REQUIRE(Attack<attacks::CWLinf, std::shared_ptr<models::SmallCNNImpl>>);
  STATIC_REQUIRE(TargetedAttack<attacks::APGD, models::SmallCNN>);
}

TEST_CASE("the CW margin masks the true class, so all-negative logits give the right margin", "[strong][cw]") {
  // Multiplying by a zero mask would take max(0, other logits) = 0 as the runner-up here.
  const auto logits = torch::tensor({{-1.0, -2.0, -3.0}, {-5.0, -0.5, -4.0}, {-7.0, -6.0, -9.0}});
  const auto labels = torch::tensor({0, 1, 1}, torch::kLong);
  const auto untargeted = attacks::CW::margin(logits, labels, /*kappa=*/100.0);
  CHECK(torch::allclose(untargeted, torch::tensor({-1.0 - -2.0, -0.5 - -4.0, -6.0 - -7.0})));
  CHECK(torch::allclose(attacks::CW::margin(logits, labels, /*kappa=*/0.5), torch::tensor({1.0, 3.5, 1.0})));
  CHECK(attacks::CW::margin(logits.slice(0, 0, 1), torch::tensor({1}, torch::kLong), 0.25).item<double>() ==
        Approx(-0.25));
  // Targeted: max(max_{i != t} Z_i - Z_t, -kappa).
  const auto targeted = attacks::CW::margin(logits, torch::tensor({2, 1, 0}, torch::kLong), 100.0, true);
  CHECK(torch::allclose(targeted, torch::tensor({-1.0 - -3.0, -4.0 - -0.5, -6.0 - -7.0})));
}

TEST_CASE("DLR and targeted DLR on hand-written logits equal their formulas", "[strong][apgd]") {
  // Sorted: row 0: 4 > 3 > 1 > 0 > -2; row 1: 2 > 1.5 > -1 > -3 > -3.5.
  const auto logits = torch::tensor({{1.0, 4.0, 0.0, 3.0, -2.0}, {-3.0, 2.0, -1.0, 1.5, -3.5}});
  const auto labels = torch::tensor({1, 2}, torch::kLong);
  const auto targets = torch::tensor({3, 3}, torch::kLong);
  const auto dlr = objectives::DLR{labels}(logits);
  CHECK(dlr[0].item<double>() == Approx(-(4.0 - 3.0) / (4.0 - 1.0)));
  CHECK(dlr[1].item<double>() == Approx(-(-1.0 - 2.0) / (2.0 - -1.0)));
  const auto tdlr = objectives::TargetedDLR{labels, targets}(logits);
  CHECK(tdlr[0].item<double>() == Approx(-(4.0 - 3.0) / (4.0 - (1.0 + 0.0) / 2)));
  CHECK(tdlr[1].item<double>() == Approx(-(-1.0 - 1.5) / (2.0 - (-1.0 + -3.0) / 2)));
  CHECK_THROWS_WITH((objectives::TargetedDLR{labels.slice(0, 0, 1), targets}(logits)), ContainsSubstring("'labels'"));
  CHECK_THROWS_WITH((objectives::TargetedDLR{labels, targets.to(torch::kInt)}(logits)), ContainsSubstring("'targets'"));
  CHECK_THROWS_WITH((objectives::TargetedDLR{labels, targets}(logits.slice(1, 0, 3))), ContainsSubstring("'logits'"));
}

TEST_CASE("APGD's checkpoints for 100 steps are the published ones", "[strong][apgd]") {
  // By hand: p = 0, .22, .41 (.22 + .19), .57 (+ .16), .70 (+ .13), .80 (+ .10), .87 (+ .07), .93 (+ .06),
  // .99 (+ .06), then 1.05 > 1; w_j = ceil(100 p_j). The authors' code gives the same: first
  // check after 22 steps, then intervals 19, 16, 13, 10, 7, 6, 6.
  CHECK((attacks::apgd_checkpoints(100) == std::vector<int64_t>{0, 22, 41, 57, 70, 80, 87, 93, 99}));
  CHECK((attacks::apgd_checkpoints(10) == std::vector<int64_t>{0, 3, 5, 6, 7, 8, 9, 10}));
  CHECK(attacks::apgd_checkpoints(0) == std::vector<int64_t>{0});
}

TEST_CASE("CW on the reference model: at least PGD-10's success rate, every returned adversarial misclassified",
          "[strong][cw][reference]") {
  auto ref = ardent_test::load_reference();
  torch::NoGradGuard no_grad;
  const auto clean_correct = ardent::forward(ref.model, ref.x).argmax(1).eq(ref.y);

  const attacks::CW cw(attacks::CWOptions().c(1.0).steps(50).lr(0.05).binary_search_steps(4));
  const auto x_cw = cw.perturb(ref.model, ref.x, ref.y);
  torch::manual_seed(0);
  const auto x_pgd = attacks::PGD(attacks::PGDOptions(0.1).step_size(0.01).steps(10)).perturb(ref.model, ref.x, ref.y);

  const auto cw_fooled = ardent::forward(ref.model, x_cw).argmax(1).ne(ref.y).logical_and(clean_correct);
  const auto pgd_fooled = ardent::forward(ref.model, x_pgd).argmax(1).ne(ref.y).logical_and(clean_correct);
  const auto attacked = clean_correct.sum().item<double>();
  const double cw_rate = cw_fooled.sum().item<double>() / attacked;
  const double pgd_rate = pgd_fooled.sum().item<double>() / attacked;
  const auto l2 = (x_cw - ref.x).flatten(1).norm(2, 1);
  INFO("CW success " << cw_rate << " (mean L2 " << l2.index({cw_fooled}).mean().item<double>() << ") vs PGD-10 "
                     << pgd_rate << " on " << attacked << " correctly classified samples");
  CHECK(cw_rate >= pgd_rate);

  const auto moved = (x_cw - ref.x).flatten(1).abs().amax(1).gt(0);
  CHECK(moved.logical_and(ardent::forward(ref.model, x_cw).argmax(1).eq(ref.y)).sum().item<int64_t>() == 0);
  CHECK(moved.equal(cw_fooled));  // a sample never made adversarial comes back unchanged
  CHECK(x_cw.min().item<double>() >= 0.0);
  CHECK(x_cw.max().item<double>() <= 1.0);
}

TEST_CASE("CW's binary search finds adversarials no farther than a single c", "[strong][cw][reference]") {
  auto ref = ardent_test::load_reference();
  torch::NoGradGuard no_grad;
  const auto x = ref.x.slice(0, 0, 32);
  const auto y = ref.y.slice(0, 0, 32);
  const auto options = attacks::CWOptions().c(1.0).steps(30).lr(0.05);
  const auto single = attacks::CW(options).perturb(ref.model, x, y);
  const auto searched = attacks::CW(attacks::CWOptions(options).binary_search_steps(5)).perturb(ref.model, x, y);
  const auto fooled = [&](const torch::Tensor& adv) {
    return ardent::forward(ref.model, adv).argmax(1).ne(y).logical_and(ardent::forward(ref.model, x).argmax(1).eq(y));
  };
  const auto single_fooled = fooled(single);
  const auto searched_fooled = fooled(searched);
  const auto l2_single = (single - x).flatten(1).norm(2, 1);
  const auto l2_searched = (searched - x).flatten(1).norm(2, 1);
  REQUIRE(single_fooled.sum().item<int64_t>() > 0);
  CHECK(searched_fooled.sum().item<int64_t>() >= single_fooled.sum().item<int64_t>());
  // The search's first round is the single run, so every sample keeps a point at least as close.
  CHECK(searched_fooled.logical_or(single_fooled.logical_not()).all().item<bool>());
  const double mean_single = l2_single.index({single_fooled}).mean().item<double>();
  const double mean_searched_same = l2_searched.index({single_fooled}).mean().item<double>();
  INFO("mean L2 over the samples a single c breaks: "
       << mean_single << " single, " << mean_searched_same << " with binary search; "
       << searched_fooled.sum().item<int64_t>() << " vs " << single_fooled.sum().item<int64_t>() << " broken");
  CHECK(mean_searched_same <= mean_single + 1e-6);
  CHECK((l2_searched.index({single_fooled}) <= l2_single.index({single_fooled}) + 1e-6).all().item<bool>());
}

TEST_CASE("APGD is at least as strong as PGD with the same budget on the reference model",
          "[strong][apgd][reference]") {
  auto ref = ardent_test::load_reference();
  torch::NoGradGuard no_grad;
  constexpr double eps = 0.05;
  constexpr int64_t steps = 10;
  torch::manual_seed(0);
  const auto x_pgd =
      attacks::PGD(attacks::PGDOptions(eps).step_size(2.5 * eps / steps).steps(steps)).perturb(ref.model, ref.x, ref.y);
  torch::manual_seed(0);
  const auto x_apgd = attacks::APGD(attacks::APGDOptions(eps).steps(steps)).perturb(ref.model, ref.x, ref.y);
  torch::manual_seed(0);
  const auto x_apgd_t =
      attacks::APGD(attacks::APGDOptions(eps).steps(steps).loss(attacks::APGDLoss::TargetedDLR).n_target_classes(3))
          .perturb(ref.model, ref.x, ref.y);
  const double pgd = accuracy(ardent::forward(ref.model, x_pgd), ref.y);
  const double apgd = accuracy(ardent::forward(ref.model, x_apgd), ref.y);
  const double apgd_t = accuracy(ardent::forward(ref.model, x_apgd_t), ref.y);
  INFO("robust accuracy at eps " << eps << ", " << steps << " steps: PGD " << pgd << ", APGD-CE " << apgd << ", APGD-T "
                                 << apgd_t);
  CHECK(apgd <= pgd);
  CHECK(apgd_t <= accuracy(ardent::forward(ref.model, ref.x), ref.y));
  CHECK((x_apgd - ref.x).abs().max().item<double>() <= eps + 1e-6);

  SECTION("targeted APGD reaches its targets far more often than chance") {
    const auto targets = (ref.y + 1).remainder(10);
    torch::manual_seed(0);
    const auto x_tgt = attacks::APGD(attacks::APGDOptions(0.2).steps(20)).perturb(ref.model, ref.x, Targeted{targets});
    CHECK(accuracy(ardent::forward(ref.model, x_tgt), targets) > 0.5);
  }
}
