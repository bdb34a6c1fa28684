// The distillation losses: closed forms, gradients, and their argument checks.
#include "catch.hpp"

#include <ardent/losses/ce.hpp>
#include <ardent/losses/kl.hpp>
#include <ardent/losses/mse.hpp>
#include <ardent/targets/outputs.hpp>

#include <cmath>
#include <vector>

using namespace ardent;

namespace {

// Row b of softmax(z / t), written out with exp and a sum, not softmax or log_softmax.
std::vector<double> softmax_by_hand(const torch::Tensor& z, int64_t b, double t) {
  std::vector<double> p(static_cast<std::size_t>(z.size(1)));
  double sum = 0;
  for (int64_t c = 0; c < z.size(1); ++c) sum += std::exp(z[b][c].item<double>() / t);
  for (int64_t c = 0; c < z.size(1); ++c) p[static_cast<std::size_t>(c)] = std::exp(z[b][c].item<double>() / t) / sum;
  return p;
}

// sum_b sum_c term(p_t, p_s) over the rows of teacher and student at temperature t.
template <typename Term>
double sum_by_hand(const torch::Tensor& student, const torch::Tensor& teacher, double t, Term term) {
  double total = 0;
  for (int64_t b = 0; b < student.size(0); ++b) {
    const auto ps = softmax_by_hand(student, b, t);
    const auto pt = softmax_by_hand(teacher, b, t);
    for (std::size_t c = 0; c < ps.size(); ++c) total += term(pt[c], ps[c]);
  }
  return total;
}

// sum_b sum_c p_t (log p_t - log p_s).
double kl_by_hand(const torch::Tensor& student, const torch::Tensor& teacher, double t) {
  return sum_by_hand(student, teacher, t, [](double pt, double ps) { return pt * (std::log(pt) - std::log(ps)); });
}

// -sum_b sum_c p_t log p_s.
double soft_ce_by_hand(const torch::Tensor& student, const torch::Tensor& teacher, double t) {
  return sum_by_hand(student, teacher, t, [](double pt, double ps) { return -pt * std::log(ps); });
}

// Central finite differences of a scalar function of z, in double precision.
template <typename F>
torch::Tensor numerical_gradient(F f, const torch::Tensor& z) {
  auto grad = torch::zeros_like(z);
  const double h = 1e-6;
  for (int64_t i = 0; i < z.numel(); ++i) {
    auto plus = z.clone();
    auto minus = z.clone();
    plus.view(-1)[i] += h;
    minus.view(-1)[i] -= h;
    grad.view(-1)[i] = (f(plus).template item<double>() - f(minus).template item<double>()) / (2 * h);
  }
  return grad;
}

template <typename F>
void check_gradient(F f, const torch::Tensor& z) {
  auto input = z.clone().requires_grad_(true);
  f(input).backward();
  CHECK(torch::allclose(input.grad(), numerical_gradient(f, z), 1e-6, 1e-8));
}

}  // namespace

TEST_CASE("KL, CE and MSE equal their closed forms, with gradients matching finite differences", "[losses]") {
  const auto student = torch::tensor({{1.0, -2.0, 0.5}, {-3.0, -1.0, -2.0}}, torch::kDouble);
  const auto teacher = torch::tensor({{2.0, 0.0, -1.0}, {-0.5, -4.0, 1.5}}, torch::kDouble);

  for (const double t : {1.0, 4.0}) {
    INFO("temperature " << t);
    const losses::KL batch_mean(losses::KLOptions().temperature(t));
    const losses::KL element_mean(losses::KLOptions().temperature(t).reduction(losses::KLReduction::ElementMean));
    const losses::KL unscaled(losses::KLOptions().temperature(t).scale_by_temperature_squared(false));
    const double kl = kl_by_hand(student, teacher, t);
    CHECK(batch_mean(student, teacher).item<double>() == Approx(t * t * kl / 2));
    CHECK(element_mean(student, teacher).item<double>() == Approx(t * t * kl / 6));
    CHECK(unscaled(student, teacher).item<double>() == Approx(kl / 2));
    CHECK(batch_mean(teacher, teacher).item<double>() == Approx(0.0).margin(1e-12));

    const losses::CE ce(losses::CEOptions().temperature(t));
    CHECK(ce(student, teacher).item<double>() == Approx(t * t * soft_ce_by_hand(student, teacher, t) / 2));

    check_gradient([&](const torch::Tensor& z) { return batch_mean(z, teacher); }, student);
    check_gradient([&](const torch::Tensor& z) { return element_mean(z, teacher); }, student);
    check_gradient([&](const torch::Tensor& z) { return ce(z, teacher); }, student);
  }
  const losses::MSE mse;
  CHECK(mse(student, teacher).item<double>() == Approx((student - teacher).pow(2).sum().item<double>() / 6));
  check_gradient([&](const torch::Tensor& z) { return mse(z, teacher); }, student);
  const targets::FeatureMaps fs{{student, student * 2}};
  const targets::FeatureMaps ft{{teacher, teacher}};
  CHECK(mse(fs, ft).item<double>() == Approx(torch::mse_loss(student, teacher).item<double>() +
                                             torch::mse_loss(student * 2, teacher).item<double>()));

  SECTION("KL on probabilities equals KL on the logits they came from") {
    const losses::KL kl4(losses::KLOptions().temperature(4.0));
    const targets::Outputs outputs;
    CHECK(kl4(outputs.view_from_logits(student), outputs.view_from_logits(teacher)).item<double>() ==
          Approx(kl4(student, teacher).item<double>()));
  }
  SECTION("bad arguments") {
    CHECK_THROWS_WITH(losses::KL(losses::KLOptions().temperature(0)), ContainsSubstring("'temperature'"));
    CHECK_THROWS_WITH(losses::CE(losses::CEOptions().temperature(-1)), ContainsSubstring("'temperature'"));
    CHECK_THROWS_WITH(losses::KL()(student, teacher.slice(1, 0, 2)),
                      ContainsSubstring("'student_view'") && ContainsSubstring("class count"));
    CHECK_THROWS_WITH(mse(student, teacher.t()), ContainsSubstring("'student_view'"));
  }
}
