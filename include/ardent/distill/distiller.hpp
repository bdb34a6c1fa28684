#pragma once
// ardent::Distiller: one generic adversarially robust distillation step, composed of policies.
//
//   Distiller<Teacher, Student, Attack, DistillLoss, SoftTarget, Adversary>
//       d(teacher, student, attack, loss, target, recipe);
//   StepResult r = d.step(x, y, optimizer);
//
// Every policy after the models has ARD's default (attacks::PGD, losses::KL, targets::Logits,
// adversaries::StudentCrossEntropy), as ensmallen's SGD<UpdatePolicy = VanillaUpdate>, and
// `Distiller<Teacher, Student> d(teacher, student)` is ARD with the paper's settings: PGD-10 of
// 2/255 within 8/255 against the labels (CIFAR-10's budget), KL at T = 30, alpha 1 (the same as
// make_ard); `Distiller<Teacher, Student> d(teacher, student, attacks::PGDOptions(0.1))` is the
// same with another budget (Fashion-MNIST's 0.1, say).
//
// The step (see ardent/distill/options.hpp for the formula) runs the attack on the student, the
// teacher without gradients and in eval mode (it is never changed, BatchNorm statistics included),
// the loss terms with non-zero weight, backward and the optimizer step.

#include "ardent/attacks/kit.hpp"
#include "ardent/attacks/pgd.hpp"
#include "ardent/core/attack.hpp"
#include "ardent/core/check.hpp"
#include "ardent/core/distill_loss.hpp"
#include "ardent/core/mode_guard.hpp"
#include "ardent/core/soft_target.hpp"
#include "ardent/distill/adversaries/student_cross_entropy.hpp"
#include "ardent/distill/adversary.hpp"
#include "ardent/distill/options.hpp"
#include "ardent/losses/kl.hpp"
#include "ardent/targets/logits.hpp"
#include "ardent/train/fit.hpp"

#include <cmath>

namespace ardent {

/// The CIFAR-10 budget of the ARD, RSLAD and AdaAD papers: 10 steps of 2/255 within 8/255 (Linf).
inline attacks::PGDOptions paper_pgd() { return attacks::PGDOptions(8.0 / 255).step_size(2.0 / 255).steps(10); }

namespace detail {

template <typename A>
concept HasEvalModeOption = requires(const A& attack) {
  { attack.options().eval_mode() } -> std::convertible_to<bool>;
};

template <typename T>
concept HasTrainMode = requires(T& target) {
  target.train(true);
};

template <typename>
inline constexpr bool always_false = false;

}  // namespace detail

template <Model Teacher, Model Student, typename AttackPolicy = attacks::PGD, typename LossPolicy = losses::KL,
          typename TargetPolicy = targets::Logits, typename AdversaryPolicy = adversaries::StudentCrossEntropy>
class Distiller {
  static_assert(Attack<AttackPolicy, Student>,
                "ardent::Distiller: the attack policy is not an ardent::Attack for this student: it needs a member "
                "perturb(student, x, labels) returning torch::Tensor (see docs/attacks.md)");
  static_assert(SoftTargetFor<TargetPolicy, Teacher, Student>,
                "ardent::Distiller: the soft target policy is not an ardent::SoftTarget for these models: it needs a "
                "type View and members teacher_view(teacher, x) and student_view(student, x) returning it "
                "(see docs/targets.md)");
  static_assert(DistillLoss<LossPolicy>,
                "ardent::Distiller: the loss policy is not an ardent::DistillLoss: it needs a call operator "
                "loss(student_view, teacher_view) returning a scalar torch::Tensor (see docs/losses.md)");
  static_assert(LossAccepts<LossPolicy, typename TargetPolicy::View>,
                "ardent::Distiller: the loss has no call operator for the views of this soft target. KL and CE "
                "compare class distributions and cannot be used with targets::Features: use ardent::losses::MSE");
  static_assert(AdversaryFor<AdversaryPolicy, AttackPolicy, Teacher, Student>,
                "ardent::Distiller: the attack cannot serve the recipe's adversary: KLToCleanTeacher "
                "(recipes::rslad) and KLToAdversarialTeacher (recipes::adaad) need an attack with a member "
                "perturb(model, x, objective) (PGD, APGD, FGSM, BIM, MIFGSM), not one that takes labels only "
                "(CW, CWLinf); a user's adversary needs a member perturb(attack, teacher, student, "
                "inputs) returning torch::Tensor (see docs/distiller.md)");

 public:
  using View = typename TargetPolicy::View;
  using Adversary = AdversaryPolicy;

