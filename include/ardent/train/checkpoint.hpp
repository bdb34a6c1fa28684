#pragma once
// Training checkpoints: everything a resumed run needs to continue exactly as an uninterrupted one
// would on the CPU: the trained modules (student, connectors), the optimizer's state, the number of
// completed epochs, the global random generator's state (attack starts), the options that define
// the run and the metrics rows written so far. The data order is a function of (seed, epoch)
// (data::ShuffledBatches), so it needs no state.
//
// Writing (save_checkpoint): the archive goes to a temporary file, is flushed, read back and
// verified (zip directory and every CRC-32), the current checkpoint is kept as
// `<stem>.prev<ext>` (a hard link), and only then is the new one renamed into place. A kill at any
// moment leaves a readable checkpoint under `path` (the old or the new one).
//
// Reading (load_checkpoint): the file is read as data, never run (io/module_archive.hpp: LibTorch's
// torch::load would compile and run the TorchScript code stored in it); the CRC-32 of every record
// is checked (LibTorch's reader skips it),
// the stored run options are compared with the caller's, every tensor is read into a temporary and
// its shape compared, and only then is anything changed: all or nothing. Every error names the file.

#include "ardent/io/atomic_file.hpp"
#include "ardent/io/detail/zip.hpp"
#include "ardent/io/module_archive.hpp"

#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include <signal.h>

#include <cerrno>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <system_error>

