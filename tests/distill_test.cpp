// The Distiller, its adversaries and recipes, and the adversarial trainer.
#include "catch.hpp"
#include "tiny_nets.hpp"

#include <ardent/attacks/apgd.hpp>
#include <ardent/attacks/cw.hpp>
#include <ardent/attacks/warm_start.hpp>
#include <ardent/data/batches.hpp>
#include <ardent/distill/factories.hpp>
#include <ardent/losses/ce.hpp>
#include <ardent/losses/mse.hpp>
#include <ardent/models/small_cnn.hpp>
#include <ardent/targets/outputs.hpp>
#include <ardent/train/loop.hpp>

#include <cmath>
#include <limits>

using namespace ardent;
using ardent_test::kAttack;
using ardent_test::Net;
using ardent_test::Setup;

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

  SECTION("a labels-only attack cannot serve the KL adversaries: known at compile time") {
    STATIC_REQUIRE(AdversaryFor<adversaries::StudentCrossEntropy, UniformNoise, Net, Net>);
    STATIC_REQUIRE_FALSE(AdversaryFor<adversaries::KLToCleanTeacher, UniformNoise, Net, Net>);
    STATIC_REQUIRE_FALSE(AdversaryFor<adversaries::KLToAdversarialTeacher, UniformNoise, Net, Net>);
    STATIC_REQUIRE_FALSE(AdversaryFor<adversaries::KLToCleanTeacher, attacks::CW, Net, Net>);
    STATIC_REQUIRE(AdversaryFor<adversaries::StudentCrossEntropy, attacks::CW, Net, Net>);
    STATIC_REQUIRE(AdversaryFor<adversaries::KLToAdversarialTeacher, attacks::PGD, Net, Net>);
  }
}

namespace {

// A user's adversary, written without touching the library: the student attacked toward
// leaving the teacher's clean prediction (CE against argmax T(x) instead of the labels).
struct AgainstTeacherPrediction {
  static constexpr bool uses_clean_teacher_logits = true;
  template <typename A, Model T, Model S>
  requires HasPerturb<A, S> torch::Tensor perturb(A& attack, T& /*teacher*/, S& student, const AdversaryInputs& in)
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
  STATIC_REQUIRE(std::same_as<Distiller<Net, Net>::Adversary, adversaries::StudentCrossEntropy>);
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

TEST_CASE("recipes are types: CTAD takes the recipe's adversary, and a user's adversary needs no library edit",
          "[distill][recipes]") {
  Setup s;
  Distiller rslad(s.teacher, s.student, attacks::PGD(kAttack), losses::KL(), targets::Logits{},
                  recipes::rslad().clean_weight(0.5));
  STATIC_REQUIRE(std::same_as<decltype(rslad)::Adversary, adversaries::KLToCleanTeacher>);
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

TEST_CASE("warm-started ARD resumes bit for bit", "[distill][fast][warm]") {
  // Two epochs in one run, and one epoch + a resumed second: the same student and perturbations.
  const auto dir = std::filesystem::temp_directory_path() / "ardent_fast_resume";
  std::filesystem::remove_all(dir);
  torch::manual_seed(0);
  const auto images = torch::rand({24, 1, 28, 28});
  const auto labels = torch::randint(10, {24}, torch::kLong);
  const auto teacher = models::SmallCNN(models::SmallCNNOptions(10).width(2));
  auto run = [&](const std::string& name, int64_t epochs, bool resume) {
    torch::manual_seed(1);
    models::SmallCNN student(models::SmallCNNOptions(10).width(2));
    attacks::PerturbationMemory memory(attacks::PerturbationMemoryOptions(24, {1, 28, 28}));
    Distiller d(teacher, student, attacks::WarmStart(attacks::PGD(attacks::PGDOptions(0.1).steps(2)), memory),
                losses::KL(losses::KLOptions().temperature(4)), targets::Logits{}, recipes::ard());
    torch::optim::SGD optimizer(d.parameters(), 0.05);
    data::ShuffledBatches batches(images, labels, 8, /*seed=*/5);
    train::LoopOptions loop;
    loop.epochs = epochs;
    loop.checkpoint = dir / name / "checkpoint.pt";
    loop.resume = resume;
    loop.progress_every = 0;
    std::filesystem::create_directories(dir / name);
    train::train_loop(d, batches, optimizer, {{"student", student.ptr()}, {"perturbations", memory.ptr()}}, loop);
    return std::pair{student, memory};
  };
  const auto [whole, whole_memory] = run("whole", 2, false);
  run("split", 1, false);
  const auto [resumed, resumed_memory] = run("split", 2, true);
  CHECK(whole_memory->stored_count() == 24);
  for (const auto& p : whole->named_parameters()) CHECK(torch::equal(p.value(), resumed->named_parameters()[p.key()]));
  CHECK(torch::equal(whole_memory->named_buffers()["perturbations"], resumed_memory->named_buffers()["perturbations"]));
  std::filesystem::remove_all(dir);
}