  /// ARD with the paper's settings: PGD-10 of 2/255 within 8/255 against the labels, KL at T = 30,
  /// alpha 1 (for the default policies only; make_ard builds the same).
  Distiller(Teacher teacher, Student student) requires std::same_as<AttackPolicy, attacks::PGD> &&
      std::same_as<LossPolicy, losses::KL> && std::same_as<TargetPolicy, targets::Logits> &&
      std::same_as<AdversaryPolicy, adversaries::StudentCrossEntropy>
      : Distiller(std::move(teacher), std::move(student), attacks::PGD(paper_pgd()),
                  losses::KL(losses::KLOptions().temperature(30.0)), targets::Logits{}, Recipe<AdversaryPolicy>()) {}

  /// ARD with the paper's loss (KL at T = 30, alpha 1) and the attack budget `attack` (PGD against
  /// the labels): `Distiller<T, S> d(teacher, student, attacks::PGDOptions(0.1).step_size(0.025))`.
  /// The budget belongs to the data set and the teacher: use the one the teacher was trained at.
  Distiller(Teacher teacher, Student student, attacks::PGDOptions attack) requires
      std::same_as<AttackPolicy, attacks::PGD> && std::same_as<LossPolicy, losses::KL> &&
      std::same_as<TargetPolicy, targets::Logits> && std::same_as<AdversaryPolicy, adversaries::StudentCrossEntropy>
      : Distiller(std::move(teacher), std::move(student), attacks::PGD(attack),
                  losses::KL(losses::KLOptions().temperature(30.0)), targets::Logits{}, Recipe<AdversaryPolicy>()) {}

  /// The recipe's adversary is the Distiller's (a recipe written for another one does not
  /// compile; with class template argument deduction the recipe sets it).
  Distiller(Teacher teacher, Student student, AttackPolicy attack, LossPolicy loss, TargetPolicy target,
            Recipe<AdversaryPolicy> recipe = {})
      : Distiller(std::move(teacher), std::move(student), std::move(attack), std::move(loss), std::move(target),
                  static_cast<const DistillerOptions&>(recipe)) {}

  /// Plain options: x' is made by AdversaryPolicy (ARD's, by default).
  Distiller(Teacher teacher, Student student, AttackPolicy attack, LossPolicy loss, TargetPolicy target,
            const DistillerOptions& options)
      : teacher_(std::move(teacher)),
        student_(std::move(student)),
        attack_(std::move(attack)),
        loss_(std::move(loss)),
        target_(std::move(target)),
        options_(options) {
    check_options(options_);
    check_model_pair();
    if constexpr (detail::HasEvalModeOption<AttackPolicy>) {
      if (options_.attack_mode() == AttackMode::Train && attack_.options().eval_mode()) {
        fail_argument("ardent::Distiller", "attack",
                      "has eval_mode(true) while the options ask for a train-mode attack (AttackMode::Train, as in "
                      "recipes::ard_official), expected an attack built with .eval_mode(false)");
      }
    }
    if constexpr (detail::HasBind<TargetPolicy, Teacher, Student>) target_.bind(teacher_, student_);
  }

  /// A recipe written for another adversary: refused at compile time.
  template <typename Other>
  requires(!std::same_as<Other, AdversaryPolicy>)
      Distiller(Teacher, Student, AttackPolicy, LossPolicy, TargetPolicy, const Recipe<Other>&) {
    static_assert(detail::always_false<Other>,
                  "ardent::Distiller: the recipe was written for another adversary than the Distiller's "
                  "last template parameter: name the recipe's adversary there (e.g. Distiller<T, S, attacks::PGD, "
                  "losses::KL, targets::Logits, adversaries::KLToCleanTeacher> for recipes::rslad()), use "
                  "the aliases RSLAD<T, S> and AdaAD<T, S>, or let class template argument deduction take it");
  }

  /// The step for a batch whose examples have the data-set indices `indices` (int64 [B]): an attack
  /// that keeps per-example state (attacks::WarmStart) is told them first. train::fit calls this
  /// overload with the indices data::ShuffledBatches gives.
  StepResult step(const torch::Tensor& x, const torch::Tensor& y, torch::optim::Optimizer& optimizer,
                  const torch::Tensor& indices) {
    detail::tell_examples(attack_, indices);
    return step(x, y, optimizer);
  }

