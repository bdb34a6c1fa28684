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
// sees each point once. The protocol's sanity checks (eval/checks.hpp) run on the first batch and
// after the attacks; what they find is in the report's warnings.
//
//   auto report = ardent::evaluate(model, x, y, ardent::eval::autoattack(8.0 / 255));
//   fmt::print("{}", report);                  // a table, then the warnings
//   report.write_json("report.json");
//
// This header is the protocol; eval/named_attack.hpp holds the attack list's elements,
// eval/presets.hpp and eval/autoattack.hpp the presets.

#include "ardent/core/attack.hpp"
#include "ardent/core/batch.hpp"
#include "ardent/core/check.hpp"
#include "ardent/core/mode_guard.hpp"
#include "ardent/eval/autoattack.hpp"
#include "ardent/eval/checks.hpp"
#include "ardent/eval/named_attack.hpp"
#include "ardent/eval/presets.hpp"
#include "ardent/eval/report.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <initializer_list>
#include <limits>
#include <ranges>
#include <type_traits>

namespace ardent::eval {

/// Where a long evaluation stands, passed to EvalOptions::on_progress.
struct EvalProgress {
  int64_t batches = 0;
  int64_t samples = 0;
  /// Samples in all, or -1 when a data loader does not say.
  int64_t total = -1;
  double clean_accuracy = 0.0;
  double worst_case_accuracy = 0.0;
  double seconds = 0.0;
  /// Estimated seconds left (the time so far, extrapolated over the batches and attacks left), or
  /// -1 when the total is unknown.
  double eta_seconds = -1.0;
  /// The attack that has just finished on the current batch (empty at the end of a batch).
  std::string attack;
};

struct EvalOptions {
  /// Samples per batch when evaluate is given tensors (a data loader brings its own batches).
  TORCH_ARG(int64_t, batch_size) = 256;
  /// Also measure each attack alone on every correctly classified point.
  TORCH_ARG(bool, individual) = true;
  /// Report progress every this many batches (0: never).
  TORCH_ARG(int64_t, progress_every) = 0;
  /// Report progress whenever this many seconds have passed since the last report (checked after
  /// each attack on each batch; 0: never). A short evaluation stays quiet; a long one is never
  /// silent for minutes.
  TORCH_ARG(double, progress_seconds) = 30.0;
  /// Called with the progress; when empty, progress goes to stderr as one line.
  TORCH_ARG(std::function<void(const EvalProgress&)>, on_progress) = nullptr;
  /// Run the protocol's sanity checks (EvalReport::warnings).
  TORCH_ARG(bool, checks) = true;
};

namespace detail {

inline torch::Tensor correct(auto& model, const torch::Tensor& x, const torch::Tensor& y) {
  torch::NoGradGuard no_grad;
  return ardent::forward(model, x).argmax(1).eq(y);
}

inline std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

/// The checks of one batch at the call, with the core checks every entry point uses: x (dtype,
/// shape, finite, device and dtype of the model, inside the tightest pixel box of the attacks, read
/// from their types), y (dtype, shape, range against the model's class count), and that the model
/// runs on x and returns logits [B, C]. Returns C.
template <Model M>
int64_t check_batch(M& model, const torch::Tensor& x, const torch::Tensor& y,
                    const std::vector<std::pair<std::string, AttackCapabilities>>& attacks) {
  constexpr std::string_view name = "ardent::evaluate";
  double clip_min = -std::numeric_limits<double>::infinity();
  double clip_max = std::numeric_limits<double>::infinity();
  std::string box_of;
  for (const auto& [attack, capabilities] : attacks) {
    if (!capabilities.pixel_box) continue;
    const auto [lo, hi] = *capabilities.pixel_box;
    if (lo > clip_min || hi < clip_max) box_of = attack;
    clip_min = std::max(clip_min, lo);
    clip_max = std::min(clip_max, hi);
  }
  check_input_batch(box_of.empty() ? std::string(name) : fmt::format("{} (pixel box of attack '{}')", name, box_of),
                    "x", x, clip_min, clip_max);
  check_model_input(name, "model", model, x);
  check_labels(name, "y", y, x.size(0));
  torch::Tensor logits;
  try {
    torch::NoGradGuard no_grad;
    logits = ardent::forward(model, x.slice(0, 0, 1));
  } catch (const std::exception& e) {
    fail_argument(name, "x",
                  fmt::format("has shape [{}] and dtype {}; the model cannot run on it: {}", fmt::join(x.sizes(), ", "),
                              std::string(c10::toString(x.scalar_type())), first_line(e.what())));
  }
  check_model_output(name, "model", logits, x.slice(0, 0, 1));
  check_labels(name, "y", y, x.size(0), logits.size(1));
  return logits.size(1);
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
        seconds_(attacks.size(), 0.0) {
    for (const auto& a : attacks) {
      capabilities_.emplace_back(a.name(), a.capabilities());
      free_.push_back(a.capabilities().gradient_free);
    }
  }

  /// (name, capabilities) of each attack.
  const std::vector<std::pair<std::string, AttackCapabilities>>& capabilities() const { return capabilities_; }

  /// `checked`: the batch passed check_batch already (the tensor overload checks all of x at once).
  void add(const torch::Tensor& x, const torch::Tensor& y, bool checked) {
    if (!checked) check_batch(model_, x, y, capabilities_);
    const auto alive_clean = correct(model_, x, y);
    if (batches_ == 0 && options_.checks()) first_checks(x, y, alive_clean);
    auto alive = alive_clean.clone();
    auto by_gradient = torch::zeros_like(alive_clean);
    auto by_free = torch::zeros_like(alive_clean);
    for (std::size_t k = 0; k < attacks_.size(); ++k) {
      const auto start = std::chrono::steady_clock::now();
      auto& broken = free_[k] ? by_free : by_gradient;
      const auto broken_before = alive_clean.logical_and(alive.logical_not());
      const auto index = alive.nonzero().squeeze(1);
      if (index.numel() > 0) {
        const auto yi = y.index_select(0, index);
        const auto survived = correct(model_, attacks_[k].perturb(model_, x.index_select(0, index), yi), yi);
        alive.index_copy_(0, index, survived);
        broken.index_copy_(0, index, broken.index_select(0, index).logical_or(survived.logical_not()));
        robust_[k] += survived.sum().template item<int64_t>();
        attacked_[k] += index.numel();
      }
      if (options_.individual()) {
        const auto others = broken_before.nonzero().squeeze(1);
        if (others.numel() > 0) {
          const auto yo = y.index_select(0, others);
          const auto survived = correct(model_, attacks_[k].perturb(model_, x.index_select(0, others), yo), yo);
          broken.index_copy_(0, others, broken.index_select(0, others).logical_or(survived.logical_not()));
          robust_[k] += survived.sum().template item<int64_t>();
        }
      }
      chain_[k] += alive.sum().template item<int64_t>();
      seconds_[k] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (k + 1 < attacks_.size() && due()) progress(x.size(0), k + 1, attacks_[k].name());
    }
    masked_ += by_free.logical_and(by_gradient.logical_not()).sum().template item<int64_t>();
    samples_ += x.size(0);
    clean_ += alive_clean.sum().template item<int64_t>();
    worst_ += alive.sum().template item<int64_t>();
    ++batches_;
    if ((options_.progress_every() > 0 && batches_ % options_.progress_every() == 0) || due()) progress(0, 0, "");
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
    r.warnings = warnings_;
    if (options_.checks()) {
      std::vector<std::string> free_names;
      bool any_gradient = false;
      for (std::size_t k = 0; k < attacks_.size(); ++k) {
        if (free_[k]) {
          free_names.push_back(attacks_[k].name());
        } else {
          any_gradient = true;
        }
      }
      if (any_gradient && !free_names.empty()) {
        if (auto w = checks::gradient_masking(masked_, samples_, free_names)) r.warnings.push_back(std::move(*w));
      }
    }
    return r;
  }

 private:
  double elapsed() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

  bool due() const { return options_.progress_seconds() > 0 && since_report() >= options_.progress_seconds(); }
  double since_report() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - last_report_).count();
  }

