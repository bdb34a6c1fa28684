// resnet18_to_mobilenetv2: the setting of the ARD paper (Goldblum et al. 2020): a robust ResNet18
// teacher distilled into a MobileNetV2 student with ARD (PGD-10 of 2/255 within 8/255, KL at T = 30,
// alpha 1), SGD with momentum, random crop and flip, on CIFAR-10 - or the same pair at a reduced
// size on Fashion-MNIST (1-channel stems, narrower networks), where it also trains the teacher:
//
//   resnet18_to_mobilenetv2 --data cifar-10-batches-bin --teacher resnet18_trades.pt --epochs 200
//   resnet18_to_mobilenetv2 --dataset fashion-mnist --recipe teacher --teacher-width 16 --epsilon 0.1 --out runs/rn
//   resnet18_to_mobilenetv2 --dataset fashion-mnist --teacher runs/rn/teacher.pt --teacher-format ardent
//       --teacher-width 16 --width-multiplier 0.25 --epsilon 0.1 --out runs/mnv2
//
// --recipe ard (the default) distils; madry trains the MobileNetV2 student alone by Madry AT (the
// paper's baseline); teacher trains the ResNet18 by Madry AT and writes <out>/teacher.pt. The teacher
// is a PyTorch state dict (kuangliu / ARD parameter names, `module.` prefix accepted), an ardent
// checkpoint, or a TorchScript file (--teacher-format). `--synthetic N` replaces the data by N random
// images to check the pipeline. Writes <out>/student.pt (or teacher.pt), checkpoint.pt (every epoch;
// --resume continues from it), metrics.csv, report.json and, with --final-eval, eval.json (clean,
// PGD-20, BIM-20, CW-Linf-20, APGD-CE, APGD-T and the worst case). Runs data-parallel under
// scripts/launch.sh (--sync-batch-norm: BatchNorm over all ranks' batches). `--help` lists every option.
#include "common.hpp"

#include <ardent/data/augment.hpp>
#include <ardent/data/cifar.hpp>
#include <ardent/eval/evaluate.hpp>
#include <ardent/eval/presets.hpp>

#include <CLI/CLI.hpp>

namespace {

struct Settings {
  std::string dataset = "cifar10";
  std::string data_dir;
  std::string recipe = "ard";
  std::string teacher_path;
  std::string teacher_format = "state-dict";
  int64_t teacher_width = 64;
  double width_multiplier = 1.0;
  double epsilon = 8.0 / 255;
  int64_t steps = 10;
  int64_t synthetic = 0;
  int64_t epochs = 1;
  int64_t batch_size = 128;
  double lr = 0.1;
  int64_t limit = 0;
  int64_t eval_limit = 1000;
  bool final_eval = false;
  bool sync_batch_norm = false;
  uint64_t seed = 0;
  int threads = tools::default_threads();
  std::string out = "runs/resnet18_to_mobilenetv2";
  bool resume = false;
  bool overwrite = false;

  int64_t channels() const { return dataset == "cifar10" ? 3 : 1; }
};

/// The batches of a ShuffledBatches, each augmented by random crop (padding 4) and flip when
/// `augment` (CIFAR-10, as the paper); the crops of an epoch depend only on (seed, epoch).
class AugmentedBatches {
 public:
  AugmentedBatches(ardent::data::ShuffledBatches& batches, uint64_t seed, bool augment)
      : batches_(batches), seed_(seed), augment_(augment) {}
  void set_epoch(int64_t epoch) { batches_.set_epoch(epoch); }
  void set_shard(int64_t rank, int64_t size) { batches_.set_shard(rank, size); }
  uint64_t seed() const { return batches_.seed(); }
  int64_t batches_per_epoch() const { return batches_.batches_per_epoch(); }

