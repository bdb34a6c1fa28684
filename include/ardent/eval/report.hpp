#pragma once
// The result of ardent::evaluate: clean accuracy, each attack's robust accuracy, and the
// worst case under the AutoAttack protocol (Croce and Hein 2020): the attacks run in order, each
// only on the points every earlier attack failed on, so a point counts as robust only if no
// attack of the list broke it. Printable as a table (fmt) and writable as JSON (nlohmann-json),
// also as a RobustBench model entry (write_robustbench_json).

#include "ardent/io/atomic_file.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace ardent::eval {

struct AttackResult {
  std::string name;
  /// The attack's settings (its options, as ardent::eval::describe writes them).
  nlohmann::json settings = nlohmann::json::object();
  /// Accuracy under this attack alone; none when EvalOptions::individual is false.
  std::optional<double> robust_accuracy;
  /// Accuracy under this attack and every earlier one (the protocol's running worst case).
  double worst_case_accuracy = 0.0;
  /// Points this attack ran on in the protocol (those that survived every earlier attack).
  int64_t attacked = 0;
  /// Wall time of this attack's runs, in seconds.
  double seconds = 0.0;
};

/// One of the protocol's sanity checks that failed: which one, and in words what it means and what
/// to do. The checks warn; they never stop an evaluation.
struct EvalWarning {
  /// "randomised", "probabilities", "classes", "zero_gradients" or "gradient_masking".
  std::string check;
  std::string message;
};

/// The fields of a RobustBench model entry (model_info/<dataset>/<threat>/<name>.json) that an
/// evaluation cannot know. eps empty: written from the attacks' epsilon (as "k/255" when it is one).
struct RobustBenchMetadata {
  TORCH_ARG(std::string, name);
  TORCH_ARG(std::string, link);
  TORCH_ARG(std::string, authors);
  TORCH_ARG(bool, additional_data) = false;
  TORCH_ARG(int64_t, number_forward_passes) = 1;
  TORCH_ARG(std::string, dataset);
  TORCH_ARG(std::string, venue);
  TORCH_ARG(std::string, architecture);
  TORCH_ARG(std::string, eps);
  /// The robust accuracy the authors report, as a percentage string; empty: the measured one.
  TORCH_ARG(std::string, reported);
  TORCH_ARG(std::string, footnote);
  TORCH_ARG(bool, unreliable) = false;
};

struct EvalReport {
  int64_t samples = 0;
  double clean_accuracy = 0.0;
  std::vector<AttackResult> attacks;
  /// Accuracy when every attack of the list is tried on each point (the last running worst case).
  double worst_case_accuracy = 0.0;
  double seconds = 0.0;
  /// The protocol's sanity checks that failed (empty when all passed).
  std::vector<EvalWarning> warnings;

  /// False when an attack of the list crafted its images on another model (a transfer attack,
  /// eval/transfer.hpp): the numbers then bound white-box robustness from above, they are not it.
  bool white_box() const {
    for (const auto& a : attacks) {
      if (a.settings.contains("transfer_source")) return false;
    }
    return true;
  }

  /// A Markdown table: one row per attack, then the worst case, then the warnings.
  std::string table() const {
    std::size_t width = 28;
    for (const auto& a : attacks) width = std::max(width, a.name.size());
    std::string out = fmt::format("{} samples, clean accuracy {:.2f}%\n\n", samples, 100 * clean_accuracy);
    out += fmt::format("| {:<{}} | {:>9} | {:>10} | {:>8} | {:>8} |\n", "attack", width, "alone", "worst case",
                       "attacked", "time (s)");
    out += fmt::format("| {:-<{}} | {:->9} | {:->10} | {:->8} | {:->8} |\n", "", width, "", "", "", "");
    for (const auto& a : attacks) {
      const std::string alone = a.robust_accuracy ? fmt::format("{:.2f}%", 100 * *a.robust_accuracy) : "-";
      out += fmt::format("| {:<{}} | {:>9} | {:>9.2f}% | {:>8} | {:>8.1f} |\n", a.name, width, alone,
                         100 * a.worst_case_accuracy, a.attacked, a.seconds);
    }
    out += fmt::format("\nworst-case robust accuracy: {:.2f}% ({:.1f} s in all)\n", 100 * worst_case_accuracy, seconds);
    if (!white_box()) {
      out +=
          "\nNot a white-box evaluation: transfer attacks crafted their images on another model; the "
          "worst case is an upper bound of the robust accuracy.\n";
    }
    if (!warnings.empty()) {
      out += fmt::format("\n{} warning{}:\n", warnings.size(), warnings.size() == 1 ? "" : "s");
      for (const auto& w : warnings) out += fmt::format("- [{}] {}\n", w.check, w.message);
    }
    return out;
  }