  void first_checks(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& correct_now) {
    const auto add = [this](std::optional<EvalWarning> w) {
      if (w) warnings_.push_back(std::move(*w));
    };
    add(checks::randomised(model_, x));
    torch::Tensor logits;
    {
      torch::NoGradGuard no_grad;
      logits = ardent::forward(model_, x);
    }
    add(checks::probabilities(logits));
    add(checks::classes(logits.size(1), capabilities_));
    const auto index = correct_now.nonzero().squeeze(1);
    if (index.numel() > 0) add(checks::zero_gradients(model_, x.index_select(0, index), y.index_select(0, index)));
  }

  /// `batch`: size of the batch under way, `done` of its attacks finished (0 between batches).
  void progress(int64_t batch, std::size_t done, std::string attack) {
    last_report_ = std::chrono::steady_clock::now();
    const double seconds = elapsed();
    const double finished = static_cast<double>(samples_) +
                            static_cast<double>(batch) * static_cast<double>(done) /
                                static_cast<double>(std::max<std::size_t>(attacks_.size(), 1));
    EvalProgress p;
    p.batches = batches_;
    p.samples = samples_;
    p.total = total_;
    p.clean_accuracy = samples_ > 0 ? static_cast<double>(clean_) / static_cast<double>(samples_) : 0.0;
    p.worst_case_accuracy = samples_ > 0 ? static_cast<double>(worst_) / static_cast<double>(samples_) : 0.0;
    p.seconds = seconds;
    p.eta_seconds = total_ > 0 && finished > 0 ? seconds * (static_cast<double>(total_) - finished) / finished : -1.0;
    p.attack = std::move(attack);
    if (options_.on_progress()) {
      options_.on_progress()(p);
      return;
    }
    const std::string where = p.attack.empty() ? "" : fmt::format(" (batch {}: {} done)", p.batches + 1, p.attack);
    const std::string accuracy = p.samples > 0 ? fmt::format(", clean {:.2f}%, worst case {:.2f}%",
                                                             100 * p.clean_accuracy, 100 * p.worst_case_accuracy)
                                               : "";
    const std::string eta = p.eta_seconds >= 0 ? fmt::format(", about {:.0f} s left", p.eta_seconds) : "";
    fmt::print(stderr, "ardent::evaluate: {}{} samples done{}{}, {:.0f} s{}\n", p.samples,
               p.total >= 0 ? fmt::format("/{}", p.total) : "", where, accuracy, p.seconds, eta);
  }