  struct Iterator {
    ardent::data::ShuffledBatches::Iterator inner;
    at::Generator generator;
    bool augment;
    ardent::Batch operator*() const {
      auto batch = *inner;
      if (augment) batch.inputs = ardent::data::random_crop_flip(batch.inputs, 4, generator);
      return batch;
    }
    Iterator& operator++() {
      ++inner;
      return *this;
    }
    bool operator==(const Iterator& other) const { return inner == other.inner; }
  };
  Iterator begin() {
    const int64_t epoch = batches_.epoch();
    return {batches_.begin(), at::detail::createCPUGenerator(seed_ * 7919 + static_cast<uint64_t>(epoch)), augment_};
  }
  Iterator end() { return {batches_.end(), at::detail::createCPUGenerator(0), augment_}; }

 private:
  ardent::data::ShuffledBatches& batches_;
  uint64_t seed_;
  bool augment_;
};

template <typename M>
int64_t parameter_count(M& model) {
  int64_t n = 0;
  for (const auto& p : model->parameters()) n += p.numel();
  return n;
}

ardent::models::ResNet18 make_teacher(const Settings& s) {
  return ardent::models::ResNet18(ardent::models::ResNet18Options(10).in_channels(s.channels()).width(s.teacher_width));
}

ardent::models::MobileNetV2 make_student(const Settings& s) {
  return ardent::models::MobileNetV2(
      ardent::models::MobileNetV2Options(10).in_channels(s.channels()).width_multiplier(s.width_multiplier));
}

/// Trains `model` with `trainer` (train_loop: checkpoints, metrics, resume, data parallelism), then
/// writes it as <out>/<name>.pt with report.json and, with --final-eval, eval.json.
template <typename Trainer, typename M>
void train_and_save(Trainer& trainer, M& model, const std::string& name, const tools::Subset& train_set,
                    const tools::Subset& test, const Settings& s) {
  torch::optim::SGD optimizer(trainer.parameters(), torch::optim::SGDOptions(s.lr).momentum(0.9).weight_decay(2e-4));
  ardent::data::ShuffledBatches shuffled(train_set.images, train_set.labels, s.batch_size, s.seed);
  AugmentedBatches batches(shuffled, s.seed, /*augment=*/s.dataset == "cifar10");
  const std::filesystem::path dir(s.out);
  auto loop = tools::epoch_loop(model, test, s.epsilon, dir, s.epochs, s.resume, /*guard=*/nullptr,
                                /*eval_batch_size=*/100);
  loop.progress_every = 20;
  // Opt-in: one process, or data-parallel across those scripts/launch.sh or torchrun started.
  const ardent::distributed::DataParallelLoop parallel(
      ardent::distributed::world(), ardent::distributed::DataParallelLoopOptions().sync_batch_norm(s.sync_batch_norm));
  loop.parallel = &parallel;
  // What defines the run: resuming with other values is refused (epochs may grow).
  loop.run_options = {{"dataset", s.dataset},
                      {"recipe", s.recipe},
                      {"sha256 of the teacher", s.teacher_path.empty() ? "" : ardent::io::file_digest(s.teacher_path)},
                      {"teacher_width", std::to_string(s.teacher_width)},
                      {"width_multiplier", fmt::format("{}", s.width_multiplier)},
                      {"epsilon", fmt::format("{}", s.epsilon)},
                      {"steps", std::to_string(s.steps)},
                      {"batch_size", std::to_string(s.batch_size)},
                      {"lr", fmt::format("{}", s.lr)},
                      {"limit", std::to_string(s.limit)},
                      {"seed", std::to_string(s.seed)}};
  const auto history = ardent::train::train_loop(trainer, batches, optimizer, {{name, model.ptr()}}, loop);

  std::optional<ardent::EvalReport> evaluation;
  if (s.final_eval) {
    // Sharded over the ranks, like the per-epoch accuracy; every rank takes part.
    const auto& world = ardent::distributed::world();
    evaluation = ardent::distributed::reduce_report(
        world, ardent::evaluate(model, ardent::distributed::shard(test.images, world),
                                ardent::distributed::shard(test.labels, world),
                                ardent::eval::study_suite(s.epsilon, 20), ardent::eval::EvalOptions().batch_size(100)));
  }
  if (!tools::main_rank()) return;
  ardent::io::save_module(model, dir / (name + ".pt"));
  const nlohmann::json report{{"program", "resnet18_to_mobilenetv2"},
                              {"dataset", s.dataset},
                              {"recipe", s.recipe},
                              {"model", name},
                              {"teacher", s.teacher_path},
                              {"teacher_width", s.teacher_width},
                              {"width_multiplier", s.width_multiplier},
                              {"parameters", parameter_count(model)},
                              {"epsilon", s.epsilon},
                              {"steps", s.steps},
                              {"epochs", s.epochs},
                              {"batch_size", s.batch_size},
                              {"lr", s.lr},
                              {"train_images", train_set.images.size(0)},
                              {"eval_images", test.images.size(0)},
                              {"seed", s.seed},
                              {"history", history}};
  ardent::train::write_json(report, dir / "report.json");
  if (evaluation) {
    evaluation->write_json(dir / "eval.json");
    fmt::print("worst case over the study's attacks: {:.2f}% on {} test images\n",
               100 * evaluation->worst_case_accuracy, evaluation->samples);
  }
  fmt::print("wrote {}\n", (dir / (name + ".pt")).string());
}

template <ardent::Model Teacher>
void distill(Teacher teacher, const tools::Subset& train_set, const tools::Subset& test, const Settings& s) {
  auto student = make_student(s);
  const auto attack = tools::madry_pgd_options(s.epsilon, s.steps);
  auto ard = ardent::make_ard(teacher, student, 1.0, 30.0, attack);  // the paper's alpha and T
  train_and_save(ard, student, "student", train_set, test, s);
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{"ARD with the paper's pair: a ResNet18 teacher distilled into a MobileNetV2 student"};
  app.add_option("--dataset", s.dataset, "cifar10 (the paper; needs --data) or fashion-mnist (1-channel stems)")
      ->check(CLI::IsMember({"cifar10", "fashion-mnist"}))
      ->capture_default_str();
  app.add_option("--data", s.data_dir,
                 "Directory with CIFAR-10's binary files (data_batch_1.bin ... test_batch.bin) or Fashion-MNIST's "
                 "IDX files (default for fashion-mnist: " +
                     ardent::data::kFashionMNISTDirectory.string() + ")")
      ->check(CLI::ExistingDirectory);
  app.add_option("--synthetic", s.synthetic, "Use N random images instead of --data (a pipeline check)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--recipe", s.recipe,
                 "ard (distil the student), madry (Madry AT of the student alone) or teacher (Madry AT of the "
                 "ResNet18 teacher)")
      ->check(CLI::IsMember({"ard", "madry", "teacher"}))
      ->capture_default_str();
  app.add_option("--teacher", s.teacher_path,
                 "ResNet18 teacher file for --recipe ard (without it: a randomly initialised teacher, "
                 "for pipeline checks only)")
      ->check(CLI::ExistingFile);
  app.add_option("--teacher-format", s.teacher_format,
                 "state-dict (PyTorch torch.save), ardent (torch::save, e.g. --recipe teacher's teacher.pt) or "
                 "torchscript")
      ->check(CLI::IsMember({"state-dict", "ardent", "torchscript"}))
      ->capture_default_str();
  app.add_option("--teacher-width", s.teacher_width, "ResNet18 width: channels of layer1 (the paper: 64)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--width-multiplier", s.width_multiplier, "MobileNetV2 width multiplier of the student (the paper: 1)")
      ->check(CLI::Range(0.01, 16.0))
      ->capture_default_str();
  app.add_option("--epsilon", s.epsilon, "Linf radius of the training attack and the evaluation (the paper: 8/255)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--steps", s.steps, "PGD steps of the training attack (step size 2.5 eps / steps)")
      ->check(CLI::Range(1, 10000))
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
  app.add_option("--eval-limit", s.eval_limit, "Test images for the per-epoch accuracy and --final-eval (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--final-eval", s.final_eval,
               "After training, evaluate with PGD-20, BIM-20, CW-Linf-20, APGD-CE and APGD-T (20 steps each) and "
               "write <out>/eval.json");
  app.add_flag("--sync-batch-norm", s.sync_batch_norm,
               "Under scripts/launch.sh: BatchNorm statistics over all ranks' batches (default: each rank's own)");
  app.add_option("--seed", s.seed, "Random seed")->capture_default_str();
  app.add_option("--threads", s.threads, "LibTorch threads (default: all cores)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--out", s.out, "Output directory (student.pt or teacher.pt, checkpoint.pt, metrics.csv, report.json)")
      ->capture_default_str();
  tools::add_resume_option(app, s.resume);
  app.add_flag("--overwrite", s.overwrite, "Replace the run in --out (without it, an existing run is refused)");
  CLI11_PARSE(app, argc, argv);
  if (s.dataset == "fashion-mnist" && s.data_dir.empty() && s.synthetic == 0) {
    s.data_dir = ardent::data::kFashionMNISTDirectory.string();
  }
  if (s.data_dir.empty() == (s.synthetic == 0)) {
    fmt::print(stderr, "resnet18_to_mobilenetv2: give exactly one of --data and --synthetic\n");
    return 2;
  }

  try {
    tools::claim_output(s.out, s.resume, s.overwrite);
    tools::set_threads(s.threads);
    torch::manual_seed(s.seed);
    tools::Subset train;
    tools::Subset test;
    const int64_t side = s.dataset == "cifar10" ? 32 : 28;
    if (s.synthetic > 0) {
      train = {torch::rand({s.synthetic, s.channels(), side, side}), torch::randint(10, {s.synthetic}, torch::kLong)};
      test = {torch::rand({s.synthetic, s.channels(), side, side}), torch::randint(10, {s.synthetic}, torch::kLong)};
    } else if (s.dataset == "cifar10") {
      const ardent::data::CIFAR10 train_set(s.data_dir, ardent::data::CIFAR10::Split::Train);
      const ardent::data::CIFAR10 test_set(s.data_dir, ardent::data::CIFAR10::Split::Test);
      const auto take = [](const auto& set, int64_t limit) {
        const int64_t n = limit > 0 ? std::min<int64_t>(limit, set.images().size(0)) : set.images().size(0);
        return tools::Subset{set.images().slice(0, 0, n), set.labels().slice(0, 0, n)};
      };
      train = take(train_set, s.limit);
      test = take(test_set, s.eval_limit);
    } else {
      train = tools::take(ardent::data::MNIST(s.data_dir, ardent::data::MNIST::Split::Train), s.limit);
      test = tools::take(ardent::data::MNIST(s.data_dir, ardent::data::MNIST::Split::Test), s.eval_limit);
    }
    fmt::print("{} on {}: ResNet18 (width {}) -> MobileNetV2 (x{}), {} training images, epsilon {:.4g}, {} epochs\n",
               s.recipe, s.dataset, s.teacher_width, s.width_multiplier, train.images.size(0), s.epsilon, s.epochs);
    if (s.recipe == "teacher") {
      auto teacher = make_teacher(s);
      auto trainer = ardent::make_madry_trainer(teacher, tools::madry_pgd_options(s.epsilon, s.steps));
      train_and_save(trainer, teacher, "teacher", train, test, s);
    } else if (s.recipe == "madry") {
      auto student = make_student(s);
      auto trainer = ardent::make_madry_trainer(student, tools::madry_pgd_options(s.epsilon, s.steps));
      train_and_save(trainer, student, "student", train, test, s);
    } else if (s.teacher_format == "torchscript" && !s.teacher_path.empty()) {
      distill(torch::jit::load(s.teacher_path), train, test, s);
    } else {
      auto teacher = make_teacher(s);
      if (s.teacher_path.empty()) {
        fmt::print("no --teacher: using a randomly initialised ResNet18 (pipeline check only)\n");
      } else if (s.teacher_format == "ardent") {
        ardent::io::load_module(teacher, s.teacher_path);
      } else {
        ardent::io::load_state_dict(teacher, s.teacher_path);
      }
      distill(teacher, train, test, s);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "resnet18_to_mobilenetv2: {}\n", tools::error_message(e));
    return 1;
  }
  return 0;
}
