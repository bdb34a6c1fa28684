// train_teacher: adversarial training (Madry et al. 2018, or TRADES, Zhang et al. 2019) of a
// SmallCNN on Fashion-MNIST: the robust teacher that `distill` and the demo start from.
//
//   train_teacher --out runs/teacher --epochs 3 --width 32 --epsilon 0.1
//
// Writes <out>/teacher.pt (the model, for `distill --teacher`), <out>/checkpoint.pt (every epoch;
// --resume continues from it), <out>/metrics.csv and <out>/report.json. `--help` lists every option.
#include "common.hpp"

#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
  std::string data_dir = ardent::data::kFashionMNISTDirectory.string();
  std::string out = "runs/teacher";
  std::string method = "madry";
  int64_t width = 32;
  double epsilon = 0.1;
  tools::TrainingAttackFlags training;
  double beta = 6.0;
  int64_t epochs = 3;
  int64_t batch_size = 128;
  double lr = 1e-3;
  int64_t limit = 0;
  int64_t eval_limit = 1000;
  uint64_t seed = 0;
  int threads = tools::default_threads();
  bool resume = false;
  bool overwrite = false;

  CLI::App app{"Adversarially train a SmallCNN teacher on Fashion-MNIST (Madry AT or TRADES)"};
  app.add_option("--data", data_dir, "Directory with the Fashion-MNIST IDX files")
      ->check(CLI::ExistingDirectory)
      ->capture_default_str();
  app.add_option("--out", out, "Output directory (teacher.pt, checkpoint.pt, metrics.csv, report.json)")
      ->capture_default_str();
  app.add_option("--method", method, "madry or trades")
      ->check(CLI::IsMember({"madry", "trades"}))
      ->capture_default_str();
  app.add_option("--width", width, "SmallCNN width (channels of its first convolution)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--epsilon", epsilon, "Linf radius of the training attack")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  tools::add_training_attack_flags(app, training);
  app.add_option("--beta", beta, "TRADES trade-off beta")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--epochs", epochs, "Training epochs")->check(CLI::Range(1, 10000))->capture_default_str();
  app.add_option("--batch-size", batch_size, "Training batch size")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--lr", lr, "Adam learning rate, in (0, 10]")->check(CLI::Range(1e-12, 10.0))->capture_default_str();
  app.add_option("--limit", limit, "Train on the first N training images only (0: all 60,000)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--eval-limit", eval_limit, "Test images for the per-epoch clean / PGD-20 accuracy (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--seed", seed, "Random seed (weights, data order, attack starts)")->capture_default_str();
  app.add_option("--threads", threads, "LibTorch threads (default: all cores)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  tools::add_resume_option(app, resume);
  app.add_flag("--overwrite", overwrite, "Replace the run in --out (without it, an existing run is refused)");
  CLI11_PARSE(app, argc, argv);

  try {
    if (epsilon == 0) {
      throw std::invalid_argument("--epsilon 0 attacks nothing: --method " + method +
                                  " would train on clean images only; give --epsilon > 0");
    }
    tools::claim_output(out, resume, overwrite);
    tools::set_threads(threads);
    torch::manual_seed(seed);
    const ardent::data::MNIST train_set(data_dir, ardent::data::MNIST::Split::Train);
    const ardent::data::MNIST test_set(data_dir, ardent::data::MNIST::Split::Test);
    const auto train = tools::take(train_set, limit);
    const auto test = tools::take(test_set, eval_limit);

    ardent::models::SmallCNN model(ardent::models::SmallCNNOptions(10).width(width));
    const std::filesystem::path dir(out);
    ardent::train::History history;
    tools::with_training_attack(training, epsilon, train, [&](auto attack, auto cold, auto memory) {
      torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(lr));
      ardent::data::ShuffledBatches batches(train.images, train.labels, batch_size, seed);
      tools::EpochEndHooks hooks(training, model, cold, tools::take(test_set, 0), epsilon, memory);
      auto loop = tools::epoch_loop(model, test, epsilon, dir, epochs, resume, &hooks);
      // What defines the run: resuming with other values is refused (epochs may grow).
      loop.run_options = {{"method", method},
                          {"width", std::to_string(width)},
                          {"epsilon", fmt::format("{}", epsilon)},
                          {"attack", training.attack},
                          {"steps", std::to_string(training.steps)},
                          {"warm_start", std::to_string(training.warm_start)},
                          {"beta", fmt::format("{}", beta)},
                          {"batch_size", std::to_string(batch_size)},
                          {"lr", fmt::format("{}", lr)},
                          {"limit", std::to_string(limit)},
                          {"seed", std::to_string(seed)}};
      loop.run_options.merge(tools::mnist_digests(data_dir));
      fmt::print("{} training of SmallCNN (width {}) on {} images, epsilon {}, {} epochs\n", method, width,
                 train.images.size(0), epsilon, epochs);
      std::map<std::string, std::shared_ptr<torch::nn::Module>> modules{{"model", model.ptr()}};
      if (!memory.is_empty()) modules.emplace("perturbations", memory.ptr());
      // Opt-in: one process, or data-parallel across those scripts/launch.sh or torchrun started.
      const ardent::distributed::DataParallelLoop parallel(ardent::distributed::world());
      loop.parallel = &parallel;
      // The method is a policy type: one trainer type for each.
      const auto train_with = [&](auto trainer) {
        return ardent::train::train_loop(trainer, batches, optimizer, modules, loop, hooks);
      };
      if (method == "madry") {
        history = train_with(ardent::AdversarialTrainer(model, attack, ardent::recipes::madry()));
        return;
      }
      // TRADES starts a cold PGD at x + 0.001 N(0, 1), as make_trades_trainer does.
      if constexpr (std::is_same_v<decltype(attack), ardent::attacks::PGD>) {
        history = train_with(ardent::make_trades_trainer(model, beta, attack.options()));
      } else {
        history = train_with(ardent::AdversarialTrainer(model, attack, ardent::recipes::trades(beta)));
      }
    });
    if (!tools::main_rank()) return 0;

    ardent::io::save_module(model, dir / "teacher.pt");
    nlohmann::json report{{"program", "train_teacher"},
                          {"method", method},
                          {"width", width},
                          {"epsilon", epsilon},
                          {"attack", training.attack},
                          {"steps", training.steps},
                          {"warm_start", training.warm_start},
                          {"beta", beta},
                          {"epochs", epochs},
                          {"batch_size", batch_size},
                          {"lr", lr},
                          {"train_images", train.images.size(0)},
                          {"eval_images", test.images.size(0)},
                          {"seed", seed},
                          {"history", history}};
    ardent::train::write_json(report, dir / "report.json");
    if (!history.empty()) {
      fmt::print("final: clean {:.2f}%, PGD-20 {:.2f}% on {} test images; wrote {}\n",
                 100 * history.back().at("test_clean"), 100 * history.back().at("test_pgd20"), test.images.size(0),
                 (dir / "teacher.pt").string());
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "train_teacher: {}\n", tools::error_message(e));
    return 1;
  }
  return 0;
}