  /// One training step on the batch (x, y); returns the loss and its terms.
  StepResult step(const torch::Tensor& x, const torch::Tensor& y, torch::optim::Optimizer& optimizer) {
    constexpr std::string_view name = "ardent::Distiller::step";
    // x is checked here once; the attack sees the same tensor and skips its own check.
    double clip_min = -std::numeric_limits<double>::infinity();
    double clip_max = std::numeric_limits<double>::infinity();
    if constexpr (HasPixelBox<AttackPolicy>) {
      clip_min = attack_.options().clip_min();
      clip_max = attack_.options().clip_max();
    }
    check_model_input(name, "teacher", teacher_, x);
    check_model_input(name, "student", student_, x);
    check_input_batch(name, "x", x, clip_min, clip_max);
    check_labels(name, "labels", y, x.size(0), num_classes(x));
    const CheckedInput checked(x, clip_min, clip_max);

    const auto& o = options_;
    const bool adversarial = o.adversarial_weight() > 0;
    const bool clean_view_of_teacher = o.clean_weight() > 0 ||
                                       (adversarial && o.teacher_input() == TeacherInput::Clean);
    const ModeGuard teacher_mode(teacher_);

    // The teacher, once per batch, without gradients.
    torch::Tensor teacher_logits;  // clean, when the attack or a logits-based view needs it
    View teacher_clean;
    {
      torch::NoGradGuard no_grad;
      const bool need_logits = adversarial && uses_clean_teacher_logits<AdversaryPolicy>;
      if constexpr (detail::HasViewFromLogits<TargetPolicy>) {
        if (need_logits || clean_view_of_teacher) teacher_logits = forward(teacher_, x);
        if (clean_view_of_teacher) teacher_clean = target_.view_from_logits(teacher_logits);
      } else {
        if (need_logits) teacher_logits = forward(teacher_, x);
        if (clean_view_of_teacher) teacher_clean = target_.teacher_view(teacher_, x);
      }
    }

    StepResult result;
    result.batch_size = x.size(0);
    torch::Tensor loss;
    auto add = [&loss](const torch::Tensor& term) { loss = loss.defined() ? loss + term : term; };

    if (adversarial) {
      const auto x_adv = make_adversarial(x, y, teacher_logits);
      View teacher_view;
      if (o.teacher_input() == TeacherInput::Clean) {
        teacher_view = teacher_clean;
      } else {
        torch::NoGradGuard no_grad;
        teacher_view = target_.teacher_view(teacher_, x_adv);
      }
      const auto term = o.adversarial_weight() * loss_(target_.student_view(student_, x_adv), teacher_view);
      result.adversarial_distill = term.template item<double>();
      add(term);
    }
    if (o.clean_weight() > 0 || o.ce_weight() > 0) {
      torch::Tensor student_logits;
      View student_clean;
      if constexpr (detail::HasViewFromLogits<TargetPolicy>) {
        student_logits = forward(student_, x);
        if (o.clean_weight() > 0) student_clean = target_.view_from_logits(student_logits);
      } else {
        if (o.clean_weight() > 0) student_clean = target_.student_view(student_, x);
        if (o.ce_weight() > 0) student_logits = forward(student_, x);
      }
      if (o.clean_weight() > 0) {
        const auto term = o.clean_weight() * loss_(student_clean, teacher_clean);
        result.clean_distill = term.template item<double>();
        add(term);
      }
      if (o.ce_weight() > 0) {
        const auto term = o.ce_weight() * torch::nn::functional::cross_entropy(student_logits, y);
        result.cross_entropy = term.template item<double>();
        add(term);
      }
    }

    // A non-finite term would make every parameter NaN at the optimizer step: refuse it before.
    for (const auto& [term, value] :
         {std::pair{"adversarial_distill", result.adversarial_distill},
          std::pair{"clean_distill", result.clean_distill}, std::pair{"cross_entropy", result.cross_entropy}}) {
      if (value && !std::isfinite(*value)) {
        TORCH_CHECK(false, fmt::format("{}: the loss term '{}' is {}, expected a finite value; the student's "
                                       "parameters are left unchanged (check the teacher, the inputs and the "
                                       "learning rate)",
                                       name, term, *value));
      }
    }

    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    result.loss = loss.template item<double>();
    return result;
  }

  /// Trains for `epochs` over `loader` (see ardent/train/fit.hpp for loaders and callbacks).
  template <typename Loader, typename EpochCount, typename... Callbacks>
  train::FitSummary fit(Loader& loader, torch::optim::Optimizer& optimizer, EpochCount epochs,
                        Callbacks&&... callbacks) {
    return train::fit(*this, loader, optimizer, epochs, std::forward<Callbacks>(callbacks)...);
  }

  /// What the optimizer trains: the student's parameters and the soft target's (connectors).
  std::vector<torch::Tensor> parameters() {
    auto result = ardent::parameters(student_);
    if constexpr (detail::HasTargetParameters<TargetPolicy>) {
      for (auto& p : target_.parameters()) result.push_back(p);
    }
    return result;
  }

  /// Student (and connector) mode; the teacher stays in eval mode whatever this says.
  void train(bool on = true) {
    train_module(student_, on);
    if constexpr (detail::HasTrainMode<TargetPolicy>) target_.train(on);
  }
  void eval() { train(false); }

