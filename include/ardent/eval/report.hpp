#pragma once
// The result of ardent::evaluate: clean accuracy, each attack's robust accuracy, and the
// worst case under the AutoAttack protocol (Croce and Hein 2020): the attacks run in order, each
// only on the points every earlier attack failed on, so a point counts as robust only if no
// attack of the list broke it. Printable as a table (fmt) and writable as JSON (nlohmann-json).

#include "ardent/io/atomic_file.hpp"

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace ardent {

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

struct EvalReport {
  int64_t samples = 0;
  double clean_accuracy = 0.0;
  std::vector<AttackResult> attacks;
  /// Accuracy when every attack of the list is tried on each point (the last running worst case).
  double worst_case_accuracy = 0.0;
  double seconds = 0.0;

  /// A Markdown table: one row per attack, then the worst case.
  std::string table() const {
    std::string out = fmt::format("{} samples, clean accuracy {:.2f}%\n\n", samples, 100 * clean_accuracy);
    out += fmt::format("| {:<28} | {:>9} | {:>10} | {:>8} | {:>8} |\n", "attack", "alone", "worst case", "attacked",
                       "time (s)");
    out += fmt::format("| {:-<28} | {:->9} | {:->10} | {:->8} | {:->8} |\n", "", "", "", "", "");
    for (const auto& a : attacks) {
      const std::string alone = a.robust_accuracy ? fmt::format("{:.2f}%", 100 * *a.robust_accuracy) : "-";
      out += fmt::format("| {:<28} | {:>9} | {:>9.2f}% | {:>8} | {:>8.1f} |\n", a.name, alone,
                         100 * a.worst_case_accuracy, a.attacked, a.seconds);
    }
    out += fmt::format("\nworst-case robust accuracy: {:.2f}% ({:.1f} s in all)\n", 100 * worst_case_accuracy, seconds);
    return out;
  }

  nlohmann::json to_json() const {
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
        {"samples", samples},     {"clean_accuracy", clean_accuracy},
        {"attacks", attack_list}, {"worst_case_accuracy", worst_case_accuracy},
        {"seconds", seconds},     {"protocol", "attacks in order, each on the points every earlier attack failed on"}};
  }

  /// Writes to_json() to `path` through a temporary file renamed into place, so that a crash
  /// never leaves a half-written report.
  void write_json(const std::filesystem::path& path) const {
    io::write_file_atomically(path, to_json().dump(2) + '\n', "ardent::EvalReport::write_json");
  }
};

inline void to_json(nlohmann::json& j, const EvalReport& report) { j = report.to_json(); }

}  // namespace ardent

template <>
struct fmt::formatter<ardent::EvalReport> : fmt::formatter<std::string_view> {
  template <typename FormatContext>
  auto format(const ardent::EvalReport& report, FormatContext& ctx) const {
    return fmt::formatter<std::string_view>::format(report.table(), ctx);
  }
};
