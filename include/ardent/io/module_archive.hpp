#pragma once
// Loading a module saved with LibTorch's `torch::save(model, path)`, checked: torch::load replaces
// each parameter by the file's tensor whatever its shape (a width-32 teacher loads into a width-16
// model, which then silently has the teacher's size), and a missing entry throws halfway, leaving
// the model half-restored. load_module() verifies the archive's CRC-32s, reads every tensor into a
// temporary, compares names and shapes, and only then copies: all or nothing.

#include "ardent/io/atomic_file.hpp"
#include "ardent/io/detail/zip.hpp"
#include "ardent/io/state_dict.hpp"

#include <torch/torch.h>

#include <fmt/format.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace ardent {

namespace io::detail {

/// The tensors to copy into a module once every one of them has been read and checked.
struct PendingLoad {
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // (the module's tensor, the file's)
  std::vector<std::string> missing;
  std::vector<std::string> shapes;

  bool ok() const { return missing.empty() && shapes.empty(); }
  std::string problems() const {
    return fmt::format("missing entries {}; wrongly shaped entries {}", ardent::detail::join_list(missing),
                       ardent::detail::join_list(shapes));
  }
  /// Copies every tensor read (cannot fail once shapes agree: dtypes convert).
  void commit() {
    torch::NoGradGuard no_grad;
    for (auto& [target, source] : copies) target.copy_(source);
  }
};

inline void read_tensor(torch::serialize::InputArchive& archive, const std::string& key, const std::string& name,
                        const torch::Tensor& target, bool is_buffer, PendingLoad& out) {
  torch::Tensor value;
  if (!archive.try_read(key, value, is_buffer) || !value.defined()) {
    out.missing.push_back(name);
  } else if (value.sizes() != target.sizes()) {
    out.shapes.push_back(fmt::format("{} (file [{}], model [{}])", name, fmt::join(value.sizes(), ", "),
                                     fmt::join(target.sizes(), ", ")));
  } else {
    out.copies.emplace_back(target, value);
  }
}

/// Reads what torch::nn::Module::save wrote for `module` (its own parameters and buffers by name,
/// each child in a nested archive), without changing the module.
inline void read_module(torch::nn::Module& module, torch::serialize::InputArchive& archive, const std::string& prefix,
                        PendingLoad& out) {
  for (const auto& p : module.named_parameters(/*recurse=*/false))
    read_tensor(archive, p.key(), prefix + p.key(), p.value(), false, out);
  for (const auto& b : module.named_buffers(/*recurse=*/false))
    read_tensor(archive, b.key(), prefix + b.key(), b.value(), true, out);
  for (const auto& child : module.named_children()) {
    torch::serialize::InputArchive sub;
    if (!archive.try_read(child.key(), sub)) {
      out.missing.push_back(prefix + child.key() + ".*");
      continue;
    }
    read_module(*child.value(), sub, prefix + child.key() + ".", out);
  }
}

/// The archive in `bytes` after checking its zip directory and CRC-32s; `who` and `path` start
/// each error.
inline torch::serialize::InputArchive open_module_archive(const std::string& bytes, const std::string& who,
                                                          const std::filesystem::path& path) {
  bool python_state_dict = false;
  try {
    TORCH_CHECK(bytes.rfind("PK\x03\x04", 0) == 0, "not a zip archive");
    CheckedArchive archive(bytes);
    python_state_dict = !archive.is_module_archive() && archive.has("data.pkl");
    if (!python_state_dict) archive.verify();
  } catch (const std::exception& e) {
    TORCH_CHECK(false, who, ": file '", path.string(),
                "' is corrupted or not an archive of torch::save: ", message_of(e));
  }
  TORCH_CHECK(!python_state_dict, who, ": file '", path.string(),
              "' holds a state dict written by Python's torch.save (or ardent::save_state_dict), not a torch::save "
              "archive: read it with ardent::load_state_dict(model, path)");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(bytes.data(), bytes.size());
  } catch (const std::exception& e) {
    TORCH_CHECK(false, who, ": file '", path.string(),
                "' cannot be read as an archive of torch::save: ", message_of(e));
  }
  return archive;
}

}  // namespace io::detail

/// Loads into `model` a module saved with `torch::save(model, path)` (LibTorch), like torch::load,
/// but checked: the file's CRC-32s must hold, every parameter and buffer must be present with the
/// model's shape, and otherwise the error names the file, the missing entries and each wrongly
/// shaped one with both shapes, and the model is left unchanged.
template <typename Impl>
void load_module(torch::nn::ModuleHolder<Impl>& model, const std::filesystem::path& path) {
  constexpr const char* who = "ardent::load_module";
  TORCH_CHECK(!model.is_empty(), who, ": argument 'model' is an empty module holder");
  const std::string bytes = io::read_file(path, who);
  auto archive = io::detail::open_module_archive(bytes, who, path);
  io::detail::PendingLoad pending;
  io::detail::read_module(*model, archive, "", pending);
  TORCH_CHECK(pending.ok(), who, ": the archive '", path.string(), "' does not match the model: ", pending.problems());
  pending.commit();
}

}  // namespace ardent
