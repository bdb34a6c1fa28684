// distill: trains a SmallCNN student on Fashion-MNIST from a robust teacher with any of ardent's
// recipes, or without a teacher (natural training, Madry AT) as the baselines of the ARD paper.
//
//   distill --teacher models/fashion_teacher.pt --recipe ard --out runs/ard
//
// The teacher is an ardent SmallCNN saved by train_teacher (--teacher-format ardent, the default),
// a PyTorch state dict of the same architecture saved by Python's torch.save (--teacher-format
// state-dict), or a TorchScript file (--teacher-format torchscript). Writes <out>/student.pt,
// <out>/checkpoint.pt (every epoch; --resume continues from it), <out>/metrics.csv and
// <out>/report.json. `--help` lists every option.
#include "common.hpp"

#include <CLI/CLI.hpp>

namespace {

struct Settings {
  std::string data_dir = ardent::data::kFashionMNISTDirectory.string();
  std::string teacher_path;
  std::string teacher_format = "ardent";
  int64_t teacher_width = 32;
  std::string recipe = "ard";
  int64_t width = 16;
  double epsilon = 0.1;
  tools::TrainingAttackFlags training;
  double alpha = 1.0;
  double temperature = 0;  // 0: the recipe's default (30 for ARD, 4 for KD, 1 for RSLAD and AdaAD)
  int64_t epochs = 1;
  int64_t batch_size = 128;
  double lr = 1e-3;
  int64_t limit = 0;
  int64_t eval_limit = 1000;
  uint64_t seed = 0;
  int threads = tools::default_threads();
  std::string out = "runs/distill";
  bool resume = false;
  bool overwrite = false;
};

/// Trains with `trainer` and writes the student, the metrics and the report.
/// Trains with `trainer` and writes the student, the metrics and the report. `guard` watches for
/// catastrophic overfitting when it is on.
template <typename Trainer>
void run(Trainer& trainer, ardent::models::SmallCNN& student,
         std::map<std::string, std::shared_ptr<torch::nn::Module>> modules, const tools::Subset& train,
         const tools::Subset& test, tools::EpochEndHooks& guard, const Settings& s) {
  torch::optim::Adam optimizer(trainer.parameters(), torch::optim::AdamOptions(s.lr));
  ardent::data::ShuffledBatches batches(train.images, train.labels, s.batch_size, s.seed);
  const std::filesystem::path dir(s.out);
  auto loop = tools::epoch_loop(student, test, s.epsilon, dir, s.epochs, s.resume, &guard);
  // What defines the run: resuming with other values is refused (epochs may grow). The teacher and
  // the data are compared by content, not by path.
  loop.run_options = {{"recipe", s.recipe},
                      {"sha256 of the teacher", s.teacher_path.empty() ? "" : ardent::io::file_digest(s.teacher_path)},
                      {"teacher_width", std::to_string(s.teacher_width)},
                      {"width", std::to_string(s.width)},
                      {"epsilon", fmt::format("{}", s.epsilon)},
                      {"attack", s.training.attack},
                      {"steps", std::to_string(s.training.steps)},
                      {"warm_start", std::to_string(s.training.warm_start)},
                      {"alpha", fmt::format("{}", s.alpha)},
                      {"temperature", fmt::format("{}", s.temperature)},
                      {"batch_size", std::to_string(s.batch_size)},
                      {"lr", fmt::format("{}", s.lr)},
                      {"limit", std::to_string(s.limit)},
                      {"seed", std::to_string(s.seed)}};
  loop.run_options.merge(tools::mnist_digests(s.data_dir));
  // Opt-in: one process, or data-parallel across those scripts/launch.sh or torchrun started.
  const ardent::distributed::DataParallelLoop parallel(ardent::distributed::world());
  loop.parallel = &parallel;
  const auto history = ardent::train::train_loop(trainer, batches, optimizer, std::move(modules), loop, guard);
  if (!tools::main_rank()) return;
  ardent::io::save_module(student, dir / "student.pt");  // atomically, as every file the run writes
  const nlohmann::json report{{"program", "distill"},
                              {"recipe", s.recipe},
                              {"teacher", s.teacher_path},
                              {"width", s.width},
                              {"epsilon", s.epsilon},
                              {"attack", s.training.attack},
                              {"steps", s.training.steps},
                              {"warm_start", s.training.warm_start},
                              {"alpha", s.alpha},
                              {"temperature", s.temperature},
                              {"epochs", s.epochs},
                              {"batch_size", s.batch_size},
                              {"lr", s.lr},
                              {"train_images", train.images.size(0)},
                              {"eval_images", test.images.size(0)},
                              {"seed", s.seed},
                              {"history", history}};
  ardent::train::write_json(report, dir / "report.json");
  if (!history.empty()) {
    fmt::print("final: clean {:.2f}%, PGD-20 {:.2f}% on {} test images; wrote {}\n",
               100 * history.back().at("test_clean"), 100 * history.back().at("test_pgd20"), test.images.size(0),
               (dir / "student.pt").string());
  }
}

template <ardent::Model Teacher>
void distill(Teacher teacher, ardent::models::SmallCNN student, const tools::Subset& train, const tools::Subset& test,
             const tools::Subset& guard_set, const Settings& s) {
  const double t = s.temperature;
  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules{{"student", student.ptr()}};
  if (s.recipe == "ard") {
    // Any training attack: PGD, FGSM-RS or N-FGSM, warm-started or not.
    tools::with_training_attack(s.training, s.epsilon, train, [&](auto attack, auto cold, auto memory) {
      tools::EpochEndHooks guard(s.training, student, cold, guard_set, s.epsilon, memory);
      ardent::Distiller<Teacher, ardent::models::SmallCNN, decltype(attack)> d(
          teacher, student, attack, ardent::losses::KL(ardent::losses::KLOptions().temperature(t)),
          ardent::targets::Logits{}, ardent::recipes::ard(s.alpha));
      auto with_memory = modules;
      if (!memory.is_empty()) with_memory.emplace("perturbations", memory.ptr());
      run(d, student, with_memory, train, test, guard, s);
    });
    return;
  }
  if (s.training.attack != "pgd" || s.training.warm_start > 0) {
    throw std::invalid_argument(
        fmt::format("--recipe {} trains with PGD only; --attack {} and --warm-start are for "
                    "ard and madry",
                    s.recipe, s.training.attack));
  }
  tools::EpochEndHooks guard(s.training, student, tools::pgd(s.epsilon, s.training.steps), guard_set, s.epsilon);
  const auto attack = tools::madry_pgd_options(s.epsilon, s.training.steps);
  if (s.recipe == "ard_official") {
    auto d = ardent::make_ard_official(teacher, student, s.alpha, t, attack);
    run(d, student, modules, train, test, guard, s);
  } else if (s.recipe == "rslad") {
    auto d = ardent::make_rslad(teacher, student, attack);
    run(d, student, modules, train, test, guard, s);
  } else if (s.recipe == "adaad") {
    auto d = ardent::make_adaad(teacher, student, attack);
    run(d, student, modules, train, test, guard, s);
  } else {
    auto d = ardent::make_kd(teacher, student, s.alpha, t);
    run(d, student, modules, train, test, guard, s);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{"Distil a robust SmallCNN student on Fashion-MNIST (ARD, RSLAD, AdaAD, KD) or train a baseline"};
  app.add_option("--data", s.data_dir, "Directory with the Fashion-MNIST IDX files")
      ->check(CLI::ExistingDirectory)
      ->capture_default_str();
  app.add_option("--recipe", s.recipe,
                 "ard, ard_official, rslad, adaad, kd (need --teacher), or natural, madry (no teacher)")
      ->check(CLI::IsMember({"ard", "ard_official", "rslad", "adaad", "kd", "natural", "madry"}))
      ->capture_default_str();
  app.add_option("--teacher", s.teacher_path, "Teacher file")->check(CLI::ExistingFile);
  app.add_option("--teacher-format", s.teacher_format, "ardent (train_teacher's teacher.pt), state-dict or torchscript")
      ->check(CLI::IsMember({"ardent", "state-dict", "torchscript"}))
      ->capture_default_str();
  app.add_option("--teacher-width", s.teacher_width, "SmallCNN width of an ardent or state-dict teacher")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--width", s.width, "SmallCNN width of the student")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--epsilon", s.epsilon, "Linf radius of the training attack")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  tools::add_training_attack_flags(app, s.training);
  auto* alpha_option = app.add_option("--alpha", s.alpha,
                                      "Weight of the distillation term (ard, ard_official: "
                                      "default 1; kd: default 0.9)")
                           ->check(CLI::Range(0.0, 1.0));
  app.add_option("--temperature", s.temperature,
                 "KL temperature, 0 (the recipe's default, 30 for ARD, 4 for KD) or in [0.1, 1000]")
      ->check(CLI::Validator(
          [](std::string& value) -> std::string {
            double t = 0;
            try {
              t = std::stod(value);
            } catch (const std::exception&) {
              return "temperature " + value + " is not a number";
            }
            if (t == 0 || (t >= 0.1 && t <= 1000)) return {};
            return "temperature " + value +
                   " is outside [0.1, 1000] (softmax(z / T) saturates in float below 0.1); 0 takes the recipe's "
                   "default";
          },
          "0 or in [0.1, 1000]"))
      ->capture_default_str();
  app.add_option("--epochs", s.epochs, "Training epochs")->check(CLI::Range(1, 10000))->capture_default_str();
  app.add_option("--batch-size", s.batch_size, "Training batch size")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--lr", s.lr, "Adam learning rate, in (0, 10]")->check(CLI::Range(1e-12, 10.0))->capture_default_str();
  app.add_option("--limit", s.limit, "Train on the first N training images only (0: all 60,000)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--eval-limit", s.eval_limit, "Test images for the per-epoch clean / PGD-20 accuracy (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--seed", s.seed, "Random seed (weights, data order, attack starts)")->capture_default_str();
  app.add_option("--threads", s.threads, "LibTorch threads (default: all cores)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--out", s.out, "Output directory")->capture_default_str();
  tools::add_resume_option(app, s.resume);
  app.add_flag("--overwrite", s.overwrite, "Replace the run in --out (without it, an existing run is refused)");
  CLI11_PARSE(app, argc, argv);
  if (alpha_option->count() == 0 && s.recipe == "kd") s.alpha = 0.9;
  if (s.temperature == 0)
    s.temperature = s.recipe == "kd" ? 4.0 : s.recipe == "rslad" || s.recipe == "adaad" ? 1.0 : 30.0;

  try {
    const bool adversarial = s.recipe != "kd" && s.recipe != "natural";
    if (adversarial && s.epsilon == 0) {
      throw std::invalid_argument("--epsilon 0 with --recipe " + s.recipe +
                                  " attacks nothing: the run would train on clean images only; give --epsilon > 0, "
                                  "or use --recipe kd (distillation) or natural (no teacher) for clean training");
    }
    tools::claim_output(s.out, s.resume, s.overwrite);
    tools::set_threads(s.threads);
    torch::manual_seed(s.seed);
    const ardent::data::MNIST train_set(s.data_dir, ardent::data::MNIST::Split::Train);
    const ardent::data::MNIST test_set(s.data_dir, ardent::data::MNIST::Split::Test);
    const auto train = tools::take(train_set, s.limit);
    const auto test = tools::take(test_set, s.eval_limit);
    ardent::models::SmallCNN student(ardent::models::SmallCNNOptions(10).width(s.width));
    fmt::print("{}: SmallCNN student (width {}) on {} images, epsilon {}, {} epochs\n", s.recipe, s.width,
               train.images.size(0), s.epsilon, s.epochs);

    const auto guard_set = tools::take(test_set, 0);
    if (s.recipe == "natural" || s.recipe == "madry") {
      std::map<std::string, std::shared_ptr<torch::nn::Module>> modules{{"student", student.ptr()}};
      if (s.recipe == "natural") {
        ardent::AdversarialTrainer<ardent::models::SmallCNN, ardent::attacks::None> trainer(student,
                                                                                            ardent::attacks::None());
        tools::EpochEndHooks guard(tools::TrainingAttackFlags{.guard = "off"}, student, ardent::attacks::None(),
                                   guard_set, s.epsilon);
        run(trainer, student, modules, train, test, guard, s);
      } else {
        tools::with_training_attack(s.training, s.epsilon, train, [&](auto attack, auto cold, auto memory) {
          tools::EpochEndHooks guard(s.training, student, cold, guard_set, s.epsilon, memory);
          ardent::AdversarialTrainer<ardent::models::SmallCNN, decltype(attack)> trainer(student, attack,
                                                                                         ardent::recipes::madry());
          auto with_memory = modules;
          if (!memory.is_empty()) with_memory.emplace("perturbations", memory.ptr());
          run(trainer, student, with_memory, train, test, guard, s);
        });
      }
      return 0;
    }
    if (s.teacher_path.empty()) throw std::invalid_argument("--recipe " + s.recipe + " needs --teacher");
    if (s.teacher_format == "torchscript") {
      auto teacher = torch::jit::load(s.teacher_path);
      distill(teacher, student, train, test, guard_set, s);
    } else {
      ardent::models::SmallCNN teacher(ardent::models::SmallCNNOptions(10).width(s.teacher_width));
      if (s.teacher_format == "ardent") {
        ardent::io::load_module(teacher, s.teacher_path);  // torch::load, with every shape checked
      } else {
        ardent::io::load_state_dict(teacher, s.teacher_path);
      }
      distill(teacher, student, train, test, guard_set, s);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "distill: {}\n", tools::error_message(e));
    return 1;
  }
  return 0;
}
