#pragma once
// CW-Linf: PGD in the Linf ball on the Carlini-Wagner margin (Carlini and Wagner 2017, adapted to
// Linf as in Madry et al. 2018), what RSLAD, IAD and Fair-ARD report as "CW":
//
//   maximise  min(max_{i != y} Z_i - Z_y, kappa)                 (untargeted)
//   maximise  min(Z_t - max_{i != t} Z_i, kappa)                 (targeted)
//
// The margin works on logits rather than probabilities, so it does not saturate where
// cross-entropy's gradient vanishes.

#include "ardent/attacks/pgd.hpp"

namespace ardent::attacks {

class CWLinf {
 public:
  /// `pgd`: the ball, step size, steps and start of the underlying PGD; `kappa`: the margin's cap.
  explicit CWLinf(PGDOptions pgd, double kappa = 0.0) : pgd_(pgd), kappa_(kappa) {
    check_non_negative("ardent::attacks::CWLinf", "kappa", kappa_);
    if (pgd.norm() != Norm::Linf) {
      fail_argument("ardent::attacks::CWLinf", "norm",
                    "is L2, expected Linf (for an L2 budget use ardent::attacks::CW)");
    }
  }

  const PGDOptions& options() const { return pgd_.options(); }
  double kappa() const { return kappa_; }

  /// `goal`: labels (untargeted) or ardent::Targeted{targets}. CW-Linf is PGD on the
  /// Carlini-Wagner margin of the classes, so it takes no other objective (the constraint makes
  /// `requires { attack.perturb(model, x, objective); }` false); to maximise another objective
  /// use ardent::attacks::PGD directly.
  template <Model M, LabelsOrTargets G>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const G& goal) const {
    // The labels are saved for backward, which an InferenceMode tensor forbids: copy them outside it.
    check_call("ardent::attacks::CWLinf", model, x, goal, options().clip_min(), options().clip_max());
    c10::InferenceMode inference_off(false);
    if constexpr (std::same_as<G, Targeted>) {
      return pgd_.perturb(model, x, objectives::TargetedCWMargin{goal.targets.clone(), kappa_});
    } else {
      return pgd_.perturb(model, x, objectives::CWMargin{goal.clone(), kappa_});
    }
  }

 private:
  PGD pgd_;
  double kappa_;
};

static_assert(Attack<CWLinf>);
static_assert(TargetedAttack<CWLinf>);

/// The CW-Linf preset: `steps` steps of 2.5 eps / steps (Madry et al.'s rule) from a random start.
inline CWLinf cw_linf(double epsilon, int64_t steps = 20, double kappa = 0.0) {
  check_non_negative("ardent::attacks::cw_linf", "epsilon", epsilon);
  if (steps < 1) fail_argument("ardent::attacks::cw_linf", "steps", fmt::format("is {}, expected at least 1", steps));
  return CWLinf(PGDOptions(epsilon).steps(steps).step_size(madry_step_size(epsilon, steps)), kappa);
}

/// The attack and its settings as JSON (those of its PGD, and kappa), found by argument-dependent
/// lookup (nlohmann::json's customisation point). ardent::evaluate records it in its report.
template <typename Json>
void to_json(Json& j, const CWLinf& attack) {
  to_json(j, PGD(attack.options()));
  j["attack"] = "CWLinf";
  j["kappa"] = attack.kappa();
}

}  // namespace ardent::attacks
