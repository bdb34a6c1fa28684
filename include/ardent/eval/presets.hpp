#pragma once
// Presets: the usual attacks of a robustness table with their published settings, each a Preset
// (a name and the attack), in namespace ardent::eval. Step sizes follow the usual rules:
// 2.5 eps / steps for PGD and CW-Linf (Madry et al. 2018), none for APGD (it sets its own).
// The AutoAttack versions with FAB-T and Square are in eval/autoattack.hpp.

#include "ardent/attacks/apgd.hpp"
#include "ardent/attacks/bim.hpp"
#include "ardent/attacks/cw_linf.hpp"
#include "ardent/attacks/pgd.hpp"
#include "ardent/eval/named_attack.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

namespace ardent::eval {

namespace detail {
inline const char* norm_name(Norm norm) { return norm == Norm::Linf ? "Linf" : "L2"; }

inline Preset apgd_preset(std::string name, attacks::APGDOptions options) {
  return {std::move(name), attacks::APGD(options)};
}
}  // namespace detail

inline Preset pgd(double epsilon, int64_t steps = 20, Norm norm = Norm::Linf) {
  return {fmt::format("PGD-{} ({}, eps {:.4g})", steps, detail::norm_name(norm), epsilon),
          attacks::PGD(attacks::PGDOptions(epsilon).steps(steps).norm(norm).step_size(
              attacks::madry_step_size(epsilon, steps)))};
}
/// BIM (Kurakin et al. 2017): PGD without the random start, steps of 2.5 eps / steps (Linf).
inline Preset bim(double epsilon, int64_t steps = 20) {
  return {fmt::format("BIM-{} (eps {:.4g})", steps, epsilon),
          attacks::BIM(attacks::BIMOptions(epsilon).steps(steps).step_size(attacks::madry_step_size(epsilon, steps)))};
}
inline Preset cw_linf(double epsilon, int64_t steps = 20, double kappa = 0.0) {
  return {fmt::format("CW-Linf-{} (eps {:.4g})", steps, epsilon), attacks::cw_linf(epsilon, steps, kappa)};
}
inline Preset apgd_ce(double epsilon, int64_t steps = 100, Norm norm = Norm::Linf) {
  return detail::apgd_preset(fmt::format("APGD-CE ({}, eps {:.4g})", detail::norm_name(norm), epsilon),
                             attacks::APGDOptions(epsilon).steps(steps).norm(norm).loss(attacks::APGDLoss::CE));
}
inline Preset apgd_dlr(double epsilon, int64_t steps = 100, Norm norm = Norm::Linf) {
  return detail::apgd_preset(fmt::format("APGD-DLR ({}, eps {:.4g})", detail::norm_name(norm), epsilon),
                             attacks::APGDOptions(epsilon).steps(steps).norm(norm).loss(attacks::APGDLoss::DLR));
}
inline Preset apgd_t(double epsilon, int64_t steps = 100, Norm norm = Norm::Linf, int64_t n_target_classes = 9) {
  return detail::apgd_preset(fmt::format("APGD-T ({}, eps {:.4g})", detail::norm_name(norm), epsilon),
                             attacks::APGDOptions(epsilon)
                                 .steps(steps)
                                 .norm(norm)
                                 .loss(attacks::APGDLoss::TargetedDLR)
                                 .n_target_classes(n_target_classes));
}

/// AutoAttack without its two gradient-free members (FAB-T, Square): APGD-CE, then APGD-T.
inline std::vector<Preset> autoattack_lite(double epsilon, Norm norm = Norm::Linf, int64_t steps = 100) {
  return {apgd_ce(epsilon, steps, norm), apgd_t(epsilon, steps, norm)};
}

/// The Linf suite of ardent's reproduction study (docs/reproduction.md): the ARD paper's PGD next to
/// the attacks it did not run - PGD, BIM and CW-Linf of `steps` steps, then APGD-CE and APGD-T of
/// `steps` iterations.
inline std::vector<Preset> study_suite(double epsilon, int64_t steps = 20) {
  return {pgd(epsilon, steps), bim(epsilon, steps), cw_linf(epsilon, steps), apgd_ce(epsilon, steps),
          apgd_t(epsilon, steps)};
}

/// AutoAttack 'rand', for models with a randomised forward pass: APGD-CE and APGD-DLR, each
/// gradient the mean over `eot_samples` passes (expectation over transformation), one restart.
inline std::vector<Preset> autoattack_rand(double epsilon, Norm norm = Norm::Linf, int64_t eot_samples = 20,
                                           int64_t steps = 100) {
  const auto options = [&](attacks::APGDLoss loss) {
    return attacks::APGDOptions(epsilon).steps(steps).norm(norm).loss(loss).eot_samples(eot_samples);
  };
  return {
      detail::apgd_preset(fmt::format("APGD-CE EOT-{} ({}, eps {:.4g})", eot_samples, detail::norm_name(norm), epsilon),
                          options(attacks::APGDLoss::CE)),
      detail::apgd_preset(
          fmt::format("APGD-DLR EOT-{} ({}, eps {:.4g})", eot_samples, detail::norm_name(norm), epsilon),
          options(attacks::APGDLoss::DLR))};
}

}  // namespace ardent::eval