  M& model_;
  const std::vector<NamedAttack<M>>& attacks_;
  const EvalOptions& options_;
  int64_t total_;
  std::vector<std::pair<std::string, AttackCapabilities>> capabilities_;
  std::vector<bool> free_;
  std::vector<int64_t> robust_, chain_, attacked_;
  std::vector<double> seconds_;
  std::vector<EvalWarning> warnings_;
  int64_t samples_ = 0, clean_ = 0, worst_ = 0, batches_ = 0, masked_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_report_ = start_;
};

inline void check_options(const EvalOptions& options) {
  if (options.batch_size() < 1) {
    fail_argument("ardent::evaluate", "batch_size", fmt::format("is {}, expected at least 1", options.batch_size()));
  }
  if (options.progress_every() < 0) {
    fail_argument("ardent::evaluate", "progress_every",
                  fmt::format("is {}, expected 0 (off) or a number of batches", options.progress_every()));
  }
  if (!(options.progress_seconds() >= 0.0)) {
    fail_argument("ardent::evaluate", "progress_seconds",
                  fmt::format("is {}, expected 0 (off) or a number of seconds", options.progress_seconds()));
  }
}

template <Model M, typename Attacks>
std::vector<NamedAttack<M>> bind(const Attacks& attacks) {
  std::vector<NamedAttack<M>> bound;
  for (const auto& a : attacks) bound.emplace_back(a);
  return bound;
}

}  // namespace detail

/// Anything an evaluation list can hold for models of type M: a NamedAttack<M> or a Preset.
template <typename T, typename M>
concept AttackListFor = std::ranges::range<T> && std::constructible_from<NamedAttack<M>, std::ranges::range_value_t<T>>;

/// Evaluates `model` on the tensors (x, y) in batches of options.batch_size(). x and y are checked
/// once, here: dtype, shape, values inside every attack's box, labels inside the model's classes.
template <Model M, typename Attacks>
requires AttackListFor<Attacks, M> EvalReport evaluate(M& model, const torch::Tensor& x, const torch::Tensor& y,
                                                       const Attacks& attacks, const EvalOptions& options = {}) {
  detail::check_options(options);
  const auto bound = detail::bind<M>(attacks);
  ModeGuard mode(model, /*eval=*/true);
  detail::Evaluation<M> evaluation(model, bound, options, x.defined() && x.dim() > 0 ? x.size(0) : 0);
  detail::check_batch(model, x, y, evaluation.capabilities());
  for (int64_t first = 0; first < x.size(0); first += options.batch_size()) {
    evaluation.add(x.slice(0, first, first + options.batch_size()), y.slice(0, first, first + options.batch_size()),
                   /*checked=*/true);
  }
  return evaluation.report();
}

/// A braced list: `evaluate(model, x, y, {pgd(0.1), apgd_t(0.1)})`.
template <Model M>
EvalReport evaluate(M& model, const torch::Tensor& x, const torch::Tensor& y,
                    std::initializer_list<NamedAttack<std::type_identity_t<M>>> attacks,
                    const EvalOptions& options = {}) {
  return evaluate(model, x, y, std::vector<NamedAttack<M>>(attacks), options);
}

/// Evaluates `model` on every batch of a data loader (`*torch::data::make_data_loader(...)`, or any
/// range of torch::data::Example<> or of vectors of them). Each batch is checked as it comes.
template <Model M, typename Loader, typename Attacks>
requires AttackListFor<Attacks, M> &&(!std::same_as<std::remove_cvref_t<Loader>, torch::Tensor>)&&requires(Loader& l) {
  l.begin() != l.end();
}
EvalReport evaluate(M& model, Loader&& loader, const Attacks& attacks, const EvalOptions& options = {}) {
  detail::check_options(options);
  const auto bound = detail::bind<M>(attacks);
  ModeGuard mode(model, /*eval=*/true);
  detail::Evaluation<M> evaluation(model, bound, options, -1);
  for (auto&& batch : loader) {
    const auto b = unpack_batch(batch);
    evaluation.add(b.inputs, b.labels, /*checked=*/false);
  }
  return evaluation.report();
}

template <Model M, typename Loader>
requires(!std::same_as<std::remove_cvref_t<Loader>, torch::Tensor>) EvalReport
    evaluate(M& model, Loader&& loader, std::initializer_list<NamedAttack<std::type_identity_t<M>>> attacks,
             const EvalOptions& options = {}) {
  return evaluate(model, std::forward<Loader>(loader), std::vector<NamedAttack<M>>(attacks), options);
}

}  // namespace ardent::eval

namespace ardent {
/// The contract spells the evaluation at the top level: ardent::evaluate.
using eval::evaluate;
}  // namespace ardent
