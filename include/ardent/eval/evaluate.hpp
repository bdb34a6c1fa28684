#pragma once
// Robust evaluation under the AutoAttack protocol (Croce and Hein, ICML 2020):
//
//   clean accuracy      = P[ f(x) = y ]
//   robust accuracy A_k = P[ f(x) = y and f(A_k(x)) = y ]                        (each attack alone)
//   worst case          = P[ f(x) = y and f(A_k(x)) = y for every k ]
//
// The worst case is computed as the protocol does: attack 1 runs on the correctly classified
// points, attack 2 on those attack 1 failed on, and so on; a point broken once is never attacked
// again. With individual(true) (the default) each attack also runs on the points an earlier
// attack broke, so that A_k is measured on every correctly classified point; each attack still
// sees each point once.
//
//   auto report = ardent::evaluate(model, x, y, ardent::eval::autoattack_lite(8.0 / 255));
//   fmt::print("{}", report);                  // a table
//   report.write_json("report.json");

#include "ardent/attacks/apgd.hpp"
#include "ardent/attacks/bim.hpp"
#include "ardent/attacks/cw.hpp"
#include "ardent/attacks/cw_linf.hpp"
#include "ardent/attacks/fgsm.hpp"
#include "ardent/attacks/mifgsm.hpp"
#include "ardent/attacks/none.hpp"
#include "ardent/attacks/pgd.hpp"
#include "ardent/core/attack.hpp"
#include "ardent/core/mode_guard.hpp"
#include "ardent/eval/report.hpp"

#include <chrono>
#include <functional>
#include <initializer_list>
#include <ranges>
#include <variant>

