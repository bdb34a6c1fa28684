// resnet18_to_mobilenetv2: the setting of the ARD paper (Goldblum et al. 2020) on CIFAR-10: a
// robust ResNet18 teacher distilled into a MobileNetV2 student with ARD (PGD-10 of 2/255 within
// 8/255, KL at T = 30, alpha 1), SGD with momentum, random crop and flip.
//
//   resnet18_to_mobilenetv2 --data cifar-10-batches-bin --teacher resnet18_trades.pt --epochs 200
//
// The teacher is a PyTorch state dict (kuangliu / ARD parameter names, `module.` prefix accepted),
// an ardent checkpoint, or a TorchScript file (--teacher-format). `--synthetic N` replaces the data
// by N random images to check the pipeline without CIFAR-10. `--help` lists every option.
#include "common.hpp"

#include <ardent/data/augment.hpp>
#include <ardent/data/cifar.hpp>

#include <CLI/CLI.hpp>

namespace {

struct Settings {
  std::string data_dir;
  std::string teacher_path;
  std::string teacher_format = "state-dict";
  int64_t synthetic = 0;
  int64_t epochs = 1;
  int64_t batch_size = 128;
  double lr = 0.1;
  int64_t limit = 0;
  int64_t eval_limit = 1000;
  uint64_t seed = 0;
  int threads = examples::default_threads();
  std::string out = "runs/resnet18_to_mobilenetv2";
  bool resume = false;
};

/// Augments each batch of the wrapped batches with random crop (padding 4) and flip.
class AugmentedBatches {
 public:
  AugmentedBatches(ardent::data::ShuffledBatches& batches, uint64_t seed) : batches_(batches), seed_(seed) {}
  void set_epoch(int64_t epoch) { batches_.set_epoch(epoch); }
  int64_t batches_per_epoch() const { return batches_.batches_per_epoch(); }

  struct Iterator {
    ardent::data::ShuffledBatches::Iterator inner;
    at::Generator generator;
    std::pair<torch::Tensor, torch::Tensor> operator*() const {
      auto [x, y] = *inner;
      return {ardent::data::random_crop_flip(x, 4, generator), y};
    }
    Iterator& operator++() {
      ++inner;
      return *this;
    }
    bool operator==(const Iterator& other) const { return inner == other.inner; }
  };
  Iterator begin() {
    const int64_t epoch = batches_.epoch();
    return {batches_.begin(), at::detail::createCPUGenerator(seed_ * 7919 + static_cast<uint64_t>(epoch))};
  }
  Iterator end() { return {batches_.end(), at::detail::createCPUGenerator(0)}; }

