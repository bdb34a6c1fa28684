#pragma once
// AdaAD's adversary (Huang et al., CVPR 2023): x' = argmax_{x' in B(x, eps)} KL(T(x') || S(x')),
// gradient through both networks. An attack that maximises an objective
// (perturb(model, x, objective)): PGD, APGD, FGSM, BIM, MIFGSM.

#include "ardent/attacks/kit.hpp"
#include "ardent/distill/adversary.hpp"
#include "ardent/objectives/divergence.hpp"

#include <functional>

namespace ardent::adversaries {

namespace detail {

/// Teacher and student side by side, as one model whose logits are [T(x), S(x)]: lets any attack
/// maximise an objective of both networks at once.
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
    return objectives::kl_divergence(torch::log_softmax(halves[0], 1), torch::log_softmax(halves[1], 1));
  }
};

}  // namespace detail

/// The pair holds no parameters of its own, so the attack cannot take the networks' parameters
/// out of autograd: done here (Speedups::freeze_parameters).
struct KLToAdversarialTeacher {
  template <typename Attack, Model Teacher, Model Student>
  requires requires(Attack& a, detail::TeacherStudent& both, const torch::Tensor& x) {
    { a.perturb(both, x, detail::SideBySideKL{}) } -> std::same_as<torch::Tensor>;
  }
  torch::Tensor perturb(Attack& attack, Teacher& teacher, Student& student, const AdversaryInputs& in) const {
    const attacks::FrozenParameters frozen_teacher(teacher);
    const attacks::FrozenParameters frozen_student(student);
    detail::TeacherStudent both([&teacher](const torch::Tensor& input) { return forward(teacher, input); },
                                [&student](const torch::Tensor& input) { return forward(student, input); });
    return attack.perturb(both, in.x, detail::SideBySideKL{});
  }
};

}  // namespace ardent::adversaries
