#pragma once
// Reading and writing PyTorch state dicts: the files Python writes with
// `torch.save(model.state_dict(), path)` (the zip format, PyTorch >= 1.6) and reads with
// `model.load_state_dict(torch.load(path))`.
//
// read_state_dict() checks the zip directory and every record's CRC-32 (zip.hpp) and runs
// ardent's own pickle machine (unpickler.hpp), which no input can crash: see docs/reliability.md.
// Writing uses torch::pickle_save, whose output `torch.load` reads in Python (a plain dict, which
// `load_state_dict` accepts), through io::write_file_atomically.

#include "ardent/io/atomic_file.hpp"
#include "ardent/io/detail/unpickler.hpp"
#include "ardent/io/detail/zip.hpp"

#include <torch/torch.h>

#include <fmt/format.h>

#include <concepts>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ardent::io {

namespace detail {

inline std::string message_of(const std::exception& e) {
  const auto* c10 = dynamic_cast<const c10::Error*>(&e);
  return c10 != nullptr ? c10->what_without_backtrace() : e.what();
}

/// The state dict in the bytes of a torch.save file; `where` starts every error message.
inline torch::OrderedDict<std::string, torch::Tensor> state_dict_from_bytes(std::string_view bytes,
                                                                            const std::string& where) {
  using detail::Value;
  TORCH_CHECK(!bytes.empty(), where, " is empty, expected a state dict written by torch.save");
  if (bytes.rfind("PK\x03\x04", 0) != 0) {
    TORCH_CHECK(static_cast<unsigned char>(bytes[0]) != 0x80, where,
                " is in the legacy torch.save format (PyTorch < 1.6 or _use_new_zipfile_serialization=False), "
                "expected the zip format; re-save it in Python with torch.save(torch.load(old_path), new_path)");
    TORCH_CHECK(false, where, " is not a zip archive, expected a state dict written by torch.save");
  }
  std::optional<CheckedArchive> archive;
  std::optional<Unpickler> unpickler;
  Value* root = nullptr;
  bool module_archive = false;
  try {
    archive.emplace(bytes);
    module_archive = archive->is_module_archive();
    if (!module_archive) {
      auto [pkl, pkl_size] = archive->record("data.pkl");
      unpickler.emplace(static_cast<const char*>(pkl->get()), pkl_size,
                        [&archive](const std::string& name) { return archive->record(name); });
      root = unpickler->run();
    }
  } catch (const std::exception& e) {
    TORCH_CHECK(false, where, " is truncated or malformed: ", message_of(e));
  }
  TORCH_CHECK(
      !module_archive, where,
      " was written by LibTorch's torch::save (a module archive, like models/fashion_teacher.pt or an "
      "ardent checkpoint), not by Python's torch.save of a state dict: read a module with "
      "ardent::io::load_module(model, path) (or torch::load), a checkpoint with ardent::train::load_checkpoint");
  TORCH_CHECK(root->kind == Value::Kind::Dict, where, " holds ", with_article(root->kind),
              ", expected a state dict (a dict of tensors)");
  const Value* dict = root;
  for (const char* nested : {"state_dict", "model"}) {
    if (const auto* inner = find_key(*root, nested); inner != nullptr && (*inner)->kind == Value::Kind::Dict) {
      dict = *inner;
      break;
    }
  }
  torch::OrderedDict<std::string, torch::Tensor> out("key");
  for (const auto& [k, v] : dict->dict) {
    TORCH_CHECK(k->kind == Value::Kind::String, where, " has a state dict key of type ", kind_name(k->kind),
                ", expected str");
    TORCH_CHECK(v->kind == Value::Kind::Tensor, where, " has state dict entry '", k->text, "' of type ",
                kind_name(v->kind), ", expected a Tensor");
    TORCH_CHECK(!out.contains(k->text), where, " has state dict key '", k->text, "' twice");
    out.insert(k->text, v->tensor);
  }
  return out;
}

}  // namespace detail

/// Reads the state dict in a file written by Python's `torch.save` (zip format). The file may hold
/// the state dict itself or a checkpoint dict with the state dict under "state_dict" or "model".
/// Keys are returned as stored (a DataParallel `module.` prefix is kept; load_state_dict strips it).
/// Tensors are views of their storages, as torch.load gives them. Throws naming the file when it
/// is missing, empty, legacy, not a zip archive, corrupted (a record fails its CRC-32), malformed,
/// nested deeper than io::kMaxPickleDepth, or a LibTorch torch::save archive.
inline torch::OrderedDict<std::string, torch::Tensor> read_state_dict(const std::filesystem::path& path) {
  const std::string where = fmt::format("ardent::io::read_state_dict: file '{}'", path.string());
  const std::string bytes = io::read_file(path, "ardent::io::read_state_dict");
  return io::detail::state_dict_from_bytes(bytes, where);
}

/// Writes named tensors in the format of Python's `torch.save(state_dict, path)`, atomically
/// (io::write_file_atomically: a crash leaves any previous file intact).
inline void write_state_dict(const torch::OrderedDict<std::string, torch::Tensor>& tensors,
                             const std::filesystem::path& path) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
  for (const auto& item : tensors) dict.insert(item.key(), item.value().detach().to(torch::kCPU).contiguous());
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
  io::write_file_atomically(path, std::string_view(bytes.data(), bytes.size()), "ardent::io::save_state_dict");
}

