#pragma once
// Training checkpoints: everything a resumed run needs to continue exactly as an uninterrupted one
// would on the CPU: the trained modules (student, connectors), the optimizer's state, the number of
// completed epochs and the global random generator's state (attack starts). The data order is a
// function of (seed, epoch) (data::ShuffledBatches), so it needs no state.
//
// A checkpoint is written to `<path>.tmp` and renamed into place: a crash while writing leaves the
// previous checkpoint intact.

#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>
#include <map>
#include <string>

namespace ardent::train {

struct Checkpoint {
  int64_t epochs_completed = 0;
  /// Named modules to save or restore (e.g. {"student", student.ptr()}, {"connectors", ...}).
  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules;
  torch::optim::Optimizer* optimizer = nullptr;
};

/// Writes the checkpoint atomically (temporary file, then rename).
inline void save_checkpoint(const Checkpoint& checkpoint, const std::filesystem::path& path) {
  torch::serialize::OutputArchive archive;
  archive.write("epochs_completed", c10::IValue(checkpoint.epochs_completed));
  for (const auto& [name, module] : checkpoint.modules) {
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
  auto temporary = path;
  temporary += ".tmp";
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  archive.save_to(temporary.string());
  std::filesystem::rename(temporary, path);
}

/// Restores modules, optimizer and random state in place; returns the number of completed epochs.
/// Throws with the path when the file is missing, truncated or lacks an entry.
inline int64_t load_checkpoint(Checkpoint& checkpoint, const std::filesystem::path& path) {
  TORCH_CHECK(std::filesystem::is_regular_file(path), "ardent::train::load_checkpoint: ", path.string(),
              ": no such file");
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path.string());
    c10::IValue epochs;
    archive.read("epochs_completed", epochs);
    for (auto& [name, module] : checkpoint.modules) {
      torch::serialize::InputArchive sub;
      archive.read("module." + name, sub);
      module->load(sub);
    }
    if (checkpoint.optimizer != nullptr) {
      torch::serialize::InputArchive sub;
      archive.read("optimizer", sub);
      checkpoint.optimizer->load(sub);
    }
    torch::Tensor rng;
    archive.read("rng_state", rng, /*is_buffer=*/true);
    auto generator = at::detail::getDefaultCPUGenerator();
    generator.set_state(rng);
    checkpoint.epochs_completed = epochs.toInt();
    return checkpoint.epochs_completed;
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "ardent::train::load_checkpoint: ", path.string(), ": not a readable ardent checkpoint (",
                e.what_without_backtrace(), ")");
  }
}

}  // namespace ardent::train
