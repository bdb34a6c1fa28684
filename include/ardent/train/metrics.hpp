#pragma once
// Per-epoch metrics as CSV (one row per epoch, added as training goes, each write atomic, so a
// crash loses nothing already written) and a final JSON report. train_loop also keeps the rows in the checkpoint and
// rewrites the file from it on resume (replace()), so that the file and the checkpoint agree
// after a kill at any moment.

#include "ardent/io/atomic_file.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace ardent::train {

/// The rows of a metrics CSV text (a header line, then rows of numbers) as name -> value maps;
/// empty cells are left out.
inline std::vector<std::map<std::string, double>> metrics_rows(const std::string& csv) {
  std::istringstream lines(csv);
  std::string line;
  std::vector<std::string> columns;
  std::vector<std::map<std::string, double>> rows;
  while (std::getline(lines, line)) {
    std::vector<std::string> cells;
    std::istringstream cell_stream(line);
    for (std::string cell; std::getline(cell_stream, cell, ',');) cells.push_back(cell);
    if (columns.empty()) {
      columns = cells;
      continue;
    }
    std::map<std::string, double> row;
    for (std::size_t i = 0; i < cells.size() && i < columns.size(); ++i) {
      if (cells[i].empty()) continue;
      try {
        row[columns[i]] = std::stod(cells[i]);
      } catch (const std::exception&) {
        TORCH_CHECK(false, "ardent::train::metrics_rows: column '", columns[i], "' holds '", cells[i],
                    "', expected a number");
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

class MetricsLog {
 public:
  /// Starts `path` afresh with a header row, or, with `append` (a resumed run), keeps the rows of
  /// a file that has the same columns.
  MetricsLog(std::filesystem::path path, std::vector<std::string> columns, bool append = false)
      : path_(std::move(path)), columns_(std::move(columns)) {
    std::ifstream existing(path_);
    std::string first_line;
    if (append && existing && std::getline(existing, first_line) && first_line + '\n' == header()) return;
    replace(header());
  }

  /// The header line (column names), with its newline.
  std::string header() const {
    std::string out;
    for (const auto& c : columns_) out += (out.empty() ? "" : ",") + c;
    return out + '\n';
  }

  /// One row as append() writes it, with its newline; columns missing from `values` are left empty.
  std::string row(const std::map<std::string, double>& values) const {
    std::ostringstream out;
    for (std::size_t i = 0; i < columns_.size(); ++i) {
      if (i > 0) out << ',';
      if (const auto found = values.find(columns_[i]); found != values.end()) out << found->second;
    }
    out << '\n';
    return out.str();
  }

  /// Appends one row: the file is rewritten with it, atomically, like every file ardent writes (a
  /// kill or a full disk leaves the rows before it intact; the file holds one row per epoch).
  void append(const std::map<std::string, double>& values) {
    std::error_code ec;
    const std::string before = std::filesystem::exists(path_, ec) ? io::read_file(path_, "ardent::train::MetricsLog")
                                                                  : header();
    replace(before + row(values));
  }

  /// Replaces the whole file by `content` (a header and rows) atomically.
  void replace(const std::string& content) { io::write_file_atomically(path_, content, "ardent::train::MetricsLog"); }

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::vector<std::string> columns_;
};

/// Writes a JSON document atomically (io::write_file_atomically).
inline void write_json(const nlohmann::json& document, const std::filesystem::path& path) {
  io::write_file_atomically(path, document.dump(2) + '\n', "ardent::train::write_json");
}

}  // namespace ardent::train
