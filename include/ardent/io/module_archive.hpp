#pragma once
// Reading and writing modules in LibTorch's `torch::save(model, path)` format, without running
// anything stored in the file.
//
// That format is a TorchScript archive: `data.pkl` pickles the module as an object whose state is
// a dict of its attributes (parameters, buffers, submodules, ints, strings), and `code/` holds
// the TorchScript source of its class. torch::load (torch::jit::load) compiles that source and
// runs the class's `__setstate__`, so a crafted file runs its own code when opened (an endless
// loop, a 1 GB allocation). ardent never does: it reads `data.pkl` with its own bounded pickle
// machine (io/detail/unpickler.hpp), never reads `code/`, and takes from the object tree only
// tensors, numbers, strings and nested attribute dicts. A class with `__getstate__` pickles some
// other state than an attribute dict; such a file is refused, its code unrun. A TorchScript
// *model* is code by nature: the example programs load one only when asked
// (`--teacher-format torchscript`), with torch::jit::load, as PyTorch's torch.jit.load does.
//
// load_module() also checks what torch::load does not: the archive's CRC-32s, and every name and
// shape (torch::load puts a width-32 tensor into a width-16 model); it reads every tensor into a
// temporary and copies only when all match: all or nothing. save_module() writes atomically.

#include "ardent/io/atomic_file.hpp"
#include "ardent/io/detail/unpickler.hpp"
#include "ardent/io/detail/zip.hpp"
#include "ardent/io/state_dict.hpp"