namespace ardent {

/// Where a long evaluation stands, passed to EvalOptions::on_progress.
struct EvalProgress {
  int64_t batches = 0;
  int64_t samples = 0;
  /// Samples in all, or -1 when a data loader does not say.
  int64_t total = -1;
  double clean_accuracy = 0.0;
  double worst_case_accuracy = 0.0;
  double seconds = 0.0;
};

struct EvalOptions {
  /// Samples per batch when evaluate is given tensors (a data loader brings its own batches).
  TORCH_ARG(int64_t, batch_size) = 256;
  /// Also measure each attack alone on every correctly classified point.
  TORCH_ARG(bool, individual) = true;
  /// Report progress every this many batches (0: never).
  TORCH_ARG(int64_t, progress_every) = 0;
  /// Called with the progress; when empty, progress goes to stderr as one line.
  TORCH_ARG(std::function<void(const EvalProgress&)>, on_progress) = nullptr;
};

namespace eval {

namespace detail {
inline const char* norm_name(Norm norm) { return norm == Norm::Linf ? "Linf" : "L2"; }
inline const char* loss_name(attacks::APGDLoss loss) {
  switch (loss) {
    case attacks::APGDLoss::CE:
      return "CE";
    case attacks::APGDLoss::DLR:
      return "DLR";
    case attacks::APGDLoss::TargetedDLR:
      return "TargetedDLR";
  }
  return "?";
}
}  // namespace detail

/// The settings of the built-in attacks, as recorded in a report.
inline nlohmann::json describe(const attacks::FGSM& a) {
  const auto& o = a.options();
  return {{"attack", "FGSM"},
          {"epsilon", o.epsilon()},
          {"clip_min", o.clip_min()},
          {"clip_max", o.clip_max()},
          {"eval_mode", o.eval_mode()}};
}
inline nlohmann::json describe(const attacks::PGD& a) {
  const auto& o = a.options();
  return {{"attack", "PGD"},          {"norm", detail::norm_name(o.norm())},
          {"epsilon", o.epsilon()},   {"step_size", o.step_size()},
          {"steps", o.steps()},       {"random_start", o.random_start()},
          {"restarts", o.restarts()}, {"clip_min", o.clip_min()},
          {"clip_max", o.clip_max()}, {"eval_mode", o.eval_mode()}};
}
inline nlohmann::json describe(const attacks::BIM& a) {
  const auto& o = a.options();
  return {{"attack", "BIM"},          {"epsilon", o.epsilon()},   {"step_size", o.step_size()}, {"steps", a.steps()},
          {"clip_min", o.clip_min()}, {"clip_max", o.clip_max()}, {"eval_mode", o.eval_mode()}};
}
inline nlohmann::json describe(const attacks::MIFGSM& a) {
  const auto& o = a.options();
  return {{"attack", "MIFGSM"}, {"epsilon", o.epsilon()},   {"step_size", o.step_size()}, {"steps", o.steps()},
          {"decay", o.decay()}, {"clip_min", o.clip_min()}, {"clip_max", o.clip_max()},   {"eval_mode", o.eval_mode()}};
}
inline nlohmann::json describe(const attacks::CW& a) {
  const auto& o = a.options();
  return {{"attack", "CW"},
          {"norm", "L2"},
          {"c", o.c()},
          {"kappa", o.kappa()},
          {"steps", o.steps()},
          {"lr", o.lr()},
          {"binary_search_steps", o.binary_search_steps()},
          {"abort_early", o.abort_early()},
          {"clip_min", o.clip_min()},
          {"clip_max", o.clip_max()},
          {"eval_mode", o.eval_mode()}};
}
inline nlohmann::json describe(const attacks::CWLinf& a) {
  auto j = describe(attacks::PGD(a.options()));
  j["attack"] = "CWLinf";
  j["kappa"] = a.kappa();
  return j;
}
inline nlohmann::json describe(const attacks::APGD& a) {
  const auto& o = a.options();
  return {{"attack", "APGD"},
          {"loss", detail::loss_name(o.loss())},
          {"norm", detail::norm_name(o.norm())},
          {"epsilon", o.epsilon()},
          {"steps", o.steps()},
          {"restarts", o.restarts()},
          {"n_target_classes", o.n_target_classes()},
          {"rho", o.rho()},
          {"momentum", o.momentum()},
          {"clip_min", o.clip_min()},
          {"clip_max", o.clip_max()},
          {"eval_mode", o.eval_mode()}};
}
inline nlohmann::json describe(const attacks::None& a) {
  return {{"attack", "None"}, {"clip_min", a.options().clip_min()}, {"clip_max", a.options().clip_max()}};
}

/// A built-in attack with its name, independent of the model type (what the presets return).
struct Preset {
  std::string name;
  std::variant<attacks::FGSM, attacks::PGD, attacks::BIM, attacks::MIFGSM, attacks::CW, attacks::CWLinf, attacks::APGD,
               attacks::None>
      attack;
};

/// Any attack for models of type M, with a name and its settings: the element of an
/// evaluation's attack list. Built-in attacks record their options; a user's attack records the
/// settings given (or none).
template <Model M>
class NamedAttack {
 public:
  template <typename A>
  requires Attack<A, M> NamedAttack(std::string name, A attack, nlohmann::json settings)
      : name_(std::move(name)),
        settings_(std::move(settings)),
        perturb_([attack = std::move(attack)](M& model, const torch::Tensor& x, const torch::Tensor& y) mutable {
          return attack.perturb(model, x, y);
        }) {}

  template <typename A>
  requires Attack<A, M> NamedAttack(std::string name, A attack)
      : NamedAttack(std::move(name), attack, settings_of(attack)) {}

  /* implicit */ NamedAttack(const Preset& preset)  // NOLINT(google-explicit-constructor)
      : NamedAttack(std::visit([&](const auto& a) { return NamedAttack(preset.name, a); }, preset.attack)) {}

  const std::string& name() const { return name_; }
  const nlohmann::json& settings() const { return settings_; }
  torch::Tensor perturb(M& model, const torch::Tensor& x, const torch::Tensor& y) const {
    return perturb_(model, x, y);
  }