  nlohmann::json to_json() const {
    nlohmann::json warning_list = nlohmann::json::array();
    for (const auto& w : warnings) warning_list.push_back({{"check", w.check}, {"message", w.message}});
    nlohmann::json attack_list = nlohmann::json::array();
    for (const auto& a : attacks) {
      attack_list.push_back({{"name", a.name},
                             {"settings", a.settings},
                             {"robust_accuracy", a.robust_accuracy ? nlohmann::json(*a.robust_accuracy) : nullptr},
                             {"worst_case_accuracy", a.worst_case_accuracy},
                             {"attacked", a.attacked},
                             {"seconds", a.seconds}});
    }
    return {
        {"samples", samples},       {"clean_accuracy", clean_accuracy},
        {"attacks", attack_list},   {"worst_case_accuracy", worst_case_accuracy},
        {"seconds", seconds},       {"protocol", "attacks in order, each on the points every earlier attack failed on"},
        {"warnings", warning_list}, {"white_box", white_box()}};
  }

  /// The epsilon of the attacks (from their settings), or none when they do not record one or
  /// disagree.
  std::optional<double> epsilon() const {
    std::optional<double> eps;
    for (const auto& a : attacks) {
      if (!a.settings.contains("epsilon") || !a.settings["epsilon"].is_number()) continue;
      const double e = a.settings["epsilon"].get<double>();
      if (eps && std::abs(*eps - e) > 1e-12) return std::nullopt;
      eps = e;
    }
    return eps;
  }

  /// A RobustBench model entry: the metadata, with clean_acc and autoattack_acc (the worst case)
  /// as percentage strings with two decimals, eps as "k/255" where it is one. When the attacks are
  /// not AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square), the footnote says which they were.
  nlohmann::json robustbench_json(const RobustBenchMetadata& metadata) const {
    const auto percent = [](double a) { return fmt::format("{:.2f}", 100 * a); };
    std::string eps = metadata.eps();
    if (eps.empty()) {
      const auto e = epsilon();
      TORCH_CHECK(e.has_value(),
                  "ardent::EvalReport::robustbench_json: argument 'metadata' has no eps, and the report's "
                  "attacks record no common epsilon: set metadata.eps(\"8/255\")");
      const double k = *e * 255;
      eps = std::abs(k - std::round(k)) < 1e-6 ? fmt::format("{}/255", std::lround(k)) : fmt::format("{:g}", *e);
    }
    std::string footnote = metadata.footnote();
    if (!is_autoattack_standard()) {
      std::vector<std::string> names;
      for (const auto& a : attacks) names.push_back(a.name);
      footnote += fmt::format("{}Evaluated with ardent on {} points with {}, not AutoAttack standard.",
                              footnote.empty() ? "" : " ", samples, fmt::join(names, ", "));
    }
    return {{"link", metadata.link()},
            {"name", metadata.name()},
            {"authors", metadata.authors()},
            {"additional_data", metadata.additional_data()},
            {"number_forward_passes", metadata.number_forward_passes()},
            {"dataset", metadata.dataset()},
            {"venue", metadata.venue()},
            {"architecture", metadata.architecture()},
            {"eps", eps},
            {"clean_acc", percent(clean_accuracy)},
            {"reported", metadata.reported().empty() ? percent(worst_case_accuracy) : metadata.reported()},
            {"autoattack_acc", percent(worst_case_accuracy)},
            {"footnote", footnote.empty() ? nlohmann::json(nullptr) : nlohmann::json(footnote)},
            {"unreliable", metadata.unreliable()}};
  }

  /// Writes robustbench_json(metadata) to `path` safely (as write_json).
  void write_robustbench_json(const std::filesystem::path& path, const RobustBenchMetadata& metadata) const {
    io::write_file_atomically(path, robustbench_json(metadata).dump(2) + '\n',
                              "ardent::EvalReport::write_robustbench_json");
  }

  /// Writes to_json() to `path` through a temporary file renamed into place, so that a crash
  /// never leaves a half-written report.
  void write_json(const std::filesystem::path& path) const {
    io::write_file_atomically(path, to_json().dump(2) + '\n', "ardent::EvalReport::write_json");
  }

  /// Whether the attacks are AutoAttack standard's, in its order: APGD-CE, APGD-T, FAB-T, Square
  /// (read from their settings; step and query counts are not checked).
  bool is_autoattack_standard() const {
    const auto is = [this](std::size_t k, const char* attack, const char* key, const nlohmann::json& value) {
      const auto& s = attacks[k].settings;
      return s.value("attack", "") == attack && s.contains(key) && s[key] == value;
    };
    return attacks.size() == 4 && is(0, "APGD", "loss", "CE") && is(1, "APGD", "loss", "TargetedDLR") &&
           is(2, "FAB", "targeted", true) && attacks[3].settings.value("attack", "") == "Square";
  }
};

inline void to_json(nlohmann::json& j, const EvalReport& report) { j = report.to_json(); }

}  // namespace ardent::eval

namespace ardent {
/// The contract spells the report at the top level: ardent::EvalReport.
using eval::EvalReport;
}  // namespace ardent

template <>
struct fmt::formatter<ardent::EvalReport> : fmt::formatter<std::string_view> {
  template <typename FormatContext>
  auto format(const ardent::EvalReport& report, FormatContext& ctx) const {
    return fmt::formatter<std::string_view>::format(report.table(), ctx);
  }
};
