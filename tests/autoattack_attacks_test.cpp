// Square and FAB, AutoAttack's gradient-free and minimal-norm members: the attack contract, the
// hyperplane projections against a slow exact solver, FAB against closed-form distances on affine
// models, and Square's schedule, invariants, edge cases and reproducibility.
#include "attack_contract.hpp"
#include "catch.hpp"

#include <ardent/attacks/apgd.hpp>
#include <ardent/attacks/detail/hyperplane_projection.hpp>
#include <ardent/attacks/fab.hpp>
#include <ardent/attacks/square.hpp>

#include <cmath>
#include <tuple>
#include <vector>

using namespace ardent;

namespace {

// The contract's batch has one correctly classified sample, whose closest misclassified point lies
// at Linf 0.083 and L2 0.51 (FAB). Square (within its budget) and L2 FAB (radius 0.4) do not break
// it, and both return unbroken samples clean, so they do not move; the other tests check that they
// break what they can.
struct SquareLinfCase {
  static attacks::Square make(double eps) { return attacks::Square(attacks::SquareOptions(eps).queries(300)); }
  static constexpr bool bounded = true;
  static constexpr bool objectives = false;
  static constexpr bool moves = false;
  static constexpr Norm norm = Norm::Linf;
};
struct SquareL2Case {
  static attacks::Square make(double eps) {
    return attacks::Square(attacks::SquareOptions(4 * eps).queries(300).norm(Norm::L2).loss(attacks::SquareLoss::CE));
  }
  static constexpr bool bounded = true;
  static constexpr bool objectives = false;
  static constexpr bool moves = false;
  static constexpr Norm norm = Norm::L2;
};
struct FABTCase {
  static attacks::FAB make(double eps) { return attacks::FAB(attacks::FABOptions(eps).steps(10).target_classes(3)); }
  static constexpr bool bounded = true;
  static constexpr bool objectives = false;
  static constexpr bool moves = true;
  static constexpr Norm norm = Norm::Linf;
};
struct FABUntargetedL2Case {
  static attacks::FAB make(double eps) {
    return attacks::FAB(attacks::FABOptions(4 * eps).steps(10).targeted(false).norm(Norm::L2).restarts(2));
  }
  static constexpr bool bounded = true;
  static constexpr bool objectives = false;
  static constexpr bool moves = false;
  static constexpr Norm norm = Norm::L2;
};
using AutoAttackAttacks = std::tuple<SquareLinfCase, SquareL2Case, FABTCase, FABUntargetedL2Case>;

// ---------------------------------------------------------------------------------------------
// The exact projection, one row at a time in double precision: flip (w, b) so that c = <w, t> - b
// >= 0; the solutions are d(lambda) = clip(-lambda v, lo - t, hi - t) with v = sign(w) (Linf) or
// w (L2), and <w, d(lambda)> + c falls from c to <w, corner> + c, so bisection on lambda finds the
// root; a hyperplane the box cannot reach leaves d at the corner.

struct ExactProjection {
  torch::Tensor d;
  bool reachable;
};

ExactProjection exact_projection(Norm norm, torch::Tensor t, torch::Tensor w, double b, double lo, double hi) {
  t = t.to(torch::kDouble);
  w = w.to(torch::kDouble);
  double c = (w * t).sum().item<double>() - b;
  if (c < 0) {
    w = -w;
    c = -c;
  }
  const auto direction = norm == Norm::Linf ? w.sign() : w;
  const auto d_of = [&](double lambda) {
    return torch::maximum(torch::minimum(-lambda * direction, hi - t), lo - t) * w.ne(0);
  };
  const auto corner = d_of(1e30);
  if ((w * corner).sum().item<double>() + c > 0) return {corner, false};
  double lower = 0.0;
  double upper = 1.0;
  while ((w * d_of(upper)).sum().item<double>() + c > 0) upper *= 2;
  for (int i = 0; i < 200; ++i) {
    const double middle = (lower + upper) / 2;
    ((w * d_of(middle)).sum().item<double>() + c > 0 ? lower : upper) = middle;
  }
  return {d_of((lower + upper) / 2), true};
}

/// Random rows covering every branch: hyperplanes through a point of the box (reachable, with
/// multipliers large and small), far outside it (unreachable), just off the point (no coordinate
/// saturates), with zero weights, both orientations, points on the box's faces.
struct Rows {
  torch::Tensor t, w, b;
};

Rows random_rows(int64_t rows, int64_t dimension, double lo, double hi) {
  const double range = hi - lo;
  auto t = lo + range * torch::rand({rows, dimension}, torch::kDouble);
  auto w = torch::randn({rows, dimension}, torch::kDouble);
  auto b = torch::empty({rows}, torch::kDouble);
  for (int64_t r = 0; r < rows; ++r) {
    switch (r % 6) {
      case 0:  // through a uniform point of the box
        b[r] = (w[r] * (lo + range * torch::rand({dimension}, torch::kDouble))).sum();
        break;
      case 1:  // a third of the weights zero, the point on the box's faces in places
        w[r].mul_(torch::rand({dimension}, torch::kDouble).gt(1.0 / 3));
        t[r].index_put_({torch::rand({dimension}).lt(0.2)}, lo);
        t[r].index_put_({torch::rand({dimension}).lt(0.2)}, hi);
        b[r] = (w[r] * (lo + range * torch::rand({dimension}, torch::kDouble))).sum();
        break;
      case 2:  // unreachable: beyond every vertex
        b[r] = (w[r] * t[r]).sum() + (r % 4 == 2 ? 1 : -1) * (w[r].abs().sum() * range + 1);
        break;
      case 3:  // close to the point: no coordinate reaches its face
        b[r] = (w[r] * t[r]).sum() + 1e-3 * range * torch::randn({1}, torch::kDouble).item<double>();
        break;
      case 4:  // a few dominant weights
        w[r].mul_(torch::rand({dimension}, torch::kDouble).pow(4) * 10);
        b[r] = (w[r] * (lo + range * torch::rand({dimension}, torch::kDouble))).sum();
        break;
      default:  // all weights zero but one
        w[r].zero_();
        w[r][r % dimension] = 1.5;
        b[r] = 1.5 * (lo + range * (r % 3 == 0 ? 1.2 : 0.3));
        break;
    }
  }
  return {t, w, b};
}

// ---------------------------------------------------------------------------------------------
// Models.

/// z = W flatten(x) + b: the closest misclassified point is known in closed form.
struct AffineImpl : torch::nn::Module {
  AffineImpl(int64_t inputs, int64_t classes) { layer = register_module("layer", torch::nn::Linear(inputs, classes)); }
  torch::Tensor forward(const torch::Tensor& x) { return layer->forward(x.flatten(1)); }
  torch::nn::Linear layer{nullptr};
};
TORCH_MODULE(Affine);

/// Class 1's logit counts the pixels above 1/2 (round(x)); class 0's is 60% of the pixels. The
/// gradient is zero everywhere, yet pushing pixels of an image at 0.45 up by 0.1 flips the class.
struct StepNetImpl : torch::nn::Module {
  torch::Tensor forward(const torch::Tensor& x) {
    const auto above = torch::round(x).flatten(1).sum(1);
    const double threshold = 0.6 * static_cast<double>(x[0].numel());
    return torch::stack({torch::full_like(above, threshold), above}, 1);
  }
};
TORCH_MODULE(StepNet);

/// Class 1 as soon as the input moves away from 0.45 at all: any start of the attack fools it.
struct FragileNetImpl : torch::nn::Module {
  torch::Tensor forward(const torch::Tensor& x) {
    const auto moved = (x - 0.45).abs().flatten(1).sum(1) * 100 - 0.5;
    return torch::stack({torch::zeros_like(moved), moved}, 1);
  }
};
TORCH_MODULE(FragileNet);

/// A small random convolutional classifier on 3-channel images of any size (global max pooling,
/// so that changing one window can change the class).
struct ConvNetImpl : torch::nn::Module {
  ConvNetImpl() {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)));
    head = register_module("head", torch::nn::Linear(8, 4));
  }
  torch::Tensor forward(const torch::Tensor& x) { return head->forward(torch::relu(conv->forward(x)).amax({2, 3})); }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(ConvNet);