  Teacher& teacher() { return teacher_; }
  Student& student() { return student_; }
  const AttackPolicy& attack() const { return attack_; }
  const LossPolicy& loss() const { return loss_; }
  TargetPolicy& target() { return target_; }
  const DistillerOptions& options() const { return options_; }

 private:
  /// Teacher and student on one device with one floating-point dtype: a batch must fit both, and
  /// LibTorch's own errors would name neither network (a user then converts x to one, then the other).
  void check_model_pair() {
    const auto teacher_device = device_of(teacher_);
    const auto student_device = device_of(student_);
    if (teacher_device && student_device && *teacher_device != *student_device) {
      fail_argument("ardent::Distiller", "student",
                    fmt::format("is on device {}, expected the teacher's device {} (move one: student->to({}))",
                                student_device->str(), teacher_device->str(), teacher_device->str()));
    }
    const auto teacher_dtype = dtype_of(teacher_);
    const auto student_dtype = dtype_of(student_);
    if (teacher_dtype && student_dtype && *teacher_dtype != *student_dtype) {
      fail_argument("ardent::Distiller", "student",
                    fmt::format("has parameter dtype {}, expected the teacher's dtype {} (convert one: "
                                "student->to(torch::k{}))",
                                std::string(c10::toString(*student_dtype)), std::string(c10::toString(*teacher_dtype)),
                                std::string(c10::toString(*teacher_dtype))));
    }
  }

  /// x' from the attack, as the adversary directs it, with the student in the recipe's mode.
  torch::Tensor make_adversarial(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& teacher_logits) {
    const ModeGuard student_mode(student_, /*eval=*/options_.attack_mode() == AttackMode::Eval);
    if (options_.attack_mode() == AttackMode::Train) train_module(student_, true);
    return adversary_.perturb(attack_, teacher_, student_, AdversaryInputs{x, y, teacher_logits});
  }

  /// The class count, checked once to agree between teacher and student, from one forward pass of
  /// each on the first sample of the first batch (in eval mode, without gradients): both must
  /// return finite logits [1, C].
  int64_t num_classes(const torch::Tensor& x) {
    if (num_classes_ == 0) {
      torch::NoGradGuard no_grad;
      const ModeGuard teacher_mode(teacher_);
      const ModeGuard student_mode(student_);
      const auto probe = x.slice(0, 0, 1);
      const int64_t teacher_classes = probe_classes(teacher_, "teacher", probe, x);
      const int64_t student_classes = probe_classes(student_, "student", probe, x);
      if (teacher_classes != student_classes) {
        fail_argument("ardent::Distiller", "student",
                      fmt::format("has {} classes, expected the teacher's {}", student_classes, teacher_classes));
      }
      num_classes_ = teacher_classes;
    }
    return num_classes_;
  }

  /// The class count of one model's logits for the probe; errors name the user's batch shape.
  template <Model M>
  static int64_t probe_classes(M& model, std::string_view role, const torch::Tensor& probe, const torch::Tensor& x) {
    constexpr std::string_view name = "ardent::Distiller::step";
    torch::Tensor logits;
    try {
      logits = forward(model, probe);
    } catch (const std::exception& e) {
      const std::string what = e.what();
      TORCH_CHECK(false, fmt::format("{}: the {} failed on the batch x of shape {}: {}", name, role, shape_string(x),
                                     what.substr(0, what.find('\n'))));
    }
    if (!logits.defined() || logits.dim() != 2 || logits.size(0) != 1 || logits.size(1) < 2 ||
        !logits.is_floating_point()) {
      TORCH_CHECK(false, fmt::format("{}: the {} returned shape {} for the first sample of x (x has shape {}), "
                                     "expected floating-point logits [1, C] with C >= 2 (one row per sample)",
                                     name, role, shape_string(logits), shape_string(x)));
    }
    if (!torch::isfinite(logits).all().template item<bool>()) {
      TORCH_CHECK(false, fmt::format("{}: the {}'s logits contain NaN or Inf (are its weights finite?); nothing "
                                     "was changed",
                                     name, role));
    }
    return logits.size(1);
  }

  Teacher teacher_;
  Student student_;
  AttackPolicy attack_;
  LossPolicy loss_;
  TargetPolicy target_;
  DistillerOptions options_;
  AdversaryPolicy adversary_{};
  int64_t num_classes_ = 0;
};

/// The recipe's adversary becomes the Distiller's (class template argument deduction).
template <Model Teacher, Model Student, typename AttackPolicy, typename LossPolicy, typename TargetPolicy,
          typename AdversaryPolicy>
Distiller(Teacher, Student, AttackPolicy, LossPolicy, TargetPolicy, Recipe<AdversaryPolicy>)
    -> Distiller<Teacher, Student, AttackPolicy, LossPolicy, TargetPolicy, AdversaryPolicy>;

}  // namespace ardent
