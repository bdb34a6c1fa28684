#pragma once
// Per-epoch metrics as CSV (one row per epoch, appended as training goes, so a crash loses nothing
// already written) and a final JSON report.

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace ardent::train {

class MetricsLog {
 public:
  /// Starts `path` afresh with a header row, or, with `append` (a resumed run), keeps the rows of
  /// a file that has the same columns.
  MetricsLog(std::filesystem::path path, std::vector<std::string> columns, bool append = false)
      : path_(std::move(path)), columns_(std::move(columns)) {
    if (path_.has_parent_path()) std::filesystem::create_directories(path_.parent_path());
    std::string header;
    for (const auto& c : columns_) header += (header.empty() ? "" : ",") + c;
    std::ifstream existing(path_);
    std::string first_line;
    if (append && existing && std::getline(existing, first_line) && first_line == header) return;
    std::ofstream(path_, std::ios::trunc) << header << '\n';
  }

  /// Appends one row; columns missing from `values` are left empty.
  void append(const std::map<std::string, double>& values) {
    std::ofstream out(path_, std::ios::app);
    for (std::size_t i = 0; i < columns_.size(); ++i) {
      if (i > 0) out << ',';
      if (const auto found = values.find(columns_[i]); found != values.end()) out << found->second;
    }
    out << '\n';
    TORCH_CHECK(out.good(), "ardent::train::MetricsLog: ", path_.string(), ": write failed");
  }

 private:
  std::filesystem::path path_;
  std::vector<std::string> columns_;
};

/// Writes a JSON document atomically (temporary file, then rename).
inline void write_json(const nlohmann::json& document, const std::filesystem::path& path) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  auto temporary = path;
  temporary += ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << document.dump(2) << '\n';
    TORCH_CHECK(out.good(), "ardent::train::write_json: ", temporary.string(), ": write failed");
  }
  std::filesystem::rename(temporary, path);
}

}  // namespace ardent::train