#include <torch/torch.h>

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ardent::io {

namespace detail {

/// The tensors to copy into a module once every one of them has been read and checked.
struct PendingLoad {
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // (the module's tensor, the file's)
  std::vector<std::string> missing;
  std::vector<std::string> shapes;

  bool ok() const { return missing.empty() && shapes.empty(); }
  std::string problems() const {
    return fmt::format("missing entries {}; wrongly shaped entries {}", detail::join_list(missing),
                       detail::join_list(shapes));
  }
  /// Copies every tensor read (cannot fail once shapes agree: dtypes convert).
  void commit() {
    torch::NoGradGuard no_grad;
    for (auto& [target, source] : copies) target.copy_(source);
  }
};

/// A module archive's object tree, read as data. Owns the bytes, the zip reader and the values.
class ModuleArchive {
 public:
  /// Checks the zip directory and every CRC-32, then unpickles `data.pkl`; errors start with
  /// `who` and the path.
  ModuleArchive(std::string bytes, const std::string& who, const std::filesystem::path& path)
      : bytes_(std::move(bytes)), where_(fmt::format("{}: file '{}'", who, path.string())) {
    bool python_state_dict = false;
    try {
      TORCH_CHECK(bytes_.rfind("PK\x03\x04", 0) == 0, "not a zip archive");
      zip_.emplace(bytes_);
      python_state_dict = !zip_->is_module_archive() && zip_->has("data.pkl");
      if (!python_state_dict) {
        zip_->verify();
        auto [pkl, pkl_size] = zip_->record("data.pkl");
        pickle_ = pkl;
        unpickler_.emplace(static_cast<const char*>(pkl->get()), pkl_size,
                           [this](const std::string& name) { return zip_->record(name); });
        root_ = unpickler_->run();
      }
    } catch (const std::exception& e) {
      TORCH_CHECK(false, where_, " is corrupted or not an archive of torch::save: ", message_of(e));
    }
    TORCH_CHECK(
        !python_state_dict, where_,
        " holds a state dict written by Python's torch.save (or ardent::io::save_state_dict), not a torch::save "
        "archive: read it with ardent::io::load_state_dict(model, path)");
    attributes(*root_, "the archive");  // the top is a module object
  }

  ModuleArchive(const ModuleArchive&) = delete;  // the readers point into bytes_ and this
  ModuleArchive& operator=(const ModuleArchive&) = delete;

  const Value& root() const { return *root_; }
  const std::string& where() const { return where_; }

  /// The attribute dict of a module object; throws naming `what` for anything else.
  const Value& attributes(const Value& object, std::string_view what) const {
    TORCH_CHECK(object.kind == Value::Kind::Object, where_, ": ", what, " is ", with_article(object.kind),
                ", expected a module object");
    TORCH_CHECK(object.state != nullptr && object.state->kind == Value::Kind::Dict, where_, ": ", what, " (class ",
                object.text, ".", object.name, ") has ",
                object.state == nullptr ? std::string("no state") : with_article(object.state->kind) + " as its state",
                ", expected a dict of attributes (a class with its own __setstate__ stores code that ardent does not "
                "run; load a TorchScript model with torch::jit::load only if you trust its author)");
    return *object.state;
  }

  /// The attribute `key` of a module object, or nullptr.
  static const Value* attribute(const Value& attributes, std::string_view key) {
    const auto* found = find_key(attributes, key);
    return found != nullptr ? *found : nullptr;
  }

 private:
  std::string bytes_;
  std::string where_;
  std::optional<CheckedArchive> zip_;
  std::shared_ptr<at::DataPtr> pickle_;
  std::optional<Unpickler> unpickler_;
  Value* root_ = nullptr;
};

/// Reads what torch::nn::Module::save wrote for `module` (its own parameters and buffers by name,
/// each child a nested module object), without changing the module. `depth` bounds the walk.
inline void read_module(const ModuleArchive& archive, torch::nn::Module& module, const Value& object,
                        const std::string& prefix, PendingLoad& out, std::size_t depth = 0) {
  TORCH_CHECK(depth < kMaxPickleDepth, archive.where(), ": modules nest deeper than ", kMaxPickleDepth, " levels");
  const Value& attributes = archive.attributes(object, prefix.empty() ? "the module" : "module '" + prefix + "'");
  const auto read_tensor = [&](const std::string& key, const torch::Tensor& target) {
    const Value* value = ModuleArchive::attribute(attributes, key);
    const std::string name = prefix + key;
    if (value == nullptr || value->kind != Value::Kind::Tensor) {
      out.missing.push_back(name);
    } else if (value->tensor.sizes() != target.sizes()) {
      out.shapes.push_back(fmt::format("{} (file [{}], model [{}])", name, fmt::join(value->tensor.sizes(), ", "),
                                       fmt::join(target.sizes(), ", ")));
    } else {
      out.copies.emplace_back(target, value->tensor);
    }
  };
  for (const auto& p : module.named_parameters(/*recurse=*/false)) read_tensor(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/false)) read_tensor(b.key(), b.value());
  for (const auto& child : module.named_children()) {
    const Value* sub = ModuleArchive::attribute(attributes, child.key());
    if (sub == nullptr || sub->kind != Value::Kind::Object) {
      out.missing.push_back(prefix + child.key() + ".*");
      continue;
    }
    read_module(archive, *child.value(), *sub, prefix + child.key() + ".", out, depth + 1);
  }
}

/// An attribute name as OutputArchive writes them (`exp_avg`, `param_groups/0`, `0x55ba37a56ed0`):
/// the rebuilt archive below only ever holds such names.
inline bool plain_attribute_name(std::string_view name) {
  return !name.empty() && name.size() <= 256 &&
         name.find_first_not_of(
             "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
             "0123456789_./") == std::string_view::npos;
}

/// A value of the object tree as an IValue: numbers, strings, tensors, and tuples or lists of them.
inline c10::IValue plain_ivalue(const ModuleArchive& archive, const Value& v, const std::string& name) {
  using K = Value::Kind;
  switch (v.kind) {
    case K::None:
      return {};
    case K::Bool:
      return v.boolean;
    case K::Int:
      return v.integer;
    case K::Float:
      return v.real;
    case K::String:
      return v.text;
    case K::Tensor:
      return v.tensor;
    case K::Tuple: {
      std::vector<c10::IValue> items;
      for (const auto* item : v.items) {
        TORCH_CHECK(item->kind != K::Tuple && item->kind != K::List, archive.where(), ": attribute '", name,
                    "' nests containers, which a module archive of ardent never holds");
        items.push_back(plain_ivalue(archive, *item, name));
      }
      return c10::ivalue::Tuple::create(std::move(items));
    }
    case K::List: {
      const auto all = [&v](K kind) {
        return std::all_of(v.items.begin(), v.items.end(), [kind](const Value* i) { return i->kind == kind; });
      };
      if (all(K::Tensor)) {
        c10::List<at::Tensor> list;
        for (const auto* item : v.items) list.push_back(item->tensor);
        return list;
      }
      if (all(K::Int)) {
        c10::List<int64_t> list;
        for (const auto* item : v.items) list.push_back(item->integer);
        return list;
      }
      if (all(K::Float)) {
        c10::List<double> list;
        for (const auto* item : v.items) list.push_back(item->real);
        return list;
      }
      break;
    }
    default:
      break;
  }
  TORCH_CHECK(false, archive.where(), ": attribute '", name, "' is ", with_article(v.kind),
              ", expected a number, a string, a tensor, or a tuple or list of them");
}

/// The module object `object` rebuilt as a LibTorch archive from its data alone, for readers
/// that take a torch::serialize::InputArchive (an optimizer's load): the values are written into
/// a fresh OutputArchive, whose classes ardent generates, and read back. Nothing of the file's
/// code takes part, and attribute names are limited to plain_attribute_name so that no name can
/// become code in the generated classes.
inline void rebuild_archive(const ModuleArchive& archive, const Value& object, const std::string& what,
                            torch::serialize::OutputArchive& out, std::size_t depth = 0) {
  TORCH_CHECK(depth < kMaxPickleDepth, archive.where(), ": modules nest deeper than ", kMaxPickleDepth, " levels");
  for (const auto& [k, v] : archive.attributes(object, what).dict) {
    TORCH_CHECK(k->kind == Value::Kind::String && plain_attribute_name(k->text), archive.where(), ": ", what,
                " has an attribute named ",
                k->kind == Value::Kind::String ? "'" + k->text + "'" : with_article(k->kind),
                ", expected letters, digits, '_', '.' and '/'");
    if (v->kind == Value::Kind::Object) {
      torch::serialize::OutputArchive sub(out.compilation_unit());  // one unit, as Module::save does
      rebuild_archive(archive, *v, what + "." + k->text, sub, depth + 1);
      out.write(k->text, sub);
    } else {
      out.write(k->text, plain_ivalue(archive, *v, k->text));
    }
  }
}

inline torch::serialize::InputArchive input_archive(const ModuleArchive& archive, const Value& object,
                                                    const std::string& what) {
  torch::serialize::OutputArchive rebuilt;
  rebuild_archive(archive, object, what, rebuilt);
  std::string bytes;
  rebuilt.save_to([&bytes](const void* data, std::size_t size) {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  torch::serialize::InputArchive in;
  in.load_from(bytes.data(), bytes.size());
  return in;
}

/// What torch::save(module, path) writes, as bytes.
inline std::string module_bytes(const torch::nn::Module& module) {
  torch::serialize::OutputArchive archive;
  module.save(archive);
  std::string bytes;
  archive.save_to([&bytes](const void* data, std::size_t size) {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  return bytes;
}

}  // namespace detail

/// Loads into `model` a module saved with `torch::save(model, path)` (LibTorch) or save_module,
/// like torch::load, but without running code from the file (see above) and checked: the file's
/// CRC-32s must hold, every parameter and buffer must be present with the model's shape, and
/// otherwise the error names the file, the missing entries and each wrongly shaped one with both
/// shapes, and the model is left unchanged.
template <typename Impl>
void load_module(torch::nn::ModuleHolder<Impl>& model, const std::filesystem::path& path) {
  constexpr const char* who = "ardent::io::load_module";
  TORCH_CHECK(!model.is_empty(), who, ": argument 'model' is an empty module holder");
  const io::detail::ModuleArchive archive(io::read_file(path, who), who, path);
  io::detail::PendingLoad pending;
  io::detail::read_module(archive, *model, archive.root(), "", pending);
  TORCH_CHECK(pending.ok(), who, ": the archive '", path.string(), "' does not match the model: ", pending.problems());
  pending.commit();
}

/// Saves `model` as `torch::save(model, path)` does (torch::load and load_module read it), but
/// atomically (io::write_file_atomically): a crash or a full disk leaves any previous file intact,
/// and a failure is an error naming the file.
template <typename Impl>
void save_module(const torch::nn::ModuleHolder<Impl>& model, const std::filesystem::path& path) {
  TORCH_CHECK(!model.is_empty(), "ardent::io::save_module: argument 'model' is an empty module holder");
  io::write_file_atomically(path, io::detail::module_bytes(*model), "ardent::io::save_module");
}

}  // namespace ardent::io
