#pragma once
// Pieces shared by the command-line tools: Fashion-MNIST loading with optional subsets, the Madry PGD
// they train with, and the clean / PGD accuracy (and train_loop options) used to follow training.
// Under scripts/launch.sh (several processes), the accuracy is computed on each rank's shard of the
// test set and the counts are summed, and only rank 0 writes to stdout and to files.

#include <ardent/ardent.hpp>
#include <ardent/distributed.hpp>

#include <CLI/CLI.hpp>

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace tools {

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

/// The message of an error as a user reads it: for LibTorch's c10::Error (every ardent check) the
/// message alone, without the C++ backtrace that what() appends.
inline const char* error_message(const std::exception& e) {
  if (const auto* error = dynamic_cast<const c10::Error*>(&e)) return error->what_without_backtrace();
  return e.what();
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
  const bool kept = ardent::runtime::keep_freed_memory();
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
/// adversarial recipe in the tools.
inline ardent::attacks::PGDOptions madry_pgd_options(double epsilon, int64_t steps) {
  return ardent::attacks::PGDOptions(epsilon).step_size(ardent::attacks::madry_step_size(epsilon, steps)).steps(steps);
}

inline ardent::attacks::PGD pgd(double epsilon, int64_t steps) {
  return ardent::attacks::PGD(madry_pgd_options(epsilon, steps));
}

/// The training attack chosen by --attack, --steps and --warm-start: PGD (--steps steps of
/// 2.5 eps / steps), FGSM-RS (random start, step 1.25 eps; Wong et al. 2020) or N-FGSM (noise 2 eps,
/// step eps, no projection; de Jorge et al. 2022); with --warm-start N, each example's attack starts
/// from its perturbation of the previous epoch (PGD then runs N steps).
struct TrainingAttackFlags {
  std::string attack = "pgd";
  int64_t steps = 10;
  int64_t warm_start = 0;
  std::string guard = "auto";

  bool single_step() const { return attack != "pgd"; }
  /// The catastrophic-overfitting guard: on by default with a single-step attack.
  bool guarded() const { return guard == "on" || (guard == "auto" && single_step()); }
};

/// The flags --attack, --steps, --warm-start and --guard.
inline void add_training_attack_flags(CLI::App& app, TrainingAttackFlags& flags) {
  app.add_option("--attack", flags.attack,
                 "Training attack: pgd (--steps steps of 2.5 eps / steps), fgsm-rs (FGSM with a random start, step "
                 "1.25 eps) or n-fgsm (noise 2 eps, step eps, not projected)")
      ->check(CLI::IsMember({"pgd", "fgsm-rs", "n-fgsm"}))
      ->capture_default_str();
  app.add_option("--steps", flags.steps, "PGD steps of the training attack (step size 2.5 eps / steps)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--warm-start", flags.warm_start,
                 "Start each example's attack from its perturbation of the previous epoch, kept in the checkpoint "
                 "(PGD then runs N steps; 1 with a single-step attack; 0: off)")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  app.add_option("--guard", flags.guard,
                 "Catastrophic-overfitting guard (stop and roll back when held-out PGD accuracy collapses): auto "
                 "(on with fgsm-rs and n-fgsm), on, off")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
}

/// Calls body(attack, cold_attack, memory): the training attack, the same attack without warm
/// starts (what the guard measures), and the PerturbationMemory to checkpoint (empty without
/// --warm-start).
template <typename F>
void with_training_attack(const TrainingAttackFlags& flags, double epsilon, const Subset& train, F&& body) {
  namespace at = ardent::attacks;
  if (flags.warm_start > 0 && flags.single_step() && flags.warm_start != 1) {
    throw std::invalid_argument(
        fmt::format("--warm-start {} with --attack {}: a single-step attack takes one step, "
                    "expected --warm-start 1 (or --attack pgd)",
                    flags.warm_start, flags.attack));
  }
  const auto run = [&](auto cold) {
    if (flags.warm_start == 0) return body(cold, cold, at::PerturbationMemory(nullptr));
    std::vector<int64_t> shape(train.images.sizes().begin() + 1, train.images.sizes().end());
    at::PerturbationMemory memory(at::PerturbationMemoryOptions(train.images.size(0), shape));
    return body(at::WarmStart(cold, memory), cold, memory);
  };
  if (flags.attack == "fgsm-rs") {
    run(at::FGSM(at::FGSMOptions(epsilon).random_start(true).step_size(1.25 * epsilon)));
  } else if (flags.attack == "n-fgsm") {
    run(at::NFGSM(at::NFGSMOptions(epsilon)));
  } else {
    run(pgd(epsilon, flags.warm_start > 0 ? flags.warm_start : flags.steps));
  }
}

/// What the training tools do after each epoch, before the checkpoint: in a data-parallel run,
/// merge the ranks' perturbation memories (warm starts); then, when --guard asks for it, the
/// catastrophic-overfitting guard: PGD-10 and the training attack on the last 256 test images
/// (disjoint from the --eval-limit images reported unless that is above 9,744).
struct EpochEndHooks {
  std::optional<ardent::train::OverfittingGuard> guard;
  ardent::attacks::PerturbationMemory memory{nullptr};

  template <ardent::Model M, typename A>
  EpochEndHooks(const TrainingAttackFlags& flags, M model, const A& training_attack, const Subset& test_set,
                double epsilon, ardent::attacks::PerturbationMemory warm_memory = nullptr)
      : memory(std::move(warm_memory)) {
    if (!flags.guarded()) return;
    const int64_t n = test_set.images.size(0);
    const Subset held_out{test_set.images.slice(0, std::max<int64_t>(0, n - 256)),
                          test_set.labels.slice(0, std::max<int64_t>(0, n - 256))};
    guard.emplace(
        [model, training_attack, held_out, epsilon]() mutable {
          return ardent::train::GuardReading{accuracy_under(model, pgd(epsilon, 10), held_out),
                                             accuracy_under(model, training_attack, held_out)};
        },
        model.ptr());
  }

  template <typename Trainer>
  bool on_epoch_end(Trainer& trainer, int64_t epoch, const ardent::train::EpochSummary& summary) {
    if (!memory.is_empty()) ardent::distributed::merge_perturbations(ardent::distributed::world(), memory);
    return guard && guard->on_epoch_end(trainer, epoch, summary);
  }
};
/// Refuses to start a run in `dir` when it holds one (checkpoint.pt or metrics.csv) unless the user
/// continues it (`resume`) or replaces it (`overwrite`: the old checkpoints are removed first, so
/// that a later --resume cannot mix the two runs).
inline void claim_output(const std::filesystem::path& dir, bool resume, bool overwrite) {
  std::error_code ec;
  if (resume ||
      !(std::filesystem::exists(dir / "checkpoint.pt", ec) || std::filesystem::exists(dir / "metrics.csv", ec)))
    return;
  if (!overwrite) {
    throw std::invalid_argument(
        fmt::format("--out {} holds a run already (checkpoint.pt, metrics.csv): continue it "
                    "with --resume, replace it with --overwrite, or choose another --out",
                    dir.string()));
  }
  for (const char* name : {"checkpoint.pt", "checkpoint.prev.pt"}) std::filesystem::remove(dir / name, ec);
}

/// The content digests (ardent::io::file_digest) of the Fashion-MNIST files in `dir`, as run options:
/// a resumed run refuses data that changed, whatever its path.
inline std::map<std::string, std::string> mnist_digests(const std::filesystem::path& dir) {
  std::map<std::string, std::string> out;
  for (const char* name :
       {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}) {
    out[std::string("sha256 of ") + name] = ardent::io::file_digest(
        ardent::data::detail::find_data_file("tools::mnist_digests", dir, name));
  }
  return out;
}

/// The train_loop options of the training tools: `epochs` epochs with a checkpoint and
/// metrics.csv in `dir` (resumed from it when `resume`), and after each epoch the clean and PGD-20
/// accuracy of `model` on `test` (columns test_clean and test_pgd20; `test` must outlive the loop),
/// the CPU seconds the epoch's training took (cpu_seconds: all threads, evaluation excluded), and
/// the guard's reading and decision when `hooks` hold it (`hooks` must outlive the loop).
template <ardent::Model M>
ardent::train::LoopOptions epoch_loop(M model, const Subset& test, double epsilon, const std::filesystem::path& dir,
                                      int64_t epochs, bool resume, const EpochEndHooks* hooks = nullptr,
                                      int64_t eval_batch_size = 500) {
  ardent::train::LoopOptions loop;
  loop.epochs = epochs;
  loop.checkpoint = dir / "checkpoint.pt";
  loop.resume = resume;
  loop.metrics_csv = dir / "metrics.csv";
  loop.evaluation_columns = {"test_clean", "test_pgd20", "cpu_seconds"};
  if (hooks != nullptr && hooks->guard) {
    for (const auto& name : ardent::train::OverfittingGuard::column_names()) loop.evaluation_columns.push_back(name);
  }
  // Process CPU time when the last evaluation ended: an epoch's training is what lies between.
  auto evaluated_at = std::make_shared<std::clock_t>(std::clock());
  loop.evaluate = [model, &test, epsilon, eval_batch_size, hooks, evaluated_at](int64_t) mutable {
    const double cpu = static_cast<double>(std::clock() - *evaluated_at) / CLOCKS_PER_SEC;
    std::map<std::string, double> row{
        {"test_clean", accuracy_under(model, ardent::attacks::None(), test, eval_batch_size)},
        {"test_pgd20", accuracy_under(model, pgd(epsilon, 20), test, eval_batch_size)},
        {"cpu_seconds", cpu}};
    if (hooks != nullptr && hooks->guard) row.merge(hooks->guard->columns());
    *evaluated_at = std::clock();
    return row;
  };
  return loop;
}

}  // namespace tools