double max_distance(Norm norm, const torch::Tensor& a, const torch::Tensor& b) {
  return attacks::detail::row_norm(norm, (a - b).flatten(1)).max().item<double>();
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("Square and FAB honour the attack contract", "[square][fab][contract]", AutoAttackAttacks) {
  ardent_test::check_attack_contract<TestType>();
}

TEST_CASE("Square and FAB reject bad options naming the argument", "[square][fab][errors]") {
  using namespace ardent::attacks;
  CHECK_THROWS_WITH(Square(SquareOptions(-1)), ContainsSubstring("'epsilon'"));
  CHECK_THROWS_WITH(Square(SquareOptions(0.1).queries(-1)), ContainsSubstring("'queries'"));
  CHECK_THROWS_WITH(Square(SquareOptions(0.1).p_init(0)), ContainsSubstring("'p_init'"));
  CHECK_THROWS_WITH(Square(SquareOptions(0.1).p_init(1.5)), ContainsSubstring("'p_init'"));
  CHECK_THROWS_WITH(Square(SquareOptions(0.1).restarts(0)), ContainsSubstring("'restarts'"));
  CHECK_THROWS_WITH(Square(SquareOptions(0.1).clip_min(1).clip_max(0)), ContainsSubstring("'clip_min/clip_max'"));
  CHECK_THROWS_WITH(FAB(FABOptions(-1)), ContainsSubstring("'epsilon'"));
  CHECK_THROWS_WITH(FAB(FABOptions(0.1).steps(-1)), ContainsSubstring("'steps'"));
  CHECK_THROWS_WITH(FAB(FABOptions(0.1).restarts(0)), ContainsSubstring("'restarts'"));
  CHECK_THROWS_WITH(FAB(FABOptions(0.1).target_classes(0)), ContainsSubstring("'target_classes'"));
  CHECK_THROWS_WITH(FAB(FABOptions(0.1).alpha_max(2)), ContainsSubstring("'alpha_max'"));
  CHECK_THROWS_WITH(FAB(FABOptions(0.1).eta(0)), ContainsSubstring("'eta'"));
  CHECK_THROWS_WITH(FAB(FABOptions(0.1).beta(-0.5)), ContainsSubstring("'beta'"));
}

TEST_CASE("Square and FAB satisfy the Attack concepts", "[square][fab][concept]") {
  STATIC_REQUIRE(Attack<attacks::Square>);
  STATIC_REQUIRE(TargetedAttack<attacks::Square>);
  STATIC_REQUIRE(Attack<attacks::Square, models::SmallCNN>);
  STATIC_REQUIRE(Attack<attacks::FAB>);
  STATIC_REQUIRE(TargetedAttack<attacks::FAB, models::SmallCNN>);
}

TEST_CASE("both hyperplane projections equal a bisection on the multiplier", "[fab][projection]") {
  torch::manual_seed(0);
  const auto norm = GENERATE(Norm::Linf, Norm::L2);
  const auto box = GENERATE(std::pair{0.0, 1.0}, std::pair{-0.5, 2.0});
  const int64_t dimension = GENERATE(1, 7, 64);
  const double lo = box.first;
  const double hi = box.second;
  const auto rows = random_rows(60, dimension, lo, hi);
  const auto d = attacks::detail::hyperplane_projection(norm, rows.t, rows.w, rows.b, lo, hi);
  const auto d_float = attacks::detail::hyperplane_projection(norm, rows.t.to(torch::kFloat), rows.w.to(torch::kFloat),
                                                              rows.b.to(torch::kFloat), lo, hi);
  REQUIRE(d.sizes() == rows.t.sizes());
  int reachable = 0;
  int unreachable = 0;
  for (int64_t r = 0; r < rows.t.size(0); ++r) {
    const auto exact = exact_projection(norm, rows.t[r], rows.w[r], rows.b[r].item<double>(), lo, hi);
    INFO("norm " << (norm == Norm::Linf ? "Linf" : "L2") << ", box [" << lo << ", " << hi << "], D " << dimension
                 << ", row " << r << " (kind " << r % 6 << "), reachable " << exact.reachable);
    CHECK((d[r] - exact.d).abs().max().item<double>() <= 1e-5);
    CHECK((d_float[r].to(torch::kDouble) - exact.d).abs().max().item<double>() <= 1e-4);
    const auto moved = rows.t[r] + d[r];
    CHECK(moved.min().item<double>() >= lo - 1e-12);
    CHECK(moved.max().item<double>() <= hi + 1e-12);
    if (exact.reachable) {
      ++reachable;
      const double scale = rows.w[r].abs().sum().item<double>() * (hi - lo) + 1;
      CHECK(std::abs((rows.w[r] * moved).sum().item<double>() - rows.b[r].item<double>()) <= 1e-9 * scale);
    } else {
      ++unreachable;
    }
  }
  CHECK(reachable > 0);
  CHECK(unreachable > 0);
}

TEST_CASE("the L2 projection of a point already on the hyperplane does not move it", "[fab][projection]") {
  const auto t = torch::tensor({{0.2, 0.5, 0.9}}, torch::kDouble);
  const auto w = torch::tensor({{1.0, -2.0, 0.0}}, torch::kDouble);
  const auto b = (w * t).sum(1);
  CHECK(attacks::detail::hyperplane_projection_l2(t, w, b).abs().max().item<double>() == 0.0);
  CHECK(attacks::detail::hyperplane_projection_linf(t, w, b).abs().max().item<double>() == 0.0);
}

TEST_CASE("FAB finds the closed-form minimal distance of an affine model within 5%", "[fab][affine]") {
  torch::manual_seed(3);
  const auto norm = GENERATE(Norm::Linf, Norm::L2);
  const int64_t classes = GENERATE(2, 5);
  const bool targeted = GENERATE(false, true);
  constexpr int64_t batch = 32;
  Affine model(3 * 8 * 8, classes);
  const auto x = 0.4 + 0.2 * torch::rand({batch, 3, 8, 8});
  torch::Tensor y;
  torch::Tensor r_nearest;
  torch::Tensor r_runner_up;
  {
    torch::NoGradGuard no_grad;
    const auto z = model->forward(x);
    y = z.argmax(1);
    const auto weight = model->layer->weight;  // [C, D]
    const auto dual = norm == Norm::Linf ? 1.0 : 2.0;
    // r_t = (z_y - z_t) / ||w_t - w_y||_q for every t != y.
    const auto w_y = weight.index_select(0, y);
    auto r = torch::empty({batch, classes});
    for (int64_t t = 0; t < classes; ++t) {
      const auto gap = z.gather(1, y.unsqueeze(1)).squeeze(1) - z.select(1, t);
      r.select(1, t).copy_(gap / (weight[t].unsqueeze(0) - w_y).norm(dual, 1));
    }
    r.scatter_(1, y.unsqueeze(1), INFINITY);
    r_nearest = r.amin(1);
    r_runner_up = r.gather(1, std::get<1>(z.topk(2, 1)).select(1, 1).unsqueeze(1)).squeeze(1);
  }
  // The closed form ignores the box: keep the samples whose whole 1.05 r ball stays inside it.
  const auto clear_of_box = (1.05 * r_runner_up).lt(0.39);
  REQUIRE(clear_of_box.sum().item<int64_t>() >= batch / 2);

  const double eps = norm == Norm::Linf ? 1.0 : 100.0;
  const auto fab = attacks::FAB(attacks::FABOptions(eps).norm(norm).targeted(targeted));
  const auto x_adv = fab.perturb(model, x, y);
  const auto found = attacks::detail::row_norm(norm, (x_adv - x).flatten(1));
  torch::NoGradGuard no_grad;
  const auto fooled = model->forward(x_adv).argmax(1).ne(y);
  // FAB-T aims at the runner-up class; untargeted FAB (and FAB-T with two classes) at the nearest.
  const auto bound = targeted && classes > 2 ? r_runner_up : r_nearest;
  for (int64_t i = 0; i < batch; ++i) {
    if (!clear_of_box[i].item<bool>()) continue;
    INFO("sample " << i << ": found " << found[i].item<double>() << ", nearest boundary " << r_nearest[i].item<double>()
                   << ", aimed at " << bound[i].item<double>());
    CHECK(fooled[i].item<bool>());
    CHECK(found[i].item<double>() >= r_nearest[i].item<double>() * (1 - 1e-4));
    CHECK(found[i].item<double>() <= bound[i].item<double>() * 1.05 + 1e-6);
  }

  SECTION("a sample whose closest adversarial lies beyond epsilon comes back unchanged") {
    const double small = r_nearest.min().item<double>() * 0.5;
    CHECK(torch::equal(attacks::FAB(attacks::FABOptions(small).norm(norm).targeted(targeted)).perturb(model, x, y), x));
  }
}

TEST_CASE("FAB with chosen targets reaches them on an affine model", "[fab][affine]") {
  torch::manual_seed(4);
  Affine model(3 * 8 * 8, 4);
  const auto x = 0.3 + 0.4 * torch::rand({16, 3, 8, 8});
  torch::Tensor y;
  {
    torch::NoGradGuard no_grad;
    y = model->forward(x).argmax(1);
  }
  const auto targets = (y + 1).remainder(4);
  const auto x_adv = attacks::FAB(attacks::FABOptions(1.0).steps(50)).perturb(model, x, Targeted{targets});
  torch::NoGradGuard no_grad;
  const auto reached = model->forward(x_adv).argmax(1).eq(targets);
  const auto moved = (x_adv - x).flatten(1).abs().amax(1).gt(0);
  CHECK(reached.to(torch::kDouble).mean().item<double>() >= 0.75);
  CHECK(torch::equal(moved, reached));  // a target not reached leaves the sample unchanged
}

TEST_CASE("FAB on a model without gradients returns the input unchanged", "[fab]") {
  StepNet model;
  const auto x = torch::full({4, 3, 8, 8}, 0.45);
  const auto y = torch::zeros({4}, torch::kLong);
  for (const bool targeted : {true, false}) {
    const auto x_adv = attacks::FAB(attacks::FABOptions(0.1).steps(5).targeted(targeted)).perturb(model, x, y);
    CHECK(torch::equal(x_adv, x));
  }
}

TEST_CASE("Square's schedule of p and square sizes are the reference's", "[square][schedule]") {
  using attacks::square_p;
  using attacks::square_side;
  const std::vector<std::pair<int64_t, int>> halvings{
      {0, 0},    {10, 0},   {11, 1},   {50, 1},   {51, 2},   {200, 2},  {201, 3},  {500, 3},  {501, 4},  {1000, 4},
      {1001, 5}, {2000, 5}, {2001, 6}, {4000, 6}, {4001, 7}, {6000, 7}, {6001, 8}, {8000, 8}, {8001, 9}, {9999, 9}};
  for (const auto& [iteration, j] : halvings) {
    INFO("iteration " << iteration);
    CHECK(square_p(iteration, 0.8, 10000, false) == 0.8 / std::pow(2.0, j));
  }
  // Rescaled to 1000 queries: iteration i behaves as int(i / 1000 * 10000) = 10 i.
  CHECK(square_p(1, 0.8, 1000, true) == 0.8);
  CHECK(square_p(2, 0.8, 1000, true) == 0.4);
  CHECK(square_p(801, 0.8, 1000, true) == 0.8 / 512);
  CHECK(square_p(801, 0.8, 1000, false) == 0.8 / 16);

  // 32 x 32 in AutoAttack: the side changes at iterations 0/11/51/201/501/1001/2001/4001.
  const std::vector<int64_t> iterations{0, 11, 51, 201, 501, 1001, 2001, 4001};
  const std::vector<int64_t> linf{29, 20, 14, 10, 7, 5, 4, 3};
  const std::vector<int64_t> l2{29, 21, 15, 11, 7, 5, 5, 3};
  for (std::size_t i = 0; i < iterations.size(); ++i) {
    const double p = square_p(iterations[i], 0.8, 5000, false);
    CHECK(square_side(p, 32, 32, Norm::Linf) == linf[i]);
    CHECK(square_side(p, 32, 32, Norm::L2) == l2[i]);
    CHECK(square_side(square_p(iterations[i] - 1, 0.8, 5000, false), 32, 32, Norm::Linf) >= linf[i]);
  }
  CHECK(square_side(0.8 / 512, 32, 32, Norm::Linf) == 1);
  CHECK(square_side(0.8 / 512, 32, 32, Norm::L2) == 3);
  // Half to even, as Python's round: sqrt(0.25 * 25) = 2.5 -> 2, sqrt(0.25 * 49) = 3.5 -> 4.
  CHECK(square_side(0.25, 5, 5, Norm::Linf) == 2);
  CHECK(square_side(0.25, 7, 7, Norm::Linf) == 4);
  CHECK(square_side(0.25, 5, 5, Norm::L2) == 3);
  // Capped by the shorter side of a non-square image.
  CHECK(square_side(0.8, 32, 6, Norm::Linf) == 6);
  CHECK(square_side(0.8, 4, 32, Norm::L2) == 4);
}

TEST_CASE("Square's L2 pattern: nested squares of weight 1/(k+1)^2, unit norm, halves of opposite signs",
          "[square][schedule]") {
  // 3 x 3: the centre gets 1 + 1/4, the ring 1/4.
  const auto rectangle = attacks::detail::square_eta_rectangle(3, 3);
  CHECK(rectangle[1][1].item<double>() / rectangle[0][0].item<double>() == Approx(5.0));
  CHECK(rectangle.pow(2).sum().item<double>() == Approx(1.0));
  const auto eta = attacks::detail::square_eta(5);
  CHECK(eta.pow(2).sum().item<double>() == Approx(1.0));
  CHECK(eta.slice(0, 0, 2).min().item<double>() > 0);
  CHECK(eta.slice(0, 2).max().item<double>() < 0);
}

TEST_CASE("every Square iterate lies in the ball and the box, and the accepted margin never rises",
          "[square][invariants]") {
  torch::manual_seed(5);
  Affine model(3 * 10 * 7, 4);
  const auto norm = GENERATE(Norm::Linf, Norm::L2);
  const auto loss = GENERATE(attacks::SquareLoss::Margin, attacks::SquareLoss::CE);
  const auto x = torch::rand({12, 3, 10, 7});  // h != w
  torch::Tensor y;
  {
    torch::NoGradGuard no_grad;
    y = model->forward(x).argmax(1);  // every sample attacked
  }
  const double eps = norm == Norm::Linf ? 0.03 : 0.3;
  const auto square = attacks::Square(attacks::SquareOptions(eps).queries(200).norm(norm).loss(loss).seed(7));
  int64_t queries = 0;
  bool inside = true;
  bool monotone = true;
  torch::Tensor previous_margin;
  torch::Tensor previous_loss;
  const auto x_adv = square.perturb_observed(model, x, y, [&](const attacks::detail::SquareStep& step) {
    ++queries;
    const auto clean_active = step.clean.index_select(0, step.active);
    for (const auto& [point, reference] : {std::pair{step.x_new, clean_active}, std::pair{step.x_best, step.clean}}) {
      inside = inside && point.min().item<double>() >= 0.0 && point.max().item<double>() <= 1.0 &&
               max_distance(norm, point, reference) <= eps * (1 + 1e-5);
    }
    if (previous_margin.defined()) {
      // With the margin loss the margin never rises; with CE the loss never rises.
      if (loss == attacks::SquareLoss::Margin) {
        monotone = monotone && step.margin.le(previous_margin).all().item<bool>();
      }
      monotone = monotone && step.loss.le(previous_loss).all().item<bool>();
    }
    previous_margin = step.margin.clone();
    previous_loss = step.loss.clone();
  });
  CHECK(queries > 1);
  CHECK(inside);
  CHECK(monotone);

  torch::NoGradGuard no_grad;
  const auto still_correct = model->forward(x_adv).argmax(1).eq(y);
  INFO("fooled " << (12 - still_correct.sum().item<int64_t>()) << " of 12");
  // Unfooled samples come back clean; fooled ones are misclassified and inside the ball.
  for (int64_t i = 0; i < 12; ++i) {
    if (still_correct[i].item<bool>()) CHECK(torch::equal(x_adv[i], x[i]));
  }
  CHECK(still_correct.logical_not().any().item<bool>());
  CHECK(max_distance(norm, x_adv, x) <= eps * (1 + 1e-5));
}

TEST_CASE("Square is reproducible from its seed and leaves the global random stream alone", "[square][seed]") {
  torch::manual_seed(6);
  Affine model(3 * 9 * 9, 4);
  const auto x = torch::rand({6, 3, 9, 9});
  torch::Tensor y;
  {
    torch::NoGradGuard no_grad;
    y = model->forward(x).argmax(1);
  }
  const auto norm = GENERATE(Norm::Linf, Norm::L2);
  const double eps = norm == Norm::Linf ? 0.05 : 0.5;
  const auto options = attacks::SquareOptions(eps).queries(100).norm(norm).seed(11);
  torch::manual_seed(1);
  const auto first = attacks::Square(options).perturb(model, x, y);
  const auto after_first = torch::rand({4});
  torch::manual_seed(2);
  const auto second = attacks::Square(options).perturb(model, x, y);
  CHECK_FALSE(torch::equal(first, x));  // something was broken, so the comparison means something
  CHECK(torch::equal(first, second));
  torch::manual_seed(1);
  CHECK(torch::equal(torch::rand({4}), after_first));  // the attack drew nothing from the global generator

  // Another seed starts elsewhere.
  std::vector<torch::Tensor> starts;
  for (const uint64_t seed : {11, 12}) {
    (void)attacks::Square(attacks::SquareOptions(options).seed(seed))
        .perturb_observed(model, x, y, [&](const attacks::detail::SquareStep& step) {
          if (step.iteration == -1) starts.push_back(step.x_new.clone());
        });
  }
  REQUIRE(starts.size() == 2);
  CHECK_FALSE(torch::equal(starts[0], starts[1]));
}

TEST_CASE("Square's edge cases: one sample, non-square images, nothing to attack, small L2 images", "[square][edge]") {
  torch::manual_seed(8);
  ConvNet model;
  const auto norm = GENERATE(Norm::Linf, Norm::L2);
  const double eps = norm == Norm::Linf ? 0.05 : 0.5;
  const auto square = attacks::Square(attacks::SquareOptions(eps).queries(50).norm(norm));
  torch::NoGradGuard no_grad;

  SECTION("a batch of one") {
    const auto x = torch::rand({1, 3, 8, 8});
    const auto y = model->forward(x).argmax(1);
    const auto x_adv = square.perturb(model, x, y);
    CHECK(x_adv.sizes() == x.sizes());
    CHECK(max_distance(norm, x_adv, x) <= eps * (1 + 1e-5));
  }
  SECTION("tall and wide images, with a side smaller than the first square") {
    for (const auto& shape : {std::vector<int64_t>{3, 3, 20, 6}, std::vector<int64_t>{3, 3, 6, 20},
                              std::vector<int64_t>{2, 3, 5, 2}, std::vector<int64_t>{2, 3, 14, 14}}) {
      const auto x = torch::rand(shape);
      const auto y = model->forward(x).argmax(1);
      const auto x_adv = square.perturb(model, x, y);
      CHECK(x_adv.sizes() == x.sizes());
      CHECK(max_distance(norm, x_adv, x) <= eps * (1 + 1e-5));
      CHECK(x_adv.min().item<double>() >= 0.0);
      CHECK(x_adv.max().item<double>() <= 1.0);
    }
  }
  SECTION("an all-misclassified batch comes back unchanged") {
    const auto x = torch::rand({5, 3, 8, 8});
    const auto wrong = (model->forward(x).argmax(1) + 1).remainder(4);
    CHECK(torch::equal(square.perturb(model, x, wrong), x));
  }
  SECTION("a start that fools every sample ends the run at once") {
    FragileNet fragile;
    const auto x = torch::full({3, 3, 8, 8}, 0.45);
    const auto y = torch::zeros({3}, torch::kLong);
    REQUIRE(fragile->forward(x).argmax(1).eq(y).all().item<bool>());
    int64_t steps = 0;
    const auto x_adv = square.perturb_observed(fragile, x, y, [&](const attacks::detail::SquareStep&) { ++steps; });
    CHECK(steps == 1);
    CHECK(fragile->forward(x_adv).argmax(1).ne(y).all().item<bool>());
  }
  SECTION("L2 images lower than 5 pixels are a clear error") {
    const auto x = torch::rand({2, 3, 4, 9});
    const auto y = torch::zeros({2}, torch::kLong);
    if (norm == Norm::L2) {
      CHECK_THROWS_WITH(square.perturb(model, x, y), ContainsSubstring("'x'") && ContainsSubstring("height 4"));
    } else {
      CHECK_NOTHROW(square.perturb(model, x, y));
    }
    CHECK_THROWS_WITH(square.perturb(model, torch::rand({2, 8}), y), ContainsSubstring("[B, C, H, W]"));
  }
}

TEST_CASE("Square breaks a model with zero gradients everywhere that APGD cannot", "[square][masking]") {
  StepNet model;
  torch::manual_seed(9);
  const auto x = 0.42 + 0.06 * torch::rand({8, 3, 8, 8});
  const auto y = torch::zeros({8}, torch::kLong);
  torch::NoGradGuard no_grad;
  REQUIRE(model->forward(x).argmax(1).eq(y).all().item<bool>());
  constexpr double eps = 0.1;
  const auto x_apgd = attacks::APGD(attacks::APGDOptions(eps).steps(50)).perturb(model, x, y);
  const auto x_square = attacks::Square(attacks::SquareOptions(eps).queries(1000)).perturb(model, x, y);
  const auto robust = [&](const torch::Tensor& adv) {
    return model->forward(adv).argmax(1).eq(y).to(torch::kDouble).mean().item<double>();
  };
  INFO("robust accuracy: APGD " << robust(x_apgd) << ", Square " << robust(x_square));
  CHECK(robust(x_apgd) == 1.0);
  CHECK(robust(x_square) == 0.0);
  CHECK((x_square - x).abs().max().item<double>() <= eps + 1e-6);
}