namespace ardent::train {

struct Checkpoint {
  int64_t epochs_completed = 0;
  /// Named modules to save or restore (e.g. {"student", student.ptr()}, {"connectors", ...}).
  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules;
  torch::optim::Optimizer* optimizer = nullptr;
  /// The options that define the run (e.g. {"width", "2"}, {"epsilon", "0.1"}). Saved; on load,
  /// when both the file and the caller have some, they must agree key by key.
  std::map<std::string, std::string> run_options;
  /// The metrics CSV as of `epochs_completed` (header and rows); train_loop rewrites the metrics
  /// file from it on resume, so that the file and the checkpoint always agree.
  std::string metrics;
};

/// Version of the checkpoint layout; 1 (ardent 0.1.0) had no options, metrics or version entry.
inline constexpr int64_t kCheckpointFormat = 2;

/// Where save_checkpoint keeps the previous checkpoint: `checkpoint.pt` -> `checkpoint.prev.pt`.
inline std::filesystem::path previous_checkpoint_path(const std::filesystem::path& path) {
  auto prev = path;
  prev.replace_filename(path.stem().string() + ".prev" + path.extension().string());
  return prev;
}

namespace detail {

/// Keeps the current checkpoint as the previous one (a hard link, else a copy), atomically.
inline void keep_previous(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return;
  const auto prev = previous_checkpoint_path(path);
  const auto tmp = io::temporary_path(prev);
  std::filesystem::remove(tmp, ec);
  std::filesystem::create_hard_link(path, tmp, ec);
  if (ec) std::filesystem::copy_file(path, tmp, std::filesystem::copy_options::overwrite_existing, ec);
  TORCH_CHECK(!ec, "ardent::train::save_checkpoint: cannot keep '", path.string(), "' as '", prev.string(),
              "': ", ec.message());
  std::filesystem::rename(tmp, prev, ec);
  TORCH_CHECK(!ec, "ardent::train::save_checkpoint: cannot rename '", tmp.string(), "' to '", prev.string(),
              "': ", ec.message());
}

inline std::string options_json(const std::map<std::string, std::string>& options) {
  return nlohmann::json(options).dump();
}

}  // namespace detail

/// Writes the checkpoint: verified, with the previous one kept, atomically (see above).
inline void save_checkpoint(const Checkpoint& checkpoint, const std::filesystem::path& path) {
  constexpr const char* who = "ardent::train::save_checkpoint";
  torch::serialize::OutputArchive archive;
  archive.write("ardent_checkpoint", c10::IValue(kCheckpointFormat));
  archive.write("epochs_completed", c10::IValue(checkpoint.epochs_completed));
  archive.write("run_options", c10::IValue(detail::options_json(checkpoint.run_options)));
  archive.write("metrics", c10::IValue(checkpoint.metrics));
  for (const auto& [name, module] : checkpoint.modules) {
    TORCH_CHECK(module != nullptr, who, ": module '", name, "' is a null pointer");
    torch::serialize::OutputArchive sub;
    module->save(sub);
    archive.write("module." + name, sub);
  }
  if (checkpoint.optimizer != nullptr) {
    torch::serialize::OutputArchive sub;
    checkpoint.optimizer->save(sub);
    archive.write("optimizer", sub);
  }
  archive.write("rng_state", at::detail::getDefaultCPUGenerator().get_state(), /*is_buffer=*/true);
  std::string bytes;
  archive.save_to([&bytes](const void* data, std::size_t size) {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  io::remove_stale_temporaries(previous_checkpoint_path(path));  // write_file_atomically does it for `path`
  io::write_file_atomically(path, bytes, who, [&](const std::filesystem::path& written) {
    const std::string back = io::read_file(written, who);
    TORCH_CHECK(back == bytes, who, ": '", written.string(), "' reads back different from what was written");
    io::detail::CheckedArchive(back).verify();
    detail::keep_previous(path);
  });
}

/// Restores modules, optimizer, random state and metrics in place; returns the number of completed
/// epochs. Throws, naming the file and changing nothing, when the file is missing, corrupted (a
/// CRC-32 fails), not a checkpoint, written with other run options (naming the option and both
/// values), or lacks an entry or has one of another shape (naming it and both shapes).
inline int64_t load_checkpoint(Checkpoint& checkpoint, const std::filesystem::path& path) {
  constexpr const char* who = "ardent::train::load_checkpoint";
  std::error_code ec;
  TORCH_CHECK(std::filesystem::is_regular_file(path, ec), who, ": ", path.string(), ": no such file");
  std::string bytes = io::read_file(path, who);
  const auto prev = previous_checkpoint_path(path);
  const std::string fallback = std::filesystem::is_regular_file(prev, ec)
                                   ? " (the previous checkpoint '" + prev.string() + "' is kept: move it to '" +
                                         path.string() + "' to resume)"
                                   : "";
  try {
    TORCH_CHECK(bytes.rfind("PK\x03\x04", 0) == 0, "not a zip archive");
    io::detail::CheckedArchive(bytes).verify();
  } catch (const std::exception& e) {
    TORCH_CHECK(false, who, ": ", path.string(), ": corrupted or not an ardent checkpoint: ", io::detail::message_of(e),
                fallback);
  }
  // Read as data: no code stored in the file runs (io/module_archive.hpp).
  const io::detail::ModuleArchive archive(std::move(bytes), who, path);
  const auto& entries = archive.attributes(archive.root(), "the checkpoint");
  try {
    using Kind = io::detail::Value::Kind;
    const auto entry = [&entries](std::string_view key, Kind kind) {
      const auto* value = io::detail::ModuleArchive::attribute(entries, key);
      return value != nullptr && value->kind == kind ? value : nullptr;
    };
    const auto* epochs = entry("epochs_completed", Kind::Int);
    TORCH_CHECK(epochs != nullptr, "no 'epochs_completed' entry");
    std::map<std::string, std::string> stored;
    std::string stored_metrics;
    if (const auto* format = io::detail::ModuleArchive::attribute(entries, "ardent_checkpoint"); format != nullptr) {
      TORCH_CHECK(format->kind == Kind::Int && format->integer <= kCheckpointFormat, "checkpoint format ",
                  format->kind == Kind::Int ? std::to_string(format->integer) : "?", " is newer than this ardent's ",
                  kCheckpointFormat);
      const auto* options = entry("run_options", Kind::String);
      const auto* metrics = entry("metrics", Kind::String);
      TORCH_CHECK(options != nullptr, "no 'run_options' entry");
      TORCH_CHECK(metrics != nullptr, "no 'metrics' entry");
      const auto json = nlohmann::json::parse(options->text, nullptr, /*allow_exceptions=*/false);
      TORCH_CHECK(json.is_object(), "'run_options' is not a JSON object");
      for (const auto& [key, value] : json.items()) {
        TORCH_CHECK(value.is_string(), "run option '", key, "' is not a string");
        stored[key] = value.get<std::string>();
      }
      stored_metrics = metrics->text;
    }
    if (!stored.empty() && !checkpoint.run_options.empty()) {
      for (const auto& [key, value] : checkpoint.run_options) {
        const auto it = stored.find(key);
        TORCH_CHECK(it != stored.end(), "option '", key, "' is ", value, " now but absent from the checkpoint");
        TORCH_CHECK(it->second == value, "option '", key, "' is ", value, " now but was ", it->second,
                    " in the checkpoint; resume with the checkpoint's options or start a new run");
      }
      for (const auto& [key, value] : stored) {
        TORCH_CHECK(checkpoint.run_options.count(key), "option '", key, "' was ", value,
                    " in the checkpoint and is not given now");
      }
    }
    // Everything read into temporaries and checked first.
    io::detail::PendingLoad pending;
    for (auto& [name, module] : checkpoint.modules) {
      TORCH_CHECK(module != nullptr, "module '", name, "' is a null pointer");
      const auto* sub = entry("module." + name, Kind::Object);
      if (sub == nullptr) {
        pending.missing.push_back("module." + name);
        continue;
      }
      io::detail::read_module(archive, *module, *sub, name + ".", pending);
    }
    TORCH_CHECK(pending.ok(), "the checkpoint does not match the modules: ", pending.problems());
    const auto* rng_entry = entry("rng_state", Kind::Tensor);
    TORCH_CHECK(rng_entry != nullptr, "no 'rng_state' entry");
    const torch::Tensor rng = rng_entry->tensor.contiguous();
    auto generator = at::detail::getDefaultCPUGenerator();
    const torch::Tensor rng_before = generator.get_state();
    generator.set_state(rng);  // validates the state; undone below on any later failure
    if (checkpoint.optimizer != nullptr) {
      const auto* optimizer_entry = entry("optimizer", Kind::Object);
      if (optimizer_entry == nullptr) {
        generator.set_state(rng_before);
        TORCH_CHECK(false, "no 'optimizer' entry");
      }
      torch::serialize::InputArchive sub;
      try {
        sub = io::detail::input_archive(archive, *optimizer_entry, "the optimizer");
      } catch (...) {
        generator.set_state(rng_before);
        throw;
      }
      // The optimizer loads in place: keep its state to put it back if the load fails.
      torch::serialize::OutputArchive saved;
      checkpoint.optimizer->save(saved);
      std::ostringstream backup;
      saved.save_to(backup);
      try {
        checkpoint.optimizer->load(sub);
      } catch (...) {
        std::istringstream in(backup.str());
        torch::serialize::InputArchive restore;
        restore.load_from(in);
        checkpoint.optimizer->load(restore);
        generator.set_state(rng_before);
        throw;
      }
    }
    pending.commit();
    checkpoint.epochs_completed = epochs->integer;
    checkpoint.metrics = stored_metrics;
    return checkpoint.epochs_completed;
  } catch (const std::exception& e) {
    TORCH_CHECK(false, who, ": ", path.string(), ": ", io::detail::message_of(e));
  }
}

}  // namespace ardent::train
