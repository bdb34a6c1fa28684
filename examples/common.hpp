#pragma once
// Pieces shared by the example programs: Fashion-MNIST loading with optional subsets, the Madry PGD
// they train with, and the clean / PGD accuracy (and train_loop options) used to follow training.
// Under scripts/launch.sh (several processes), the accuracy is computed on each rank's shard of the
// test set and the counts are summed, and only rank 0 writes to stdout and to files.

#include <ardent/ardent.hpp>
#include <ardent/distributed.hpp>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <thread>

namespace examples {

/// Images and labels of a data set, or of its first samples (not to be confused with the data
/// sets' own Split enums, Train and Test).
struct Subset {
  torch::Tensor images;
  torch::Tensor labels;
};

/// The first `limit` samples (0: all).
inline Subset take(const ardent::data::MNIST& set, int64_t limit) {
  const int64_t n = limit > 0 ? std::min<int64_t>(limit, set.images().size(0)) : set.images().size(0);
  return {set.images().slice(0, 0, n), set.labels().slice(0, 0, n)};
}

/// OMP_NUM_THREADS when set (scripts/launch.sh sets cores / processes), else all cores.
inline int default_threads() {
  if (const char* value = std::getenv("OMP_NUM_THREADS"); value != nullptr && std::atoi(value) > 0)
    return std::atoi(value);
  return static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
}

/// True on rank 0 of a multi-process run (and in a single process): the rank that writes files.
inline bool main_rank() { return ardent::distributed::world().is_main(); }

/// Joins the world (if launched as several processes) and silences stdout on ranks other than 0.
inline void quiet_unless_main() {
  if (!main_rank() && std::freopen("/dev/null", "w", stdout) == nullptr) std::perror("freopen");
}

/// quiet_unless_main(), the thread count, and glibc's malloc keeping freed memory for the attacks'
/// fixed-shape passes (an explicit opt-in of the program: ardent itself never changes the allocator).
inline void set_threads(int threads) {
  quiet_unless_main();
  torch::set_num_threads(threads);
  const bool kept = ardent::keep_freed_memory();
  const auto& world = ardent::distributed::world();
  fmt::print("LibTorch {}, {} threads{}{}\n", TORCH_VERSION, torch::get_num_threads(),
             world.size() > 1 ? fmt::format(" x {} processes", world.size()) : "",
             kept ? ", freed memory kept for reuse" : "");
}

/// How many times torchrun restarted this worker's group after a failure (its
/// TORCHELASTIC_RESTART_COUNT; 0 when unset, as at a first start). A malformed value is a
/// command-line error (exit code 105, like a bad option).
inline int64_t restart_count() {
  const char* value = std::getenv("TORCHELASTIC_RESTART_COUNT");
  if (value == nullptr || *value == '\0') return 0;
  char* end = nullptr;
  const long long count = std::strtoll(value, &end, 10);
  if (*end != '\0' || count < 0) {
    throw CLI::ValidationError("TORCHELASTIC_RESTART_COUNT",
                               fmt::format("environment variable is '{}', expected an integer >= 0", value));
  }
  return count;
}

/// `--resume` or `--resume auto`: continue from <out>/checkpoint.pt when it exists, start fresh
/// otherwise. A worker that torchrun (or scripts/launch.sh --max-restarts) restarted behaves as
/// `--resume auto` without the flag, so that an elastic restart continues the run.
inline void add_resume_option(CLI::App& app, bool& resume) {
  app.add_option_function<std::string>(
         "--resume", [&resume](const std::string&) { resume = true; },
         "Continue from <out>/checkpoint.pt if it exists ('auto' says so explicitly; implied when torchrun "
         "restarted this worker)")
      ->expected(0, 1)
      ->check(CLI::IsMember({"auto"}));
  app.parse_complete_callback([&resume] {
    if (restart_count() > 0) resume = true;
  });
}

/// Accuracy on (x, y) after `attack`, in batches (each rank its shard); the model is left in the
/// mode it had.
template <ardent::Model M, typename A>
double accuracy_under(M& model, const A& attack, const Subset& data, int64_t batch_size = 500) {
  const ardent::ModeGuard eval(model);
  const auto& world = ardent::distributed::world();
  const auto images = ardent::distributed::shard(data.images, world);
  const auto labels = ardent::distributed::shard(data.labels, world);
  int64_t correct = 0;
  for (int64_t first = 0; first < images.size(0); first += batch_size) {
    const auto x = images.slice(0, first, first + batch_size);
    const auto y = labels.slice(0, first, first + batch_size);
    const auto x_adv = attack.perturb(model, x, y);
    torch::NoGradGuard no_grad;
    correct += ardent::forward(model, x_adv).argmax(1).eq(y).sum().template item<int64_t>();
  }
  correct = ardent::distributed::sum_counts(world, {correct})[0];
  return static_cast<double>(correct) / static_cast<double>(data.images.size(0));
}

/// PGD within `epsilon` with Madry et al.'s step size, 2.5 eps / steps: the training attack of every
/// adversarial recipe in the examples.
inline ardent::attacks::PGDOptions madry_pgd_options(double epsilon, int64_t steps) {
  return ardent::attacks::PGDOptions(epsilon).step_size(ardent::attacks::madry_step_size(epsilon, steps)).steps(steps);
}

inline ardent::attacks::PGD pgd(double epsilon, int64_t steps) {
  return ardent::attacks::PGD(madry_pgd_options(epsilon, steps));
}

/// The train_loop options of the training examples: `epochs` epochs with a checkpoint and
/// metrics.csv in `dir` (resumed from it when `resume`), and after each epoch the clean and PGD-20
/// accuracy of `model` on `test` (columns test_clean and test_pgd20; `test` must outlive the loop).
template <ardent::Model M>
ardent::train::LoopOptions epoch_loop(M model, const Subset& test, double epsilon, const std::filesystem::path& dir,
                                      int64_t epochs, bool resume, int64_t eval_batch_size = 500) {
  ardent::train::LoopOptions loop;
  loop.epochs = epochs;
  loop.checkpoint = dir / "checkpoint.pt";
  loop.resume = resume;
  loop.metrics_csv = dir / "metrics.csv";
  loop.evaluation_columns = {"test_clean", "test_pgd20"};
  loop.evaluate = [model, &test, epsilon, eval_batch_size](int64_t) mutable {
    return std::map<std::string, double>{
        {"test_clean", accuracy_under(model, ardent::attacks::None(), test, eval_batch_size)},
        {"test_pgd20", accuracy_under(model, pgd(epsilon, 20), test, eval_batch_size)}};
  };
  return loop;
}

}  // namespace examples