 private:
  template <typename A>
  static nlohmann::json settings_of(const A& attack) {
    if constexpr (requires { describe(attack); }) {
      return describe(attack);
    } else {
      return nlohmann::json::object();
    }
  }

  std::string name_;
  nlohmann::json settings_;
  std::function<torch::Tensor(M&, const torch::Tensor&, const torch::Tensor&)> perturb_;
};

/// Presets. Step sizes follow the usual rules: 2.5 eps / steps for PGD (Madry et al.), none
/// for APGD (it sets its own).
inline Preset pgd(double epsilon, int64_t steps = 20, Norm norm = Norm::Linf) {
  return {fmt::format("PGD-{} ({}, eps {:.4g})", steps, detail::norm_name(norm), epsilon),
          attacks::PGD(attacks::PGDOptions(epsilon).steps(steps).norm(norm).step_size(
              2.5 * epsilon / static_cast<double>(std::max<int64_t>(steps, 1))))};
}
inline Preset cw_linf(double epsilon, int64_t steps = 20, double kappa = 0.0) {
  return {fmt::format("CW-Linf-{} (eps {:.4g})", steps, epsilon), attacks::cw_linf(epsilon, steps, kappa)};
}
inline Preset apgd_ce(double epsilon, int64_t steps = 100, Norm norm = Norm::Linf) {
  return {fmt::format("APGD-CE ({}, eps {:.4g})", detail::norm_name(norm), epsilon),
          attacks::APGD(attacks::APGDOptions(epsilon).steps(steps).norm(norm).loss(attacks::APGDLoss::CE))};
}
inline Preset apgd_dlr(double epsilon, int64_t steps = 100, Norm norm = Norm::Linf) {
  return {fmt::format("APGD-DLR ({}, eps {:.4g})", detail::norm_name(norm), epsilon),
          attacks::APGD(attacks::APGDOptions(epsilon).steps(steps).norm(norm).loss(attacks::APGDLoss::DLR))};
}
inline Preset apgd_t(double epsilon, int64_t steps = 100, Norm norm = Norm::Linf, int64_t n_target_classes = 9) {
  return {fmt::format("APGD-T ({}, eps {:.4g})", detail::norm_name(norm), epsilon),
          attacks::APGD(attacks::APGDOptions(epsilon)
                            .steps(steps)
                            .norm(norm)
                            .loss(attacks::APGDLoss::TargetedDLR)
                            .n_target_classes(n_target_classes))};
}
/// AutoAttack without its two gradient-free members (FAB-T, Square): APGD-CE, then APGD-T.
inline std::vector<Preset> autoattack_lite(double epsilon, Norm norm = Norm::Linf, int64_t steps = 100) {
  return {apgd_ce(epsilon, steps, norm), apgd_t(epsilon, steps, norm)};
}

namespace detail {

inline torch::Tensor correct(auto& model, const torch::Tensor& x, const torch::Tensor& y) {
  torch::NoGradGuard no_grad;
  return ardent::forward(model, x).argmax(1).eq(y);
}

/// Counts over the batches of one evaluation.
template <Model M>
class Evaluation {
 public:
  Evaluation(M& model, const std::vector<NamedAttack<M>>& attacks, const EvalOptions& options, int64_t total)
      : model_(model),
        attacks_(attacks),
        options_(options),
        total_(total),
        robust_(attacks.size(), 0),
        chain_(attacks.size(), 0),
        attacked_(attacks.size(), 0),
        seconds_(attacks.size(), 0.0) {}

