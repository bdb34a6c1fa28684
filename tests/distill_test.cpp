// Distillation losses, soft targets, the Distiller and its recipes, the adversarial trainer and fit.
#include "catch.hpp"

#include <ardent/attacks/apgd.hpp>
#include <ardent/attacks/cw.hpp>
#include <ardent/distill/factories.hpp>
#include <ardent/losses/ce.hpp>
#include <ardent/losses/mse.hpp>
#include <ardent/targets/features.hpp>
#include <ardent/targets/outputs.hpp>
#include <ardent/train/loop.hpp>

#include <cmath>
#include <limits>

using namespace ardent;

namespace {

// A small classifier on [B, 1, 4, 4] inputs; counts its forward passes by batch size.
struct NetImpl : torch::nn::Module {
  NetImpl(int64_t classes = 3, bool batch_norm = false) {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3).padding(1)));
    if (batch_norm) norm = register_module("norm", torch::nn::BatchNorm2d(4));
    head = register_module("head", torch::nn::Linear(4 * 4 * 4, classes));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    ++forwards[x.size(0)];
    auto h = conv->forward(x);
    if (norm) h = norm->forward(h);
    return head->forward(torch::tanh(h).flatten(1));
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d norm{nullptr};
  torch::nn::Linear head{nullptr};
  std::map<int64_t, int> forwards;  // batch size -> number of forward passes
};
TORCH_MODULE(Net);

double kl_by_hand(const torch::Tensor& student, const torch::Tensor& teacher, double t) {
  // sum_b sum_c p_t (log p_t - log p_s), written out with exp/sum, not log_softmax.
  double total = 0;
  for (int64_t b = 0; b < student.size(0); ++b) {
    double zs = 0;
    double zt = 0;
    for (int64_t c = 0; c < student.size(1); ++c) {
      zs += std::exp(student[b][c].item<double>() / t);
      zt += std::exp(teacher[b][c].item<double>() / t);
    }
    for (int64_t c = 0; c < student.size(1); ++c) {
      const double pt = std::exp(teacher[b][c].item<double>() / t) / zt;
      const double ps = std::exp(student[b][c].item<double>() / t) / zs;
      total += pt * (std::log(pt) - std::log(ps));
    }
  }
  return total;
}

