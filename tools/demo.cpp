// demo: the README's first command. From the robust Fashion-MNIST teacher that ships in
// models/, distils a SmallCNN student with ARD, trains the same student naturally for comparison,
// and prints clean, PGD-20 and APGD-CE accuracy at epsilon 0.1 for the three networks.
//
//   demo --teacher models/fashion_teacher.pt
//
// The defaults fit about ten minutes on two cores; `--help` lists every option.
#include "common.hpp"

#include <CLI/CLI.hpp>

namespace {

struct Settings {
  std::string data_dir = ardent::data::kFashionMNISTDirectory.string();
  std::string teacher_path = "models/fashion_teacher.pt";
  int64_t teacher_width = 32;
  int64_t width = 16;
  double epsilon = 0.1;
  int64_t epochs = 3;
  int64_t limit = 0;
  int64_t eval_limit = 2000;
  int64_t apgd_steps = 50;
  uint64_t seed = 0;
  int threads = tools::default_threads();
};

template <typename Trainer>
void train(Trainer& trainer, const tools::Subset& data, const Settings& s, const char* what) {
  torch::optim::Adam optimizer(trainer.parameters(), torch::optim::AdamOptions(1e-3));
  ardent::data::ShuffledBatches batches(data.images, data.labels, 128, s.seed);
  ardent::train::LoopOptions loop;
  loop.epochs = s.epochs;
  loop.progress_every = 100;
  const auto start = std::chrono::steady_clock::now();
  // Opt-in: one process, or data-parallel across those scripts/launch.sh or torchrun started.
  const ardent::distributed::DataParallelLoop parallel(ardent::distributed::world());
  loop.parallel = &parallel;
  const auto history = ardent::train::train_loop(trainer, batches, optimizer, {}, loop);
  fmt::print("{}: {} epoch(s) on {} images, final training loss {:.4f}, {:.0f} s\n", what, s.epochs,
             data.images.size(0), history.back().at("train_loss"),
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{"ardent's demo: ARD from a robust teacher against natural training, on Fashion-MNIST"};
  app.add_option("--teacher", s.teacher_path, "Robust teacher (a SmallCNN saved by train_teacher)")
      ->check(CLI::ExistingFile)
      ->capture_default_str();
  app.add_option("--teacher-width", s.teacher_width, "The teacher's SmallCNN width")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--width", s.width, "The students' SmallCNN width")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--data", s.data_dir, "Directory with the Fashion-MNIST IDX files")
      ->check(CLI::ExistingDirectory)
      ->capture_default_str();
  app.add_option("--epsilon", s.epsilon, "Linf radius of training and evaluation attacks")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--epochs", s.epochs, "Training epochs of each student")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--limit", s.limit, "Train on the first N training images (0: all 60,000)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--eval-limit", s.eval_limit, "Evaluate on the first N test images (0: all 10,000)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--apgd-steps", s.apgd_steps, "Steps of APGD-CE")->check(CLI::Range(1, 10000))->capture_default_str();
  app.add_option("--seed", s.seed, "Random seed")->capture_default_str();
  app.add_option("--threads", s.threads, "LibTorch threads (default: all cores)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    tools::set_threads(s.threads);
    const ardent::data::MNIST train_set(s.data_dir, ardent::data::MNIST::Split::Train);
    const ardent::data::MNIST test_set(s.data_dir, ardent::data::MNIST::Split::Test);
    const auto train_data = tools::take(train_set, s.limit);
    const auto test = tools::take(test_set, s.eval_limit);

    ardent::models::SmallCNN teacher(ardent::models::SmallCNNOptions(10).width(s.teacher_width));
    ardent::io::load_module(teacher, s.teacher_path);
    teacher->eval();
    fmt::print("teacher: SmallCNN (width {}) from {}\n", s.teacher_width, s.teacher_path);

    torch::manual_seed(s.seed);
    ardent::models::SmallCNN natural(ardent::models::SmallCNNOptions(10).width(s.width));
    ardent::AdversarialTrainer<ardent::models::SmallCNN, ardent::attacks::None> natural_trainer(
        natural, ardent::attacks::None());
    train(natural_trainer, train_data, s, "natural student");

    torch::manual_seed(s.seed);
    ardent::models::SmallCNN student(ardent::models::SmallCNNOptions(10).width(s.width));
    const auto attack = tools::madry_pgd_options(s.epsilon, 10);
    auto ard = ardent::make_ard(teacher, student, /*alpha=*/1.0, /*temperature=*/30.0, attack);
    train(ard, train_data, s, "ARD student");

    const std::vector<ardent::eval::Preset> suite{ardent::eval::pgd(s.epsilon, 20),
                                                  ardent::eval::apgd_ce(s.epsilon, s.apgd_steps)};
    fmt::print("\nLinf epsilon {} on {} Fashion-MNIST test images\n\n", s.epsilon, test.images.size(0));
    fmt::print("| {:<32} | {:>7} | {:>7} | {:>8} |\n", "model", "clean", "PGD-20",
               fmt::format("APGD-{}", s.apgd_steps));
    fmt::print("| {:-<32} | {:->7} | {:->7} | {:->8} |\n", "", "", "", "");
    auto row = [&](const std::string& name, ardent::models::SmallCNN& model) {
      model->eval();
      torch::manual_seed(s.seed);
      const auto report = ardent::evaluate(model, test.images, test.labels, suite);
      fmt::print("| {:<32} | {:>6.2f}% | {:>6.2f}% | {:>7.2f}% |\n", name, 100 * report.clean_accuracy,
                 100 * report.attacks[0].robust_accuracy.value(), 100 * report.attacks[1].robust_accuracy.value());
      std::fflush(stdout);
    };
    row(fmt::format("teacher (Madry AT, width {})", s.teacher_width), teacher);
    row(fmt::format("natural student (width {})", s.width), natural);
    row(fmt::format("ARD student (width {})", s.width), student);
  } catch (const std::exception& e) {
    fmt::print(stderr, "demo: {}\n", tools::error_message(e));
    return 1;
  }
  return 0;
}
