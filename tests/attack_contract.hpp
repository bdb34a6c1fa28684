#pragma once
// The attack contract of docs/design.md ("Guarantees every part keeps"), written once and run over every attack
// (built-in cases in attacks_test.cpp and strong_attacks_test.cpp). A case provides:
//   static A make(double eps)     the attack, built with radius eps (L2 cases scale it: radius<Case>)
//   static constexpr Norm norm    the norm of its ball
//   bool bounded                  the result lies in the ball (CW has none)
//   bool objectives               it accepts an arbitrary objective
//   bool moves                    it changes some sample of a random batch (None does not)
#include "catch.hpp"

#include <ardent/ardent.hpp>

namespace ardent_test {

// Submodules in different modes: conv and linear train, BatchNorm frozen in eval.
struct MixedNetImpl : torch::nn::Module {
  MixedNetImpl() {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3).padding(1)));
    norm = register_module("norm", torch::nn::BatchNorm2d(4));
    head = register_module("head", torch::nn::Linear(4 * 8 * 8, 5));
    norm->eval();
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return head->forward(torch::relu(norm->forward(conv->forward(x))).flatten(1));
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d norm{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(MixedNet);

/// The radius a case's attack has when built for `eps`: L2 balls are four times larger.
template <typename Case>
double radius(double eps) {
  return Case::norm == ardent::Norm::L2 ? 4 * eps : eps;
}

/// The largest per-sample size of delta in the case's norm.
template <typename Case>
double size_of(const torch::Tensor& delta) {
  const double order = Case::norm == ardent::Norm::Linf ? INFINITY : 2.0;
  return delta.flatten(1).norm(order, 1).max().item().toDouble();
}

template <typename TestType>
void check_attack_contract() {
  using namespace ardent;
  torch::manual_seed(0);
  MixedNet model;
  auto x = torch::rand({6, 1, 8, 8});
  x[0].fill_(0.0);  // pixels on the box's edges must be able to move (CW's tanh shrink)
  x[1].fill_(1.0);
  const auto labels = torch::randint(5, {6}, torch::kLong);
  constexpr double eps = 0.1;
  const auto attack = TestType::make(eps);

  torch::manual_seed(1);
  const torch::Tensor x_adv = attack.perturb(model, x, labels);

  SECTION("the result has the input's shape, dtype and device, and is detached") {
    CHECK(x_adv.sizes() == x.sizes());
    CHECK(x_adv.dtype() == x.dtype());
    CHECK(x_adv.device() == x.device());
    CHECK_FALSE(x_adv.requires_grad());
    CHECK_FALSE(x_adv.grad_fn());
  }
  SECTION("the result lies in the pixel box (and the epsilon ball, where there is one)") {
    CHECK(x_adv.min().item<double>() >= 0.0);
    CHECK(x_adv.max().item<double>() <= 1.0);
    if constexpr (TestType::bounded) CHECK(size_of<TestType>(x_adv - x) <= radius<TestType>(eps) + 1e-6);
  }
  if constexpr (TestType::moves) {
    SECTION("the attack moves some sample") { CHECK_FALSE(torch::equal(x_adv, x)); }
  }
  SECTION("the same seed gives the same result") {
    torch::manual_seed(1);
    CHECK(torch::equal(attack.perturb(model, x, labels), x_adv));
  }
  if constexpr (TestType::bounded) {
    SECTION("epsilon 0 returns the input") { CHECK(torch::equal(TestType::make(0.0).perturb(model, x, labels), x)); }
  }
  SECTION("parameters' gradients and buffers are untouched") {
    for (auto& p : model->parameters()) p.mutable_grad() = torch::full_like(p, 0.25);
    std::vector<torch::Tensor> buffers_before;
    for (const auto& b : model->buffers()) buffers_before.push_back(b.clone());
    (void)attack.perturb(model, x, labels);
    for (const auto& p : model->parameters()) CHECK(torch::equal(p.grad(), torch::full_like(p, 0.25)));
    const auto buffers = model->buffers();
    for (std::size_t i = 0; i < buffers.size(); ++i) CHECK(torch::equal(buffers[i], buffers_before[i]));
  }
  SECTION("each submodule's training flag is restored") {
    model->train();
    model->norm->eval();
    (void)attack.perturb(model, x, labels);
    CHECK(model->is_training());
    CHECK(model->conv->is_training());
    CHECK(model->head->is_training());
    CHECK_FALSE(model->norm->is_training());
  }
  SECTION("works under NoGradGuard and under InferenceMode, with the same result") {
    torch::Tensor under_no_grad;
    torch::Tensor under_inference;
    {
      torch::NoGradGuard no_grad;
      torch::manual_seed(1);
      under_no_grad = attack.perturb(model, x, labels);
    }
    CHECK(torch::equal(under_no_grad, x_adv));
    {
      c10::InferenceMode inference;
      const auto x_inference = x.clone();
      const auto labels_inference = labels.clone();
      torch::manual_seed(1);
      under_inference = attack.perturb(model, x_inference, labels_inference);
    }
    CHECK(torch::equal(under_inference, x_adv));
    CHECK(torch::GradMode::is_enabled());
  }
  SECTION("targeted goals (and objectives, where accepted) respect the box and the ball") {
    const auto targets = (labels + 1).remainder(5);
    std::vector<torch::Tensor> results{attack.perturb(model, x, Targeted{targets})};
    if constexpr (TestType::objectives) results.push_back(attack.perturb(model, x, objectives::CWMargin{labels, 0.0}));
    for (const auto& adv : results) {
      CHECK(adv.min().item<double>() >= 0.0);
      CHECK(adv.max().item<double>() <= 1.0);
      if constexpr (TestType::bounded) CHECK(size_of<TestType>(adv - x) <= radius<TestType>(eps) + 1e-6);
    }
  }
  SECTION("bad input throws naming the argument") {
    CHECK_THROWS_WITH(attack.perturb(model, x + 2, labels), ContainsSubstring("'x'"));
    CHECK_THROWS_WITH(attack.perturb(model, x, labels.slice(0, 0, 3)), ContainsSubstring("'labels'"));
    CHECK_THROWS_WITH(attack.perturb(model, x, Targeted{torch::full({6}, 3, torch::kInt)}),
                      ContainsSubstring("'targets'"));
    // A target outside the class range is known only from the model's logits, which the identity
    // attack never computes.
    if constexpr (TestType::moves) {
      CHECK_THROWS_WITH(attack.perturb(model, x, Targeted{torch::full({6}, 9, torch::kLong)}),
                        ContainsSubstring("'targets'"));
    }
  }
}

}  // namespace ardent_test