namespace detail {

/// A model may declare keys of a reference checkpoint it knowingly does not hold (WideResNet's
/// unused `sub_block1`): `bool ignores_state_dict_key(const std::string&) const`.
template <typename Impl>
concept IgnoresStateDictKeys = requires(const Impl& m, const std::string& key) {
  { m.ignores_state_dict_key(key) } -> std::convertible_to<bool>;
};

inline std::string join_list(const std::vector<std::string>& items) {
  constexpr std::size_t shown = 40;
  std::string out = "[";
  for (std::size_t i = 0; i < items.size() && i < shown; ++i) out += (i ? ", " : "") + items[i];
  if (items.size() > shown) out += fmt::format(", ... and {} more", items.size() - shown);
  return out + "]";
}

template <typename Ignore>
void load_into(torch::nn::Module& module, const std::filesystem::path& path, Ignore&& ignore) {
  auto file = read_state_dict(path);
  bool all_prefixed = !file.is_empty();
  for (const auto& item : file) all_prefixed = all_prefixed && item.key().rfind("module.", 0) == 0;

  std::map<std::string, torch::Tensor> targets;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) targets.emplace(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) targets.emplace(b.key(), b.value());

  std::vector<std::string> unexpected;
  std::vector<std::string> shapes;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  std::map<std::string, bool> seen;
  for (const auto& item : file) {
    const std::string key = all_prefixed ? item.key().substr(7) : item.key();
    auto it = targets.find(key);
    if (it == targets.end()) {
      if (!ignore(key)) unexpected.push_back(key);
      continue;
    }
    seen[key] = true;
    if (it->second.sizes() != item.value().sizes()) {
      shapes.push_back(fmt::format("{} (file [{}], model [{}])", key, fmt::join(item.value().sizes(), ", "),
                                   fmt::join(it->second.sizes(), ", ")));
      continue;
    }
    copies.emplace_back(it->second, item.value());
  }
  std::vector<std::string> missing;
  for (const auto& [key, tensor] : targets) {
    if (!seen.count(key)) missing.push_back(key);
  }
  if (!missing.empty() || !unexpected.empty() || !shapes.empty()) {
    TORCH_CHECK(false, fmt::format("ardent::io::load_state_dict: the state dict in '{}' does not match the model: "
                                   "missing keys {}; unexpected keys {}; wrongly shaped keys {}",
                                   path.string(), join_list(missing), join_list(unexpected), join_list(shapes)));
  }
  torch::NoGradGuard no_grad;
  for (auto& [target, source] : copies) target.copy_(source);
}

}  // namespace detail

/// Loads a state dict written by Python's `torch.save(model.state_dict(), path)` (zip format), or
/// by save_state_dict, into `model`: parameters and buffers (BatchNorm's num_batches_tracked
/// included), a DataParallel `module.` prefix stripped, a checkpoint's "state_dict" or "model"
/// entry used when present. Every key must match in name and shape; otherwise one error lists the
/// missing, the unexpected and the wrongly shaped keys (with both shapes), and the model is left
/// unchanged. A file written by LibTorch's torch::save is refused with the name of the function
/// that reads it (ardent::io::load_module).
template <typename Impl>
void load_state_dict(torch::nn::ModuleHolder<Impl>& model, const std::filesystem::path& path) {
  TORCH_CHECK(!model.is_empty(), "ardent::io::load_state_dict: argument 'model' is an empty module holder");
  const Impl& impl = *model;
  detail::load_into(*model, path, [&impl](const std::string& key) {
    if constexpr (detail::IgnoresStateDictKeys<Impl>) {
      return static_cast<bool>(impl.ignores_state_dict_key(key));
    } else {
      (void)impl;
      (void)key;
      return false;
    }
  });
}

/// The same for a module held by std::shared_ptr.
template <typename Impl>
requires std::derived_from<Impl, torch::nn::Module>
void load_state_dict(const std::shared_ptr<Impl>& model, const std::filesystem::path& path) {
  TORCH_CHECK(model != nullptr, "ardent::io::load_state_dict: argument 'model' is a null pointer");
  torch::nn::ModuleHolder<Impl> holder(model);
  load_state_dict(holder, path);
}

/// The parameters and buffers of `module`, by their dotted names.
inline torch::OrderedDict<std::string, torch::Tensor> state_dict_of(const torch::nn::Module& module) {
  torch::OrderedDict<std::string, torch::Tensor> out("key");
  for (const auto& p : module.named_parameters(/*recurse=*/true)) out.insert(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) out.insert(b.key(), b.value());
  return out;
}

/// Saves `model`'s parameters and buffers so that Python reads them with
/// `model.load_state_dict(torch.load(path))`, and ardent with load_state_dict.
template <typename Impl>
void save_state_dict(const torch::nn::ModuleHolder<Impl>& model, const std::filesystem::path& path) {
  TORCH_CHECK(!model.is_empty(), "ardent::io::save_state_dict: argument 'model' is an empty module holder");
  write_state_dict(state_dict_of(*model), path);
}

}  // namespace ardent::io
