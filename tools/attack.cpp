// attack: clean and robust accuracy of a classifier on the Fashion-MNIST test set under each of
// ardent's gradient attacks.
//
//   attack --model model.pt               a TorchScript model (1x28x28 inputs in [0, 1], 10 classes)
//   attack --checkpoint small_cnn.pt      a SmallCNN saved by this program with --save
//   attack --train-epochs 1               trains a SmallCNN naturally first (the default)
//
// Run `attack --help` for every option.
#include "common.hpp"

#include <ardent/ardent.hpp>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <functional>
#include <variant>

namespace {

struct Settings {
  std::string model_path;
  std::string checkpoint_path;
  std::string save_path;
  std::string data_dir = ardent::data::kFashionMNISTDirectory.string();
  int train_epochs = 1;
  int width = 16;
  double epsilon = 0.1;
  double epsilon_l2 = 1.5;
  int steps = 10;
  int64_t limit = 0;
  int64_t batch_size = 256;
  int threads = tools::default_threads();
  uint64_t seed = 0;
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

/// Natural training with Adam on the whole training split, printing the running loss.
void train(ardent::models::SmallCNN& model, const ardent::data::MNIST& train_set, const Settings& s) {
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-3));
  const int64_t n = train_set.images().size(0);
  const int64_t batch = 128;
  model->train();
  for (int epoch = 1; epoch <= s.train_epochs; ++epoch) {
    const auto start = Clock::now();
    const auto order = torch::randperm(n, torch::kLong);
    double loss_sum = 0;
    int64_t batches = 0;
    for (int64_t first = 0; first < n; first += batch) {
      const auto index = order.slice(0, first, std::min(first + batch, n));
      const auto x = train_set.images().index_select(0, index);
      const auto y = train_set.labels().index_select(0, index);
      optimizer.zero_grad();
      const auto loss = torch::nn::functional::cross_entropy(model->forward(x), y);
      loss.backward();
      optimizer.step();
      loss_sum += loss.item<double>();
      ++batches;
    }
    fmt::print("epoch {}/{}: training loss {:.4f} ({:.1f} s)\n", epoch, s.train_epochs, loss_sum / batches,
               seconds_since(start));
  }
  model->eval();
}

template <ardent::Model M>
void report(M& model, const ardent::data::MNIST& test_set, const Settings& s) {
  namespace at = ardent::attacks;
  const auto data = tools::take(test_set, s.limit);
  const double eps = s.epsilon;
  const double step = ardent::attacks::madry_step_size(eps, s.steps);
  using AnyAttack = std::variant<at::None, at::FGSM, at::PGD, at::BIM, at::MIFGSM>;
  const std::vector<std::pair<std::string, AnyAttack>> suite = {
      {"clean (no attack)", at::None()},
      {fmt::format("FGSM, Linf eps {}", eps), at::FGSM(eps)},
      {fmt::format("PGD-{}, Linf eps {}", s.steps, eps), tools::pgd(eps, s.steps)},
      {fmt::format("PGD-{}, L2 eps {}", s.steps, s.epsilon_l2),
       at::PGD(tools::madry_pgd_options(s.epsilon_l2, s.steps).norm(ardent::Norm::L2))},
      {fmt::format("BIM-{}, Linf eps {}", s.steps, eps), at::BIM(at::BIMOptions(eps).step_size(step).steps(s.steps))},
      {fmt::format("MI-FGSM-{}, Linf eps {}", s.steps, eps),
       at::MIFGSM(at::MIFGSMOptions(eps).step_size(step).steps(s.steps))},
  };
  fmt::print("\n{} Fashion-MNIST test images\n\n", data.images.size(0));
  fmt::print("| {:<26} | {:>8} | {:>8} |\n", "attack", "accuracy", "time (s)");
  fmt::print("| {:-<26} | {:->8} | {:->8} |\n", "", "", "");
  for (const auto& [name, attack] : suite) {
    const auto start = Clock::now();
    const double accuracy = std::visit(
        [&](const auto& a) { return tools::accuracy_under(model, a, data, s.batch_size); }, attack);
    fmt::print("| {:<26} | {:>7.2f}% | {:>8.1f} |\n", name, 100 * accuracy, seconds_since(start));
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{"Clean and robust accuracy of a Fashion-MNIST classifier under ardent's gradient attacks"};
  auto* model_opt = app.add_option("--model", s.model_path, "TorchScript model to attack (inputs [B,1,28,28] in [0,1])")
                        ->check(CLI::ExistingFile);
  auto* checkpoint_opt = app.add_option("--checkpoint", s.checkpoint_path, "SmallCNN saved earlier with --save")
                             ->check(CLI::ExistingFile)
                             ->excludes(model_opt);
  app.add_option("--train-epochs", s.train_epochs,
                 "Without --model or --checkpoint: epochs of natural training of a SmallCNN")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--width", s.width, "Width of the SmallCNN")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--save", s.save_path, "Where to save the trained SmallCNN");
  app.add_option("--data", s.data_dir, "Directory with the Fashion-MNIST (or MNIST) IDX files")
      ->check(CLI::ExistingDirectory)
      ->capture_default_str();
  app.add_option("--epsilon", s.epsilon, "Linf radius of the attacks")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--epsilon-l2", s.epsilon_l2, "L2 radius of PGD-L2")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--steps", s.steps, "Steps of the iterative attacks (step size 2.5 eps / steps)")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  app.add_option("--limit", s.limit, "Attack only the first N test images (0: all 10,000)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--batch-size", s.batch_size, "Images per attack batch")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--threads", s.threads, "LibTorch threads (default: all cores)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--seed", s.seed, "Random seed")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    torch::set_num_threads(s.threads);
    ardent::runtime::keep_freed_memory();  // the program's opt-in (ardent/runtime/memory.hpp)
    torch::manual_seed(s.seed);
    fmt::print("ardent attack: LibTorch {}, {} threads\n", TORCH_VERSION, torch::get_num_threads());
    const ardent::data::MNIST test_set(s.data_dir, ardent::data::MNIST::Split::Test);

    if (*model_opt) {
      auto model = torch::jit::load(s.model_path);
      model.eval();
      fmt::print("model: TorchScript {}\n", s.model_path);
      report(model, test_set, s);
      return 0;
    }
    ardent::models::SmallCNN model(ardent::models::SmallCNNOptions(10).width(s.width));
    if (*checkpoint_opt) {
      ardent::io::load_module(model, s.checkpoint_path);
      fmt::print("model: SmallCNN (width {}) from {}\n", s.width, s.checkpoint_path);
    } else {
      fmt::print("model: SmallCNN (width {}), natural training for {} epoch(s) on {}\n", s.width, s.train_epochs,
                 s.data_dir);
      const ardent::data::MNIST train_set(s.data_dir, ardent::data::MNIST::Split::Train);
      train(model, train_set, s);
      if (!s.save_path.empty()) ardent::io::save_module(model, s.save_path);
    }
    model->eval();
    report(model, test_set, s);
  } catch (const std::exception& e) {
    fmt::print(stderr, "attack: {}\n", tools::error_message(e));
    return 1;
  }
  return 0;
}