  void add(const torch::Tensor& x, const torch::Tensor& y) {
    constexpr std::string_view name = "ardent::evaluate";
    if (!x.defined() || !x.is_floating_point() || x.dim() < 1 || x.size(0) == 0) {
      fail_argument(
          name, "x",
          fmt::format("is {}, expected a non-empty floating-point batch [B, ...]",
                      x.defined() ? fmt::format("a {} tensor of shape [{}]",
                                                std::string(c10::toString(x.scalar_type())), fmt::join(x.sizes(), ", "))
                                  : std::string("undefined")));
    }
    if (const auto device = device_of(model_); device && *device != x.device()) {
      fail_argument(name, "x",
                    fmt::format("is on device {}, expected the model's device {}", x.device().str(), device->str()));
    }
    check_labels(name, "y", y, x.size(0));
    const auto alive_clean = correct(model_, x, y);
    auto alive = alive_clean.clone();
    for (std::size_t k = 0; k < attacks_.size(); ++k) {
      const auto start = std::chrono::steady_clock::now();
      const auto broken_before = alive_clean.logical_and(alive.logical_not());
      const auto index = alive.nonzero().squeeze(1);
      if (index.numel() > 0) {
        const auto yi = y.index_select(0, index);
        const auto survived = correct(model_, attacks_[k].perturb(model_, x.index_select(0, index), yi), yi);
        alive.index_copy_(0, index, survived);
        robust_[k] += survived.sum().template item<int64_t>();
        attacked_[k] += index.numel();
      }
      if (options_.individual()) {
        const auto others = broken_before.nonzero().squeeze(1);
        if (others.numel() > 0) {
          const auto yo = y.index_select(0, others);
          robust_[k] += correct(model_, attacks_[k].perturb(model_, x.index_select(0, others), yo), yo)
                            .sum()
                            .template item<int64_t>();
        }
      }
      chain_[k] += alive.sum().template item<int64_t>();
      seconds_[k] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    samples_ += x.size(0);
    clean_ += alive_clean.sum().template item<int64_t>();
    worst_ += alive.sum().template item<int64_t>();
    ++batches_;
    if (options_.progress_every() > 0 && batches_ % options_.progress_every() == 0) progress();
  }

  EvalReport report() const {
    TORCH_CHECK(samples_ > 0,
                "ardent::evaluate: argument 'x' (or the data loader) gave no samples, expected at "
                "least one");
    EvalReport r;
    const auto n = static_cast<double>(samples_);
    r.samples = samples_;
    r.clean_accuracy = static_cast<double>(clean_) / n;
    r.worst_case_accuracy = static_cast<double>(worst_) / n;
    for (std::size_t k = 0; k < attacks_.size(); ++k) {
      AttackResult a;
      a.name = attacks_[k].name();
      a.settings = attacks_[k].settings();
      if (options_.individual()) a.robust_accuracy = static_cast<double>(robust_[k]) / n;
      a.worst_case_accuracy = static_cast<double>(chain_[k]) / n;
      a.attacked = attacked_[k];
      a.seconds = seconds_[k];
      r.attacks.push_back(std::move(a));
    }
    r.seconds = elapsed();
    return r;
  }

 private:
  double elapsed() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

  void progress() const {
    EvalProgress p{batches_,
                   samples_,
                   total_,
                   static_cast<double>(clean_) / static_cast<double>(samples_),
                   static_cast<double>(worst_) / static_cast<double>(samples_),
                   elapsed()};
    if (options_.on_progress()) {
      options_.on_progress()(p);
    } else {
      fmt::print(stderr, "ardent::evaluate: {} batches, {}{} samples, clean {:.2f}%, worst case {:.2f}%, {:.1f} s\n",
                 p.batches, p.samples, p.total >= 0 ? fmt::format("/{}", p.total) : "", 100 * p.clean_accuracy,
                 100 * p.worst_case_accuracy, p.seconds);
    }
  }

  M& model_;
  const std::vector<NamedAttack<M>>& attacks_;
  const EvalOptions& options_;
  int64_t total_;
  std::vector<int64_t> robust_, chain_, attacked_;
  std::vector<double> seconds_;
  int64_t samples_ = 0, clean_ = 0, worst_ = 0, batches_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

inline void check_options(const EvalOptions& options) {
  if (options.batch_size() < 1) {
    fail_argument("ardent::evaluate", "batch_size", fmt::format("is {}, expected at least 1", options.batch_size()));
  }
  if (options.progress_every() < 0) {
    fail_argument("ardent::evaluate", "progress_every",
                  fmt::format("is {}, expected 0 (off) or a number of batches", options.progress_every()));
  }
}

template <Model M, typename Attacks>
std::vector<NamedAttack<M>> bind(const Attacks& attacks) {
  std::vector<NamedAttack<M>> bound;
  for (const auto& a : attacks) bound.emplace_back(a);
  return bound;
}

/// A data loader's batch as (x, y): an Example (after a Stack transform) or a vector of them.
template <typename Batch>
std::pair<torch::Tensor, torch::Tensor> unpack(const Batch& batch) {
  if constexpr (requires {
                  batch.data;
                  batch.target;
                }) {
    return {batch.data, batch.target};
  } else {
    std::vector<torch::Tensor> xs;
    std::vector<torch::Tensor> ys;
    for (const auto& example : batch) {
      xs.push_back(example.data);
      ys.push_back(example.target);
    }
    TORCH_CHECK(!xs.empty(), "ardent::evaluate: argument 'loader' gave an empty batch");
    return {torch::stack(xs), torch::stack(ys).reshape({-1})};
  }
}

}  // namespace detail

/// Anything an evaluation list can hold for models of type M: a NamedAttack<M> or a Preset.
template <typename T, typename M>
concept AttackListFor = std::ranges::range<T> && std::constructible_from<NamedAttack<M>, std::ranges::range_value_t<T>>;

}  // namespace eval

/// Evaluates `model` on the tensors (x, y) in batches of options.batch_size().
template <Model M, typename Attacks>
requires eval::AttackListFor<Attacks, M> EvalReport evaluate(M& model, const torch::Tensor& x, const torch::Tensor& y,
                                                             const Attacks& attacks, const EvalOptions& options = {}) {
  eval::detail::check_options(options);
  if (!x.defined() || x.dim() < 1 || x.size(0) == 0) {
    fail_argument("ardent::evaluate", "x", "is empty or undefined, expected a non-empty batch [N, ...]");
  }
  check_labels("ardent::evaluate", "y", y, x.size(0));
  const auto bound = eval::detail::bind<M>(attacks);
  ModeGuard mode(model, /*eval=*/true);
  eval::detail::Evaluation<M> evaluation(model, bound, options, x.size(0));
  for (int64_t first = 0; first < x.size(0); first += options.batch_size()) {
    evaluation.add(x.slice(0, first, first + options.batch_size()), y.slice(0, first, first + options.batch_size()));
  }
  return evaluation.report();
}

template <Model M>
EvalReport evaluate(M& model, const torch::Tensor& x, const torch::Tensor& y,
                    std::initializer_list<eval::NamedAttack<M>> attacks, const EvalOptions& options = {}) {
  return evaluate(model, x, y, std::vector<eval::NamedAttack<M>>(attacks), options);
}

/// Evaluates `model` on every batch of a data loader (`*torch::data::make_data_loader(...)`, or any
/// range of torch::data::Example<> or of vectors of them).
template <Model M, typename Loader, typename Attacks>
requires eval::AttackListFor<Attacks, M> &&
    (!std::same_as<std::remove_cvref_t<Loader>, torch::Tensor>)&&requires(Loader& l) {
  l.begin() != l.end();
}
EvalReport evaluate(M& model, Loader&& loader, const Attacks& attacks, const EvalOptions& options = {}) {
  eval::detail::check_options(options);
  const auto bound = eval::detail::bind<M>(attacks);
  ModeGuard mode(model, /*eval=*/true);
  eval::detail::Evaluation<M> evaluation(model, bound, options, -1);
  for (auto&& batch : loader) {
    const auto [x, y] = eval::detail::unpack(batch);
    evaluation.add(x, y);
  }
  return evaluation.report();
}

}  // namespace ardent
