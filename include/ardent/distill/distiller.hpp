#pragma once
// ardent::Distiller: one generic adversarially robust distillation step, composed of policies.
//
//   Distiller<Teacher, Student, Attack, DistillLoss, SoftTarget> d(teacher, student, attack, loss, target, options);
//   StepResult r = d.step(x, y, optimizer);
//
// The step (see ardent/distill/options.hpp for the formula) runs the attack on the student, the
// teacher without gradients and in eval mode (it is never changed, BatchNorm statistics included),
// the loss terms with non-zero weight, backward and the optimizer step.

#include "ardent/attacks/detail/gradient.hpp"
#include "ardent/core/attack.hpp"
#include "ardent/core/check.hpp"
#include "ardent/core/mode_guard.hpp"
#include "ardent/distill/fit.hpp"
#include "ardent/distill/options.hpp"
#include "ardent/losses/distill_loss.hpp"
#include "ardent/targets/soft_target.hpp"

#include <functional>

namespace ardent {

namespace detail {

/// Teacher and student side by side, as one model whose logits are [T(x), S(x)]: lets any attack
/// maximise an objective of both networks at once (AdaAD's KL(T(x') || S(x'))).
class TeacherStudentImpl : public torch::nn::Module {
 public:
  using Forward = std::function<torch::Tensor(const torch::Tensor&)>;
  TeacherStudentImpl(Forward teacher, Forward student) : teacher_(std::move(teacher)), student_(std::move(student)) {}
  torch::Tensor forward(const torch::Tensor& x) { return torch::cat({teacher_(x), student_(x)}, 1); }

 private:
  Forward teacher_;
  Forward student_;
};
TORCH_MODULE(TeacherStudent);

/// Per-sample KL(softmax(t) || softmax(s)) of logits [T(x), S(x)] laid side by side, with
/// gradients through both halves.
struct SideBySideKL {
  torch::Tensor operator()(const torch::Tensor& logits) const {
    const auto halves = logits.chunk(2, 1);
    const auto log_p_teacher = torch::log_softmax(halves[0], 1);
    return (log_p_teacher.exp() * (log_p_teacher - torch::log_softmax(halves[1], 1))).sum(1);
  }
};

template <typename A>
concept HasEvalModeOption = requires(const A& attack) {
  { attack.options().eval_mode() } -> std::convertible_to<bool>;
};

template <typename A>
concept HasPixelBox = requires(const A& attack) {
  { attack.options().clip_min() } -> std::convertible_to<double>;
  { attack.options().clip_max() } -> std::convertible_to<double>;
};

template <typename T>
concept HasTrainMode = requires(T& target) { target.train(true); };

}  // namespace detail

template <Model Teacher, Model Student, typename AttackPolicy, typename LossPolicy, typename TargetPolicy>
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

 public:
  using View = typename TargetPolicy::View;

  Distiller(Teacher teacher, Student student, AttackPolicy attack, LossPolicy loss, TargetPolicy target,
            DistillerOptions options = {})
      : teacher_(std::move(teacher)),
        student_(std::move(student)),
        attack_(std::move(attack)),
        loss_(std::move(loss)),
        target_(std::move(target)),
        options_(options) {
    check_options(options_);
    if constexpr (detail::HasEvalModeOption<AttackPolicy>) {
      if (options_.attack_mode() == AttackMode::Train && attack_.options().eval_mode()) {
        fail_argument("ardent::Distiller", "attack",
                      "has eval_mode(true) while the options ask for a train-mode attack (AttackMode::Train, as in "
                      "recipes::ard_official), expected an attack built with .eval_mode(false)");
      }
    }
    if constexpr (detail::HasBind<TargetPolicy, Teacher, Student>) target_.bind(teacher_, student_);
  }