 private:
  ardent::data::ShuffledBatches& batches_;
  uint64_t seed_;
};

template <typename Teacher>
void run(Teacher teacher, const examples::Subset& train, const examples::Subset& test, const Settings& s) {
  ardent::models::MobileNetV2 student;
  auto ard = ardent::make_ard(teacher, student);  // the paper's defaults
  torch::optim::SGD optimizer(ard.parameters(), torch::optim::SGDOptions(s.lr).momentum(0.9).weight_decay(2e-4));
  ardent::data::ShuffledBatches shuffled(train.images, train.labels, s.batch_size, s.seed);
  // Under scripts/launch.sh: each rank trains on its shard, gradients are averaged over the ranks.
  const auto& world = ardent::distributed::world();
  shuffled.set_shard(world.rank(), world.size());
  AugmentedBatches batches(shuffled, s.seed);

  const std::filesystem::path dir(s.out);
  // The checkpoint holds the metrics rows too: the CSV is rewritten from it on resume and each row
  // is appended after its checkpoint, so that a kill at any moment leaves them in agreement.
  ardent::train::Checkpoint checkpoint{0, {{"student", student.ptr()}}, &optimizer};
  const int64_t start_epoch = s.resume && std::filesystem::exists(dir / "checkpoint.pt")
                                  ? ardent::train::load_checkpoint(checkpoint, dir / "checkpoint.pt")
                                  : int64_t{0};
  // After the checkpoint: rank 0's weights are broadcast to every rank.
  const ardent::distributed::DataParallel parallel(world, ard.parameters(), {student.ptr()});
  std::optional<ardent::train::MetricsLog> log;  // rank 0 only
  if (world.is_main()) {
    log.emplace(dir / "metrics.csv", std::vector<std::string>{"epoch", "train_loss", "test_clean", "test_pgd20"},
                /*append=*/start_epoch > 0);
    if (start_epoch > 0 && !checkpoint.metrics.empty()) log->replace(checkpoint.metrics);
    if (checkpoint.metrics.empty()) checkpoint.metrics = log->header();
    if (start_epoch > 0)
      fmt::print(stderr, "resuming from {} after epoch {}\n", (dir / "checkpoint.pt").string(), start_epoch);
  }
  for (int64_t epoch = start_epoch; epoch < s.epochs; ++epoch) {
    batches.set_epoch(epoch);
    if (world.size() > 1) ardent::distributed::reseed(s.seed, epoch, world.rank());
    ardent::FitSummary summary;
    if (world.is_main()) {
      ardent::train::Progress progress(batches.batches_per_epoch(), s.epochs, 20);
      progress.on_epoch_begin(ard, epoch);
      summary = ardent::fit(ard, batches, optimizer, 1,
                            ardent::train::detail::BatchEndOnly<ardent::train::Progress>{progress});
      progress.on_epoch_end(ard, epoch, summary.epochs.back());
    } else {
      summary = ardent::fit(ard, batches, optimizer, 1);
    }
    const double loss = ardent::distributed::mean_over_ranks(world, summary.epochs.back().mean_loss,
                                                             summary.epochs.back().samples);
    const double clean = examples::accuracy_under(student, ardent::attacks::None(), test, 100);
    const double robust = examples::accuracy_under(student, examples::pgd(8.0 / 255, 20), test, 100);
    if (!world.is_main()) continue;
    const std::map<std::string, double> row{
        {"epoch", static_cast<double>(epoch + 1)}, {"train_loss", loss}, {"test_clean", clean}, {"test_pgd20", robust}};
    fmt::print("epoch {}: test clean {:.2f}%, PGD-20 {:.2f}% ({} images)\n", epoch + 1, 100 * clean, 100 * robust,
               test.images.size(0));
    checkpoint.epochs_completed = epoch + 1;
    checkpoint.metrics += log->row(row);
    ardent::train::save_checkpoint(checkpoint, dir / "checkpoint.pt");
    log->append(row);
  }
  if (!world.is_main()) return;
  torch::save(student, (dir / "student.pt").string());
  fmt::print("wrote {}\n", (dir / "student.pt").string());
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{"ARD on CIFAR-10: a ResNet18 teacher distilled into a MobileNetV2 student"};
  app.add_option("--data", s.data_dir, "Directory with CIFAR-10's binary files (data_batch_1.bin ... test_batch.bin)")
      ->check(CLI::ExistingDirectory);
  app.add_option("--synthetic", s.synthetic, "Use N random images instead of --data (a pipeline check)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--teacher", s.teacher_path,
                 "ResNet18 teacher file (without it: a randomly initialised teacher, "
                 "for pipeline checks only)")
      ->check(CLI::ExistingFile);
  app.add_option("--teacher-format", s.teacher_format,
                 "state-dict (PyTorch torch.save), ardent (torch::save) or torchscript")
      ->check(CLI::IsMember({"state-dict", "ardent", "torchscript"}))
      ->capture_default_str();
  app.add_option("--epochs", s.epochs, "Training epochs (the paper: 200)")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  app.add_option("--batch-size", s.batch_size, "Batch size")->check(CLI::Range(1, 100000))->capture_default_str();
  app.add_option("--lr", s.lr, "SGD learning rate (momentum 0.9, weight decay 2e-4)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--limit", s.limit, "Train on the first N images (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--eval-limit", s.eval_limit, "Test images for the per-epoch accuracy (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--seed", s.seed, "Random seed")->capture_default_str();
  app.add_option("--threads", s.threads, "LibTorch threads (default: all cores)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--out", s.out, "Output directory (student.pt, checkpoint.pt, metrics.csv)")->capture_default_str();
  app.add_flag("--resume", s.resume, "Continue from <out>/checkpoint.pt");
  CLI11_PARSE(app, argc, argv);
  if (s.data_dir.empty() == (s.synthetic == 0)) {
    fmt::print(stderr, "resnet18_to_mobilenetv2: give exactly one of --data and --synthetic\n");
    return 2;
  }

  try {
    examples::set_threads(s.threads);
    torch::manual_seed(s.seed);
    examples::Subset train;
    examples::Subset test;
    if (s.synthetic > 0) {
      train = {torch::rand({s.synthetic, 3, 32, 32}), torch::randint(10, {s.synthetic}, torch::kLong)};
      test = {torch::rand({s.synthetic, 3, 32, 32}), torch::randint(10, {s.synthetic}, torch::kLong)};
    } else {
      const ardent::data::CIFAR10 train_set(s.data_dir, ardent::data::CIFAR10::Split::Train);
      const ardent::data::CIFAR10 test_set(s.data_dir, ardent::data::CIFAR10::Split::Test);
      const auto take = [](const auto& set, int64_t limit) {
        const int64_t n = limit > 0 ? std::min<int64_t>(limit, set.images().size(0)) : set.images().size(0);
        return examples::Subset{set.images().slice(0, 0, n), set.labels().slice(0, 0, n)};
      };
      train = take(train_set, s.limit);
      test = take(test_set, s.eval_limit);
    }
    fmt::print("ARD: ResNet18 teacher -> MobileNetV2 student, {} training images, {} epochs\n", train.images.size(0),
               s.epochs);
    if (s.teacher_format == "torchscript" && !s.teacher_path.empty()) {
      auto teacher = torch::jit::load(s.teacher_path);
      run(teacher, train, test, s);
    } else {
      ardent::models::ResNet18 teacher;
      if (s.teacher_path.empty()) {
        fmt::print("no --teacher: using a randomly initialised ResNet18 (pipeline check only)\n");
      } else if (s.teacher_format == "ardent") {
        ardent::load_module(teacher, s.teacher_path);
      } else {
        ardent::load_state_dict(teacher, s.teacher_path);
      }
      run(teacher, train, test, s);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "resnet18_to_mobilenetv2: {}\n", e.what());
    return 1;
  }
  return 0;
}
