#pragma once
// AutoAttack (Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of
// diverse parameter-free attacks", ICML 2020, arXiv:2003.01690) as presets for ardent::evaluate:
//
//   autoattack(eps)       standard: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5000)
//   autoattack_plus(eps)  APGD-CE (5 restarts), APGD-DLR (5), FAB (5), Square, APGD-T (9), FAB-T (9)
//   autoattack_rand(eps)  APGD-CE and APGD-DLR with EOT over 20 passes (eval/presets.hpp)
//   autoattack_quick(eps) for development only: the standard four with fewer steps, targets and
//                         queries; its numbers are upper bounds of the standard ones, never reported
//
// Each attack of a version runs on the points every earlier one failed on (the protocol of
// ardent::evaluate); the settings are those of the reference code's versions.

#include "ardent/attacks/fab.hpp"
#include "ardent/attacks/square.hpp"
#include "ardent/eval/presets.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace ardent::eval {

namespace detail {

inline Preset fab_preset(std::string name, const attacks::FABOptions& o) { return {std::move(name), attacks::FAB(o)}; }

inline Preset square_preset(std::string name, const attacks::SquareOptions& o) {
  return {std::move(name), attacks::Square(o)};
}

}  // namespace detail

/// FAB-T: FAB toward each of the `target_classes` most likely other classes in turn (AutoAttack's
/// settings: alpha_max 0.1, eta 1.05, beta 0.9, one restart).
inline Preset fab_t(double epsilon, int64_t steps = 100, Norm norm = Norm::Linf, int64_t target_classes = 9) {
  return detail::fab_preset(
      fmt::format("FAB-T ({}, eps {:.4g})", detail::norm_name(norm), epsilon),
      attacks::FABOptions(epsilon).steps(steps).norm(norm).targeted(true).target_classes(target_classes));
}

/// Untargeted FAB (AutoAttack plus runs it with 5 restarts).
inline Preset fab(double epsilon, int64_t steps = 100, Norm norm = Norm::Linf, int64_t restarts = 1) {
  return detail::fab_preset(fmt::format("FAB ({}, eps {:.4g})", detail::norm_name(norm), epsilon),
                            attacks::FABOptions(epsilon).steps(steps).norm(norm).targeted(false).restarts(restarts));
}

/// Square: a gradient-free random search over squares (Andriushchenko et al., ECCV 2020), as
/// AutoAttack runs it (margin loss, p_init 0.8, the schedule not rescaled, one restart).
inline Preset square(double epsilon, int64_t queries = 5000, Norm norm = Norm::Linf, uint64_t seed = 0) {
  return detail::square_preset(fmt::format("Square-{} ({}, eps {:.4g})", queries, detail::norm_name(norm), epsilon),
                               attacks::SquareOptions(epsilon).queries(queries).norm(norm).seed(seed));
}

/// AutoAttack standard: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5000 queries).
inline std::vector<Preset> autoattack(double epsilon, Norm norm = Norm::Linf) {
  return {apgd_ce(epsilon, 100, norm), apgd_t(epsilon, 100, norm, 9), fab_t(epsilon, 100, norm, 9),
          square(epsilon, 5000, norm)};
}

/// AutoAttack plus: APGD-CE and APGD-DLR with 5 restarts, FAB with 5 restarts, Square (5000),
/// APGD-T (9 targets), FAB-T (9 targets). Several times the cost of standard, rarely lower.
inline std::vector<Preset> autoattack_plus(double epsilon, Norm norm = Norm::Linf) {
  const auto restarted = [&](attacks::APGDLoss loss, const char* name) {
    return detail::apgd_preset(fmt::format("{} x5 ({}, eps {:.4g})", name, detail::norm_name(norm), epsilon),
                               attacks::APGDOptions(epsilon).steps(100).norm(norm).loss(loss).restarts(5));
  };
  auto fab5 = fab(epsilon, 100, norm, 5);
  fab5.name = fmt::format("FAB x5 ({}, eps {:.4g})", detail::norm_name(norm), epsilon);
  return {restarted(attacks::APGDLoss::CE, "APGD-CE"),
          restarted(attacks::APGDLoss::DLR, "APGD-DLR"),
          fab5,
          square(epsilon, 5000, norm),
          apgd_t(epsilon, 100, norm, 9),
          fab_t(epsilon, 100, norm, 9)};
}

/// For development only, never for reported numbers: the four attacks of the standard version
/// with 25 steps, 3 target classes and 1000 Square queries (about a tenth of the cost). Its worst
/// case is an upper bound of the standard version's.
inline std::vector<Preset> autoattack_quick(double epsilon, Norm norm = Norm::Linf) {
  auto presets = std::vector<Preset>{apgd_ce(epsilon, 25, norm), apgd_t(epsilon, 25, norm, 3),
                                     fab_t(epsilon, 25, norm, 3), square(epsilon, 1000, norm)};
  for (auto& p : presets) p.name = "quick " + p.name;
  return presets;
}

}  // namespace ardent::eval
