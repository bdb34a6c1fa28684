// The built-in objectives and the Carlini-Wagner margin they share, on hand-written logits.
#include "catch.hpp"

#include <ardent/objectives/builtins.hpp>
#include <ardent/objectives/margin.hpp>

#include <cmath>

using namespace ardent;

TEST_CASE("objectives compute their formulas on hand-written logits", "[objectives]") {
  // Every logit negative: masking the true class with zeros instead of -inf would give the wrong margin.
  const auto logits = torch::tensor({{-5.0, -1.0, -3.0, -4.0}, {2.0, 0.5, 1.0, -1.0}}, torch::kDouble);
  const auto labels = torch::tensor({1, 2}, torch::kLong);

  SECTION("CrossEntropy and TargetedCrossEntropy") {
    const auto ce = objectives::CrossEntropy{labels}(logits);
    const double lse0 = std::log(std::exp(-5.0) + std::exp(-1.0) + std::exp(-3.0) + std::exp(-4.0));
    const double lse1 = std::log(std::exp(2.0) + std::exp(0.5) + std::exp(1.0) + std::exp(-1.0));
    CHECK(ce[0].item<double>() == Approx(lse0 + 1.0));
    CHECK(ce[1].item<double>() == Approx(lse1 - 1.0));
    CHECK(torch::allclose(objectives::TargetedCrossEntropy{labels}(logits), -ce));
  }
  SECTION("CWMargin: min(max_{i != y} z_i - z_y, kappa)") {
    const auto margin = objectives::CWMargin{labels, 10.0}(logits);
    CHECK(margin[0].item<double>() == Approx(-3.0 - -1.0));
    CHECK(margin[1].item<double>() == Approx(2.0 - 1.0));
    CHECK(objectives::CWMargin{labels, 0.5}(logits)[1].item<double>() == Approx(0.5));
  }
  SECTION("DLR: -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)") {
    const auto dlr = objectives::DLR{labels}(logits);
    CHECK(dlr[0].item<double>() == Approx(-(-1.0 - -3.0) / (-1.0 - -4.0)));
    CHECK(dlr[1].item<double>() == Approx(-(1.0 - 2.0) / (2.0 - 0.5)));
  }
  SECTION("KLDivergence: sum_c p_r,c (log p_r,c - log p_z,c)") {
    const auto reference = torch::tensor({{0.0, 1.0, 0.0, 0.0}, {1.0, 1.0, 1.0, 1.0}}, torch::kDouble);
    const auto kl = objectives::KLDivergence{reference}(logits);
    for (int64_t i = 0; i < 2; ++i) {
      const auto p = torch::softmax(reference[i], 0);
      const auto q = torch::softmax(logits[i], 0);
      CHECK(kl[i].item<double>() == Approx((p * (p.log() - q.log())).sum().item<double>()));
    }
    CHECK(objectives::KLDivergence{logits}(logits).abs().max().item<double>() < 1e-12);
  }
  SECTION("objectives check their labels against the logits") {
    CHECK_THROWS_WITH(objectives::CrossEntropy{torch::tensor({1, 4}, torch::kLong)}(logits),
                      ContainsSubstring("'labels'") && ContainsSubstring("[0, 4)"));
    CHECK_THROWS_WITH(objectives::CWMargin{torch::tensor({1}, torch::kLong)}(logits), ContainsSubstring("'labels'"));
    CHECK_THROWS_WITH(objectives::KLDivergence{logits.slice(1, 0, 3)}(logits), ContainsSubstring("'reference_logits'"));
  }
}

TEST_CASE("the CW margin and is_adversarial, untargeted and targeted", "[objectives][margin]") {
  const auto options = torch::TensorOptions().dtype(torch::kDouble);
  const auto z = torch::tensor({-5.0, -1.0, -3.0, 2.0, 1.0, 0.5}, options).reshape({2, 3});
  const auto y = torch::tensor({1, 1}, torch::kLong);
  // z_y - max_{i != y} z_i: -1 - (-3) = 2 (a 0/1 mask would take 0 as the runner-up), and 1 - 2 = -1.
  CHECK(torch::equal(objectives::cw_margin(z, y), torch::tensor({2.0, -1.0}, options)));
  CHECK(torch::equal(objectives::cw_margin(z, Targeted{y}), torch::tensor({-2.0, 1.0}, options)));
  CHECK(torch::equal(objectives::is_adversarial(z, y), torch::tensor({false, true})));
  CHECK(torch::equal(objectives::is_adversarial(z, Targeted{y}), torch::tensor({true, false})));
  // The objectives are the margin's: CW maximises -margin up to kappa, DLR divides it by z_pi1 - z_pi3.
  CHECK(torch::equal(objectives::CWMargin{y, 0.5}(z), torch::tensor({-2.0, 0.5}, options)));
  CHECK(torch::equal(objectives::TargetedCWMargin{y, 0.5}(z), torch::tensor({0.5, -1.0}, options)));
}