double soft_ce_by_hand(const torch::Tensor& student, const torch::Tensor& teacher, double t) {
  double total = 0;
  for (int64_t b = 0; b < student.size(0); ++b) {
    double zs = 0;
    double zt = 0;
    for (int64_t c = 0; c < student.size(1); ++c) {
      zs += std::exp(student[b][c].item<double>() / t);
      zt += std::exp(teacher[b][c].item<double>() / t);
    }
    for (int64_t c = 0; c < student.size(1); ++c) {
      total -= std::exp(teacher[b][c].item<double>() / t) / zt *
               std::log(std::exp(student[b][c].item<double>() / t) / zs);
    }
  }
  return total;
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

namespace {

/// An attack that returns x and records whether a watched parameter wanted a gradient meanwhile.
struct ProbeAttack {
  std::vector<torch::Tensor> watched;
  std::shared_ptr<bool> saw_trainable = std::make_shared<bool>(false);
  template <ardent::Model M, typename Goal>
  torch::Tensor perturb(M& /*model*/, const torch::Tensor& x, const Goal& /*goal*/) const {
    for (const auto& p : watched) *saw_trainable = *saw_trainable || p.requires_grad();
    return x.detach().clone();
  }
};

struct Setup {
  Net teacher{3, /*batch_norm=*/true};
  Net student{3};
  torch::Tensor x;
  torch::Tensor y;
  Setup() {
    torch::manual_seed(0);
    teacher = Net(3, true);
    student = Net(3);
    x = torch::rand({8, 1, 4, 4});
    y = torch::randint(3, {8}, torch::kLong);
    teacher->train();  // left in train mode by its user: the distiller must still not change it
  }
};

// The attack of the formula tests, written out here independently of ardent's attacks: Linf
// sign-gradient ascent from x (no random start) on the objective `f(x')`, projected and clamped.
template <typename F>
torch::Tensor ascend(F f, const torch::Tensor& x, double eps, double step, int steps, torch::Tensor start = {}) {
  auto x_adv = start.defined() ? start : x.clone();
  for (int k = 0; k < steps; ++k) {
    auto input = x_adv.clone().requires_grad_(true);
    const auto g = torch::autograd::grad({f(input)}, {input})[0];
    x_adv = torch::min(torch::max(x_adv + step * g.sign(), x - eps), x + eps).clamp(0, 1);
  }
  return x_adv.detach();
}

torch::Tensor kl_rows(const torch::Tensor& teacher_logits, const torch::Tensor& student_logits, double t = 1.0) {
  const auto pt = torch::softmax(teacher_logits / t, 1);
  return (pt * (pt.log() - torch::log_softmax(student_logits / t, 1))).sum(1);
}

const auto kAttack = attacks::PGDOptions(0.1).step_size(0.03).steps(4).random_start(false);

}  // namespace

TEST_CASE("one step of each recipe equals its paper's formula", "[distill][recipes]") {
  Setup s;
  torch::optim::SGD optimizer(s.student->parameters(), 0.1);
  const double eps = 0.1;
  const double a = 0.03;
  const int steps = 4;
  auto teacher_fn = [&](const torch::Tensor& x) {
    s.teacher->eval();
    return s.teacher->forward(x);
  };
  auto student_fn = [&](const torch::Tensor& x) { return s.student->forward(x); };

  SECTION("ARD: alpha T^2 KL(T(x) || S(x')) + (1 - alpha) CE(S(x), y), x' maximising CE(S(x'), y)") {
    const double alpha = 0.7;
    const double t = 5.0;
    torch::Tensor expected;
    {
      s.student->eval();
      const auto x_adv = ascend(
          [&](const torch::Tensor& z) { return torch::nn::functional::cross_entropy(student_fn(z), s.y); }, s.x, eps, a,
          steps);
      s.student->train();
      torch::NoGradGuard no_grad;
      const auto kl = kl_rows(teacher_fn(s.x), student_fn(x_adv), t).mean();
      expected = alpha * t * t * kl + (1 - alpha) * torch::nn::functional::cross_entropy(student_fn(s.x), s.y);
    }
    Distiller ard(s.teacher, s.student, attacks::PGD(kAttack), losses::KL(losses::KLOptions().temperature(t)),
                  targets::Logits{}, recipes::ard(alpha));
    ard.train();
    const auto r = ard.step(s.x, s.y, optimizer);
    CHECK(r.loss == Approx(expected.item<double>()).epsilon(1e-5));
    CHECK(r.adversarial_distill.has_value());
    CHECK(r.cross_entropy.has_value());
    CHECK_FALSE(r.clean_distill.has_value());
  }
  SECTION("RSLAD: 5/6 KL(T(x) || S(x')) + 1/6 KL(T(x) || S(x)), x' maximising KL(T(x) || S(x'))") {
    torch::Tensor expected;
    {
      torch::Tensor teacher_clean;
      {
        torch::NoGradGuard no_grad;
        teacher_clean = teacher_fn(s.x);
      }
      s.student->eval();
      const auto x_adv = ascend([&](const torch::Tensor& z) { return kl_rows(teacher_clean, student_fn(z)).sum(); },
                                s.x, eps, a, steps);
      s.student->train();
      torch::NoGradGuard no_grad;
      expected = 5.0 / 6 * kl_rows(teacher_clean, student_fn(x_adv)).mean() +
                 1.0 / 6 * kl_rows(teacher_clean, student_fn(s.x)).mean();
    }
    Distiller rslad(s.teacher, s.student, attacks::PGD(kAttack), losses::KL(), targets::Logits{}, recipes::rslad());
    rslad.train();
    CHECK(rslad.step(s.x, s.y, optimizer).loss == Approx(expected.item<double>()).epsilon(1e-5));
  }
  SECTION("AdaAD: KL(T(x') || S(x')), x' maximising it through both networks") {
    torch::Tensor expected;
    {
      s.student->eval();
      const auto x_adv = ascend([&](const torch::Tensor& z) { return kl_rows(teacher_fn(z), student_fn(z)).sum(); },
                                s.x, eps, a, steps);
      s.student->train();
      torch::NoGradGuard no_grad;
      expected = kl_rows(teacher_fn(x_adv), student_fn(x_adv)).mean();
    }
    Distiller adaad(s.teacher, s.student, attacks::PGD(kAttack), losses::KL(), targets::Logits{}, recipes::adaad());
    adaad.train();
    CHECK(adaad.step(s.x, s.y, optimizer).loss == Approx(expected.item<double>()).epsilon(1e-5));
  }
  SECTION("AdaAD's attack runs with the parameters of both networks out of autograd, restored after") {
    ProbeAttack probe{s.student->parameters()};
    for (const auto& p : s.teacher->parameters()) probe.watched.push_back(p);
    Distiller adaad(s.teacher, s.student, probe, losses::KL(), targets::Logits{}, recipes::adaad());
    adaad.train();
    adaad.step(s.x, s.y, optimizer);
    CHECK_FALSE(*probe.saw_trainable);
    for (const auto& p : s.student->parameters()) CHECK(p.requires_grad());
  }
  SECTION("KD: alpha T^2 KL(T(x) || S(x)) + (1 - alpha) CE(S(x), y), no attack") {
    const double alpha = 0.9;
    const double t = 4.0;
    s.student->train();
    torch::Tensor expected;
    {
      torch::NoGradGuard no_grad;
      const auto logits = student_fn(s.x);
      expected = alpha * t * t * kl_rows(teacher_fn(s.x), logits, t).mean() +
                 (1 - alpha) * torch::nn::functional::cross_entropy(logits, s.y);
    }
    auto kd = make_kd(s.teacher, s.student, alpha, t);
    kd.train();
    CHECK(kd.step(s.x, s.y, optimizer).loss == Approx(expected.item<double>()).epsilon(1e-5));
  }
}

TEST_CASE("the teacher never changes, the student learns, and zero-weight terms are skipped", "[distill]") {
  Setup s;
  std::vector<torch::Tensor> teacher_state;
  for (const auto& p : s.teacher->parameters()) teacher_state.push_back(p.clone());
  for (const auto& b : s.teacher->buffers()) teacher_state.push_back(b.clone());
  std::vector<torch::Tensor> student_before;
  for (const auto& p : s.student->parameters()) student_before.push_back(p.clone());

  auto ard = make_ard(s.teacher, s.student, /*alpha=*/1.0, /*temperature=*/30.0, kAttack);
  torch::optim::SGD optimizer(ard.parameters(), 0.05);
  ard.train();
  s.student->forwards.clear();
  s.teacher->forwards.clear();
  constexpr int kSteps = 12;
  for (int i = 0; i < kSteps; ++i) ard.step(s.x, s.y, optimizer);

  std::size_t i = 0;
  for (const auto& p : s.teacher->parameters()) CHECK(torch::equal(p, teacher_state[i++]));
  for (const auto& b : s.teacher->buffers()) CHECK(torch::equal(b, teacher_state[i++]));
  for (const auto& p : s.teacher->parameters()) CHECK_FALSE(p.grad().defined());
  CHECK(s.teacher->is_training());  // the user's mode is restored

  bool changed = false;
  i = 0;
  for (const auto& p : s.student->parameters()) changed = changed || !torch::equal(p, student_before[i++]);
  CHECK(changed);

  // alpha 1: per step, 4 attack passes and one on x' for the student; no clean pass for the CE term.
  CHECK(s.student->forwards[8] == kSteps * (kAttack.steps() + 1));
  CHECK(s.teacher->forwards[8] == kSteps);  // the teacher once per batch
  // The class-count check runs once, on one sample.
  CHECK(s.student->forwards[1] == 1);

  SECTION("KD runs no attack at all") {
    auto kd = make_kd(s.teacher, s.student, 1.0, 4.0);
    s.student->forwards.clear();
    kd.train();
    kd.step(s.x, s.y, optimizer);
    CHECK(s.student->forwards[8] == 1);
  }
}

namespace {

// A user-written attack, loss and soft target.
struct UniformNoise {
  double epsilon = 0.05;
  template <Model M>
  torch::Tensor perturb(M& /*model*/, const torch::Tensor& x, const torch::Tensor& /*labels*/) const {
    return (x + torch::empty_like(x).uniform_(-epsilon, epsilon)).clamp(0, 1);
  }
};
struct L1Logits {
  torch::Tensor operator()(const torch::Tensor& s, const torch::Tensor& t) const { return (s - t).abs().mean(); }
};
struct LogProbabilities {
  using View = torch::Tensor;
  template <Model M>
  View teacher_view(M& m, const torch::Tensor& x) const {
    return torch::log_softmax(forward(m, x), 1);
  }
  template <Model M>
  View student_view(M& m, const torch::Tensor& x) const {
    return torch::log_softmax(forward(m, x), 1);
  }
};

// A network with two feature stages of chosen widths.
struct StagesImpl : torch::nn::Module {
  StagesImpl(int64_t c1, int64_t c2) {
    a = register_module("a", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, c1, 3).padding(1)));
    b = register_module("b", torch::nn::Conv2d(torch::nn::Conv2dOptions(c1, c2, 3).stride(2).padding(1)));
    head = register_module("head", torch::nn::Linear(c2 * 2 * 2, 3));
  }
  std::map<std::string, torch::Tensor> features(const torch::Tensor& x) {
    auto s1 = torch::relu(a->forward(x));
    auto s2 = torch::relu(b->forward(s1));
    return {{"s1", s1}, {"s2", s2}};
  }
  torch::Tensor forward(const torch::Tensor& x) { return head->forward(features(x).at("s2").flatten(1)); }
  torch::nn::Conv2d a{nullptr}, b{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(Stages);

}  // namespace

TEST_CASE("user-written policies compose into a Distiller that trains", "[distill][policies]") {
  STATIC_REQUIRE(Attack<UniformNoise, Net>);
  STATIC_REQUIRE(DistillLoss<L1Logits>);
  STATIC_REQUIRE(SoftTarget<LogProbabilities>);
  STATIC_REQUIRE_FALSE(LossAccepts<losses::KL, targets::FeatureMaps>);
  STATIC_REQUIRE_FALSE(LossAccepts<losses::CE, targets::FeatureMaps>);
  STATIC_REQUIRE(LossAccepts<losses::MSE, targets::FeatureMaps>);
  STATIC_REQUIRE_FALSE(DistillLoss<int>);
  STATIC_REQUIRE_FALSE(SoftTarget<losses::KL>);

  Setup s;
  Distiller custom(s.teacher, s.student, UniformNoise{}, L1Logits{}, LogProbabilities{},
                   DistillerOptions().adversarial_weight(1.0));
  torch::optim::Adam optimizer(custom.parameters(), 0.01);
  custom.train();
  const double first = custom.step(s.x, s.y, optimizer).loss;
  double last = first;
  for (int i = 0; i < 30; ++i) last = custom.step(s.x, s.y, optimizer).loss;
  CHECK(last < first);

  SECTION("a labels-only attack cannot serve the KL attack objectives: known at compile time") {
    STATIC_REQUIRE(AttackObjectiveFor<attack_objectives::StudentCrossEntropy, UniformNoise, Net, Net>);
    STATIC_REQUIRE_FALSE(AttackObjectiveFor<attack_objectives::KLToCleanTeacher, UniformNoise, Net, Net>);
    STATIC_REQUIRE_FALSE(AttackObjectiveFor<attack_objectives::KLToAdversarialTeacher, UniformNoise, Net, Net>);
    STATIC_REQUIRE_FALSE(AttackObjectiveFor<attack_objectives::KLToCleanTeacher, attacks::CW, Net, Net>);
    STATIC_REQUIRE(AttackObjectiveFor<attack_objectives::StudentCrossEntropy, attacks::CW, Net, Net>);
    STATIC_REQUIRE(AttackObjectiveFor<attack_objectives::KLToAdversarialTeacher, attacks::PGD, Net, Net>);
  }
}

namespace {

// A user's attack objective, written without touching the library: the student attacked toward
// leaving the teacher's clean prediction (CE against argmax T(x) instead of the labels).
struct AgainstTeacherPrediction {
  static constexpr bool uses_clean_teacher_logits = true;
  template <typename A, Model T, Model S>
  requires HasPerturb<A, S> torch::Tensor perturb(A& attack, T& /*teacher*/, S& student, const AttackInputs& in)
  const { return attack.perturb(student, in.x, in.teacher_logits.argmax(1)); }
};

// A loss that is NaN: the step must refuse it before the optimizer moves anything.
struct NaNLoss {
  torch::Tensor operator()(const torch::Tensor& s, const torch::Tensor& /*t*/) const {
    return s.sum() * std::numeric_limits<double>::quiet_NaN();
  }
};

// Returns [B, classes, 1] or [B]: outputs that are not logits [B, C].
struct OddOutputImpl : torch::nn::Module {
  explicit OddOutputImpl(bool flat) : flat(flat) { head = register_module("head", torch::nn::Linear(16, 3)); }
  torch::Tensor forward(const torch::Tensor& x) {
    const auto z = head->forward(x.flatten(1));
    return flat ? z.sum(1) : z.unsqueeze(2);
  }
  bool flat;
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(OddOutput);

std::vector<torch::Tensor> copies(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> result;
  for (const auto& t : tensors) result.push_back(t.detach().clone());
  return result;
}

bool all_equal(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  bool equal = a.size() == b.size();
  for (std::size_t i = 0; equal && i < a.size(); ++i) equal = torch::equal(a[i], b[i]);
  return equal;
}

}  // namespace

TEST_CASE("Distiller<T, S> takes the attack budget at construction, the rest ARD's", "[distill][defaults]") {
  Setup s;
  Distiller<Net, Net> d(s.teacher, s.student, attacks::PGDOptions(0.1).step_size(0.025).steps(4));
  CHECK(d.attack().options().epsilon() == 0.1);
  CHECK(d.attack().options().step_size() == 0.025);
  CHECK(d.attack().options().steps() == 4);
  CHECK(d.loss().options().temperature() == 30.0);
  CHECK(d.options().adversarial_weight() == 1.0);
  CHECK_THROWS_WITH((Distiller<Net, Net>(s.teacher, s.student, attacks::PGDOptions(8))),
                    ContainsSubstring("'epsilon'") && ContainsSubstring("8/255"));
}

TEST_CASE("Distiller<T, S> is ARD with the paper's settings, the same as make_ard", "[distill][defaults]") {
  Setup s;
  STATIC_REQUIRE(std::same_as<decltype(make_ard(s.teacher, s.student)), Distiller<Net, Net>>);
  STATIC_REQUIRE(std::same_as<Distiller<Net, Net>::Objective, attack_objectives::StudentCrossEntropy>);
  Distiller<Net, Net> d(s.teacher, s.student);
  const auto& a = d.attack().options();
  CHECK(a.epsilon() == 8.0 / 255);
  CHECK(a.step_size() == 2.0 / 255);
  CHECK(a.steps() == 10);
  CHECK(a.random_start());
  CHECK(d.loss().options().temperature() == 30.0);
  CHECK(d.options().adversarial_weight() == 1.0);
  CHECK(d.options().ce_weight() == 0.0);
  CHECK(d.options().clean_weight() == 0.0);

  // One step from the same state and seed gives make_ard's loss.
  const auto state = copies(s.student->parameters());
  torch::optim::SGD sgd(d.parameters(), 0.1);
  d.train();
  torch::manual_seed(7);
  const double loss = d.step(s.x, s.y, sgd).loss;
  {
    torch::NoGradGuard no_grad;
    auto p = s.student->parameters();
    for (std::size_t i = 0; i < p.size(); ++i) p[i].copy_(state[i]);
  }
  auto paper = make_ard(s.teacher, s.student);
  torch::optim::SGD sgd2(paper.parameters(), 0.1);
  paper.train();
  torch::manual_seed(7);
  CHECK(paper.step(s.x, s.y, sgd2).loss == loss);
}

TEST_CASE("recipes are types: CTAD takes the recipe's objective, and a user's objective needs no library edit",
          "[distill][recipes]") {
  Setup s;
  Distiller rslad(s.teacher, s.student, attacks::PGD(kAttack), losses::KL(), targets::Logits{},
                  recipes::rslad().clean_weight(0.5));
  STATIC_REQUIRE(std::same_as<decltype(rslad)::Objective, attack_objectives::KLToCleanTeacher>);
  STATIC_REQUIRE(std::same_as<decltype(rslad), RSLAD<Net, Net>>);
  CHECK(rslad.options().clean_weight() == 0.5);
  const DistillerOptions plain = recipes::rslad();  // a recipe is still a DistillerOptions
  CHECK(plain.adversarial_weight() == Approx(5.0 / 6.0));

  Distiller custom(s.teacher, s.student, attacks::PGD(kAttack), losses::KL(), targets::Logits{},
                   Recipe<AgainstTeacherPrediction>().adversarial_weight(1.0));
  torch::optim::SGD optimizer(custom.parameters(), 0.1);
  custom.train();
  // The expected loss: x' from PGD against the teacher's clean prediction, then KL(T(x) || S(x')).
  torch::Tensor expected;
  {
    torch::Tensor prediction;
    {
      torch::NoGradGuard no_grad;
      s.teacher->eval();
      prediction = s.teacher->forward(s.x).argmax(1);
    }
    const auto x_adv = attacks::PGD(kAttack).perturb(s.student, s.x, prediction);
    torch::NoGradGuard no_grad;
    s.student->train();
    expected = losses::KL()(s.student->forward(x_adv), s.teacher->forward(s.x));
  }
  CHECK(custom.step(s.x, s.y, optimizer).loss == Approx(expected.item<double>()).epsilon(1e-5));
}

TEST_CASE("a non-finite teacher or loss is refused before the optimizer step, the student unchanged",
          "[distill][errors]") {
  Setup s;
  const auto before = copies(s.student->parameters());
  SECTION("NaN teacher weights: caught by the first step's check of the teacher's outputs") {
    {
      torch::NoGradGuard no_grad;
      for (auto& p : s.teacher->parameters()) p.fill_(std::numeric_limits<float>::quiet_NaN());
    }
    auto ard = make_ard(s.teacher, s.student, 1.0, 30.0, kAttack);
    torch::optim::SGD optimizer(ard.parameters(), 0.1);
    CHECK_THROWS_WITH(ard.step(s.x, s.y, optimizer), ContainsSubstring("teacher") && ContainsSubstring("NaN"));
    CHECK(all_equal(before, s.student->parameters()));
  }
  SECTION("a NaN loss term is named") {
    Distiller d(s.teacher, s.student, attacks::PGD(kAttack), NaNLoss{}, targets::Logits{}, recipes::ard(0.5));
    torch::optim::SGD optimizer(d.parameters(), 0.1);
    CHECK_THROWS_WITH(d.step(s.x, s.y, optimizer), ContainsSubstring("'adversarial_distill'"));
    CHECK(all_equal(before, s.student->parameters()));
  }
}

TEST_CASE("wrong model outputs and input dtypes get ardent's messages with the user's shapes", "[distill][errors]") {
  Setup s;
  torch::optim::SGD optimizer(s.student->parameters(), 0.1);
  SECTION("a 1-D teacher output") {
    auto d = make_ard(OddOutput(/*flat=*/true), s.student, 1.0, 30.0, kAttack);
    CHECK_THROWS_WITH(d.step(s.x, s.y, optimizer),
                      ContainsSubstring("teacher returned shape [1]") && ContainsSubstring("[8, 1, 4, 4]"));
  }
  SECTION("a model that fails on the batch: the message shows the batch's shape, not one sample's") {
    auto d = make_ard(s.teacher, s.student, 1.0, 30.0, kAttack);
    CHECK_THROWS_WITH(d.step(torch::rand({8, 2, 4, 4}), s.y, optimizer),
                      ContainsSubstring("[8, 2, 4, 4]") && ContainsSubstring("teacher"));
  }
  SECTION("float64 input to float32 models") {
    auto d = make_ard(s.teacher, s.student, 1.0, 30.0, kAttack);
    CHECK_THROWS_WITH(d.step(s.x.to(torch::kDouble), s.y, optimizer),
                      ContainsSubstring("'x'") && ContainsSubstring("Double") && ContainsSubstring("Float"));
  }
  SECTION("APGD on a model returning [B, 3, 1]") {
    OddOutput odd(/*flat=*/false);
    CHECK_THROWS_WITH(attacks::APGD(attacks::APGDOptions(0.1).steps(5)).perturb(odd, s.x, s.y),
                      ContainsSubstring("APGD") && ContainsSubstring("[8, 3, 1]"));
  }
  SECTION("half-precision input to a float model") {
    CHECK_THROWS_WITH(attacks::PGD(kAttack).perturb(s.student, s.x.to(torch::kHalf), s.y),
                      ContainsSubstring("'x'") && ContainsSubstring("Half"));
  }
  SECTION("steps(0) is an error for PGD and APGD") {
    CHECK_THROWS_WITH(attacks::PGD(attacks::PGDOptions(0.1).steps(0)), ContainsSubstring("'steps'"));
    CHECK_THROWS_WITH(attacks::APGD(attacks::APGDOptions(0.1).steps(0)), ContainsSubstring("'steps'"));
  }
}

TEST_CASE("Features builds connectors exactly where channels differ, and trains them", "[distill][features]") {
  torch::manual_seed(0);
  Stages teacher(4, 8);
  Stages student(4, 6);  // s1 matches, s2 does not
  targets::Features features(targets::FeaturesOptions().input_shape({1, 4, 4}));
  Distiller d(teacher, student, attacks::PGD(kAttack), losses::MSE(), features, recipes::ard(1.0));
  auto& bound = d.target();
  REQUIRE(bound.pairs().size() == 2);
  CHECK(bound.connectors()->size() == 1);
  const auto connector_parameters = bound.parameters();
  CHECK(connector_parameters.size() == 3);  // 1x1 conv weight, BN weight and bias
  CHECK(d.parameters().size() == student->parameters().size() + 3);

  const auto x = torch::rand({6, 1, 4, 4});
  const auto y = torch::randint(3, {6}, torch::kLong);
  const auto before = connector_parameters[0].clone();
  torch::optim::SGD optimizer(d.parameters(), 0.1);
  d.train();
  d.step(x, y, optimizer);
  CHECK(connector_parameters[0].grad().defined());
  CHECK(connector_parameters[0].grad().abs().sum().item<double>() > 0);
  CHECK_FALSE(torch::equal(connector_parameters[0], before));

  CHECK_THROWS_WITH(
      Distiller(teacher, student, attacks::PGD(kAttack), losses::MSE(), targets::Features{}, recipes::ard(1.0)),
      ContainsSubstring("'input_shape'"));
}

TEST_CASE("distillation drives the student's KL to the teacher down", "[distill][convergence]") {
  torch::manual_seed(1);
  Net teacher(3);
  Net student(3);
  {
    torch::NoGradGuard no_grad;
    teacher->head->weight.mul_(10);  // a confident teacher, far from the student's near-uniform outputs
  }
  const auto x = torch::rand({64, 1, 4, 4});
  torch::Tensor y;
  {
    torch::NoGradGuard no_grad;
    y = teacher->forward(x).argmax(1);
  }
  auto kl_to_teacher = [&] {
    torch::NoGradGuard no_grad;
    return kl_rows(teacher->forward(x), student->forward(x)).mean().item<double>();
  };
  const double before = kl_to_teacher();
  auto ard = make_ard(teacher, student, 0.9, 2.0, attacks::PGDOptions(0.02).step_size(0.01).steps(2));
  torch::optim::Adam optimizer(ard.parameters(), 0.01);
  std::vector<std::pair<torch::Tensor, torch::Tensor>> loader;
  for (int64_t b = 0; b < 4; ++b)
    loader.emplace_back(x.slice(0, b * 16, (b + 1) * 16), y.slice(0, b * 16, (b + 1) * 16));
  const auto summary = ard.fit(loader, optimizer, 15);
  CHECK(summary.epochs_completed == 15);
  CHECK(summary.epochs.back().mean_loss < summary.epochs.front().mean_loss);
  const double after = kl_to_teacher();
  INFO("KL before " << before << ", after " << after);
  CHECK(after < 0.5 * before);
}

namespace {
struct CountingCallback {
  int epochs_begun = 0;
  int batches = 0;
  int epochs_ended = 0;
  int stop_after_batches = 1000;
  template <typename T>
  void on_epoch_begin(T& /*trainer*/, int64_t /*epoch*/) {
    ++epochs_begun;
  }
  template <typename T>
  bool on_batch_end(T& /*trainer*/, int64_t /*batch*/, const StepResult& r) {
    CHECK(std::isfinite(r.loss));
    return ++batches >= stop_after_batches;
  }
  template <typename T>
  void on_epoch_end(T& /*trainer*/, int64_t /*epoch*/, const EpochSummary& /*summary*/) {
    ++epochs_ended;
  }
};
struct NoHooks {};

struct PairDataset : torch::data::datasets::Dataset<PairDataset> {
  PairDataset(torch::Tensor x, torch::Tensor y) : x(std::move(x)), y(std::move(y)) {}
  torch::data::Example<> get(size_t i) override { return {x[static_cast<int64_t>(i)], y[static_cast<int64_t>(i)]}; }
  torch::optional<size_t> size() const override { return static_cast<size_t>(x.size(0)); }
  torch::Tensor x;
  torch::Tensor y;
};
}  // namespace

TEST_CASE("fit calls the hooks a callback has, and stops when one returns true", "[distill][fit]") {
  Setup s;
  auto kd = make_kd(s.teacher, s.student);
  torch::optim::SGD optimizer(kd.parameters(), 0.01);
  std::vector<std::pair<torch::Tensor, torch::Tensor>> loader(3, {s.x, s.y});
  CountingCallback all;
  const auto full = kd.fit(loader, optimizer, 2, all, NoHooks{});
  CHECK(all.epochs_begun == 2);
  CHECK(all.batches == 6);
  CHECK(all.epochs_ended == 2);
  CHECK_FALSE(full.stopped_early);

  CountingCallback stopper;
  stopper.stop_after_batches = 4;
  const auto stopped = kd.fit(loader, optimizer, 5, stopper);
  CHECK(stopped.stopped_early);
  CHECK(stopper.batches == 4);
  CHECK(stopped.epochs_completed == 1);

  SECTION("a resumed run starts at epoch N, and the callbacks see the real numbers") {
    struct Epochs_ {
      std::vector<int64_t> seen;
      void on_epoch_begin(decltype(kd)&, int64_t epoch) { seen.push_back(epoch); }
    } recorder;
    const auto resumed = kd.fit(loader, optimizer, Epochs{2, 4}, recorder);
    CHECK(recorder.seen == std::vector<int64_t>{2, 3});
    CHECK(resumed.epochs_completed == 2);
    CHECK(resumed.epochs.front().epoch == 2);
  }
  SECTION("a loader with no batch is refused, not counted a success") {
    std::vector<std::pair<torch::Tensor, torch::Tensor>> empty;
    CHECK_THROWS_WITH(kd.fit(empty, optimizer, 1), ContainsSubstring("ardent::fit") && ContainsSubstring("'loader'") &&
                                                       ContainsSubstring("no batch in epoch 0"));
  }
  SECTION("a torch::data loader works too") {
    auto data_loader = torch::data::make_data_loader(PairDataset(s.x, s.y), torch::data::DataLoaderOptions(4));
    CountingCallback counter;
    kd.fit(*data_loader, optimizer, 1, counter);
    CHECK(counter.batches == 2);
  }
}

TEST_CASE("adversarial training: Madry and TRADES", "[distill][trainer]") {
  Setup s;
  SECTION("TRADES' loss is CE(f(x), y) + beta KL(f(x) || f(x'))") {
    // TRADES starts at x + 0.001 N(0, 1): at x itself the KL has a zero gradient.
    auto trainer = AdversarialTrainer(s.student, attacks::PGD(attacks::PGDOptions(kAttack).start_noise(0.001)),
                                      recipes::trades(3.0));
    torch::optim::SGD optimizer(trainer.parameters(), 0.0);  // learning rate 0: the model stays put
    trainer.train();
    torch::manual_seed(5);
    const auto r = trainer.step(s.x, s.y, optimizer);
    torch::manual_seed(5);
    const auto start = (s.x + 0.001 * torch::randn_like(s.x)).clamp(0, 1);
    torch::Tensor clean;
    {
      torch::NoGradGuard no_grad;
      s.student->eval();
      clean = s.student->forward(s.x);
    }
    const auto x_adv = ascend([&](const torch::Tensor& z) { return kl_rows(clean, s.student->forward(z)).sum(); }, s.x,
                              0.1, 0.03, 4, start);
    s.student->train();
    torch::NoGradGuard no_grad;
    const auto logits = s.student->forward(s.x);
    const double expected = torch::nn::functional::cross_entropy(logits, s.y).item<double>() +
                            3.0 * kl_rows(logits, s.student->forward(x_adv)).mean().item<double>();
    CHECK(r.loss == Approx(expected).epsilon(1e-5));
  }
  SECTION("the method is a type: MadryTrainer and TradesTrainer differ, and TRADES checks beta") {
    using Student = decltype(s.student);
    STATIC_REQUIRE(!std::is_same_v<MadryTrainer<Student>, TradesTrainer<Student>>);
    STATIC_REQUIRE(std::is_same_v<TradesTrainer<Student>::TrainingMethod, training_methods::TRADES>);
    CHECK_THROWS_WITH(recipes::trades(-1.0), ContainsSubstring("'beta'") && ContainsSubstring("-1"));
    CHECK(make_trades_trainer(s.student, 3.0, kAttack).method().beta() == 3.0);
  }
  SECTION("Madry training lowers the adversarial loss") {
    auto trainer = make_madry_trainer(s.student, kAttack);
    torch::optim::Adam optimizer(trainer.parameters(), 0.02);
    const double first = trainer.step(s.x, s.y, optimizer).loss;
    double last = first;
    for (int i = 0; i < 40; ++i) last = trainer.step(s.x, s.y, optimizer).loss;
    CHECK(last < first);
  }
}

TEST_CASE("the Distiller rejects bad input with the argument named", "[distill][errors]") {
  Setup s;
  torch::optim::SGD optimizer(s.student->parameters(), 0.1);
  CHECK_THROWS_WITH(recipes::ard(1.5), ContainsSubstring("'alpha'"));
  CHECK_THROWS_WITH(recipes::kd(-0.1), ContainsSubstring("'alpha'"));
  CHECK_THROWS_WITH(make_ard(s.teacher, s.student, 1.0, 0.0), ContainsSubstring("'temperature'"));
  CHECK_THROWS_WITH(Distiller(s.teacher, s.student, attacks::None(), losses::KL(), targets::Logits{},
                              DistillerOptions().adversarial_weight(0)),
                    ContainsSubstring("are all 0"));
  CHECK_THROWS_WITH(
      Distiller(s.teacher, s.student, attacks::PGD(kAttack), losses::KL(), targets::Logits{}, recipes::ard_official()),
      ContainsSubstring("'attack'") && ContainsSubstring("eval_mode(false)"));

  auto ard = make_ard(s.teacher, s.student, 1.0, 30.0, kAttack);
  CHECK_THROWS_WITH(ard.step(s.x, torch::full({8}, 3, torch::kLong), optimizer),
                    ContainsSubstring("'labels'") && ContainsSubstring("[0, 3)"));
  CHECK_THROWS_WITH(ard.step(s.x, s.y.to(torch::kInt), optimizer), ContainsSubstring("'labels'"));
  CHECK_THROWS_WITH(ard.step(s.x.to(torch::kInt), s.y, optimizer), ContainsSubstring("'x'"));

  // Teacher and student that no batch fits both: refused when the Distiller is built, naming the pair.
  Net in_double(3);
  in_double->to(torch::kDouble);
  CHECK_THROWS_WITH(make_ard(s.teacher, in_double, 1.0, 30.0, kAttack), ContainsSubstring("'student'") &&
                                                                            ContainsSubstring("dtype Double") &&
                                                                            ContainsSubstring("teacher's dtype Float"));

  auto mismatched = make_ard(s.teacher, Net(5), 1.0, 30.0, kAttack);
  CHECK_THROWS_WITH(mismatched.step(s.x, s.y, optimizer),
                    ContainsSubstring("'student'") && ContainsSubstring("5 classes") && ContainsSubstring("3"));
}

TEST_CASE("train_loop passes user callbacks the real epoch numbers, and one can stop it", "[distill][fit]") {
  Setup s;
  auto kd = make_kd(s.teacher, s.student);
  torch::optim::SGD optimizer(kd.parameters(), 0.01);
  data::ShuffledBatches batches(s.x, s.y, 4, 0);
  train::LoopOptions options;
  options.epochs = 5;
  options.progress_every = 0;
  struct StopAfterSecond {
    std::vector<int64_t> begun;
    void on_epoch_begin(decltype(kd)&, int64_t epoch) { begun.push_back(epoch); }
    bool on_epoch_end(decltype(kd)&, int64_t epoch, const EpochSummary&) { return epoch == 1; }
  } callback;
  const auto history = train::train_loop(kd, batches, optimizer, {}, options, callback);
  CHECK(callback.begun == std::vector<int64_t>{0, 1});
  CHECK(history.size() == 2);
}