  /// One training step on the batch (x, y); returns the loss and its terms.
  StepResult step(const torch::Tensor& x, const torch::Tensor& y, torch::optim::Optimizer& optimizer) {
    constexpr std::string_view name = "ardent::Distiller::step";
    if constexpr (detail::HasPixelBox<AttackPolicy>) {
      check_input_batch(name, "x", x, attack_.options().clip_min(), attack_.options().clip_max());
    } else {
      check_input_batch(name, "x", x, -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity());
    }
    check_labels(name, "labels", y, x.size(0), num_classes(x));

    const auto& o = options_;
    const bool adversarial = o.adversarial_weight() > 0;
    const bool clean_view_of_teacher = o.clean_weight() > 0 || (adversarial && o.teacher_input() == TeacherInput::Clean);
    const ModeGuard teacher_mode(teacher_);

    // The teacher, once per batch, without gradients.
    torch::Tensor teacher_logits;  // clean, when the attack or a logits-based view needs it
    View teacher_clean;
    {
      torch::NoGradGuard no_grad;
      const bool need_logits = adversarial && o.attack_objective() == AttackObjective::KLToCleanTeacher;
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

    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    result.loss = loss.template item<double>();
    return result;
  }

  /// Trains for `epochs` over `loader` (see ardent/distill/fit.hpp for loaders and callbacks).
  template <typename Loader, typename... Callbacks>
  FitSummary fit(Loader& loader, torch::optim::Optimizer& optimizer, int64_t epochs, Callbacks&&... callbacks) {
    return ardent::fit(*this, loader, optimizer, epochs, std::forward<Callbacks>(callbacks)...);
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
  /// x' from the attack, maximising the recipe's objective, with the student in the recipe's mode.
  torch::Tensor make_adversarial(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& teacher_logits) {
    const ModeGuard student_mode(student_, /*eval=*/options_.attack_mode() == AttackMode::Eval);
    if (options_.attack_mode() == AttackMode::Train) train_module(student_, true);
    switch (options_.attack_objective()) {
      case AttackObjective::StudentCrossEntropy:
        return attack_.perturb(student_, x, y);
      case AttackObjective::KLToCleanTeacher:
        if constexpr (requires { attack_.perturb(student_, x, objectives::KLDivergence{teacher_logits}); }) {
          return attack_.perturb(student_, x, objectives::KLDivergence{teacher_logits});
        }
        break;
      case AttackObjective::KLToAdversarialTeacher: {
        // The pair holds no parameters of its own, so the attack cannot take the networks'
        // parameters out of autograd: done here (Speedups::freeze_parameters), restored on exit.
        const attacks::detail::FrozenParameters frozen_teacher(teacher_);
        const attacks::detail::FrozenParameters frozen_student(student_);
        detail::TeacherStudent both([this](const torch::Tensor& input) { return forward(teacher_, input); },
                                    [this](const torch::Tensor& input) { return forward(student_, input); });
        if constexpr (requires { attack_.perturb(both, x, detail::SideBySideKL{}); }) {
          return attack_.perturb(both, x, detail::SideBySideKL{});
        }
        break;
      }
    }
    fail_argument("ardent::Distiller", "attack",
                  "accepts labels only, expected an attack that maximises an objective "
                  "(perturb(model, x, objective)), which the KL attack objectives of RSLAD and AdaAD need");
  }

  /// The class count, checked once to agree between teacher and student.
  int64_t num_classes(const torch::Tensor& x) {
    if (num_classes_ == 0) {
      for (const auto& [role, device] : {std::pair{"teacher", device_of(teacher_)}, std::pair{"student", device_of(student_)}}) {
        if (device && *device != x.device()) {
          fail_argument("ardent::Distiller::step", "x",
                        fmt::format("is on device {}, expected the {}'s device {}", x.device().str(), role, device->str()));
        }
      }
      torch::NoGradGuard no_grad;
      const ModeGuard teacher_mode(teacher_);
      const ModeGuard student_mode(student_);
      const auto probe = x.slice(0, 0, 1);
      const int64_t teacher_classes = forward(teacher_, probe).size(1);
      const int64_t student_classes = forward(student_, probe).size(1);
      if (teacher_classes != student_classes) {
        fail_argument("ardent::Distiller", "student",
                      fmt::format("has {} classes, expected the teacher's {}", student_classes, teacher_classes));
      }
      num_classes_ = teacher_classes;
    }
    return num_classes_;
  }

  Teacher teacher_;
  Student student_;
  AttackPolicy attack_;
  LossPolicy loss_;
  TargetPolicy target_;
  DistillerOptions options_;
  int64_t num_classes_ = 0;
};

}  // namespace ardent
