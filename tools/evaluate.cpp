// evaluate: clean and robust accuracy of a classifier under a suite of strong attacks, with the
// worst case over the suite (the AutoAttack protocol: each attack runs on the points every earlier
// one failed on) and the protocol's sanity checks. See docs/evaluation.md.
//
//   evaluate --model model.pt --epsilon 0.1                         AutoAttack standard, Fashion-MNIST
//   evaluate --checkpoint small_cnn.pt --suite autoattack-quick --limit 1000 --json r.json
//   evaluate --model cifar.pt --dataset cifar10 --data cifar-10-batches-bin --epsilon 0.0314
//            --robustbench entry.json --architecture WideResNet-28-10
//
// Run `evaluate --help` for every option.
#include "common.hpp"

#include <ardent/ardent.hpp>
#include <ardent/data/cifar.hpp>
#include <ardent/distributed.hpp>
#include <ardent/eval/autoattack.hpp>
#include <ardent/eval/evaluate.hpp>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <map>

namespace {

struct Settings {
  std::string model_path;
  std::string checkpoint_path;
  std::string dataset = "fashion-mnist";
  std::string data_dir;
  std::string suite = "autoattack";
  std::string norm = "linf";
  std::string json_path;
  std::string robustbench_path;
  std::string architecture;
  std::string name;
  int width = 16;
  double epsilon = 0.1;
  int steps = 0;
  int64_t queries = 5000;
  int64_t limit = 0;
  int64_t batch_size = 256;
  int64_t progress_every = 0;
  double progress_seconds = 30;
  bool protocol_only = false;
  int threads = tools::default_threads();
  uint64_t seed = 0;
};

std::vector<ardent::eval::Preset> make_suite(const Settings& s) {
  namespace ev = ardent::eval;
  const double eps = s.epsilon;
  const auto norm = s.norm == "l2" ? ardent::Norm::L2 : ardent::Norm::Linf;
  const int64_t pgd_steps = s.steps > 0 ? s.steps : 20;
  const int64_t steps = s.steps > 0 ? s.steps : 100;
  const auto standard = [&] {
    return std::vector<ev::Preset>{ev::apgd_ce(eps, steps, norm), ev::apgd_t(eps, steps, norm),
                                   ev::fab_t(eps, steps, norm), ev::square(eps, s.queries, norm)};
  };
  if (s.suite == "pgd") return {ev::pgd(eps, pgd_steps, norm)};
  if (s.suite == "cw-linf") return {ev::cw_linf(eps, pgd_steps)};
  if (s.suite == "apgd-ce") return {ev::apgd_ce(eps, steps, norm)};
  if (s.suite == "apgd-t") return {ev::apgd_t(eps, steps, norm)};
  if (s.suite == "fab-t") return {ev::fab_t(eps, steps, norm)};
  if (s.suite == "square") return {ev::square(eps, s.queries, norm)};
  if (s.suite == "autoattack") {
    return s.steps == 0 && s.queries == 5000 ? ev::autoattack(eps, norm) : standard();
  }
  if (s.suite == "autoattack-plus") return ev::autoattack_plus(eps, norm);
  if (s.suite == "autoattack-rand") return ev::autoattack_rand(eps, norm);
  if (s.suite == "autoattack-quick") return ev::autoattack_quick(eps, norm);
  if (s.suite == "autoattack-lite") return ev::autoattack_lite(eps, norm, steps);
  if (s.suite == "study") return ev::study_suite(eps, s.steps > 0 ? s.steps : 20);
  // all: the weaker attacks first, so the stronger ones run only on what is left.
  auto all = std::vector<ev::Preset>{ev::pgd(eps, pgd_steps, norm)};
  if (norm == ardent::Norm::Linf) all.push_back(ev::cw_linf(eps, pgd_steps));
  for (auto& p : standard()) all.push_back(std::move(p));
  return all;
}

template <ardent::Model M>
int run(M& model, const torch::Tensor& x, const torch::Tensor& y, const Settings& s) {
  const auto suite = make_suite(s);
  fmt::print("{} test images, suite '{}' ({} attacks), {} epsilon {}\n\n", x.size(0), s.suite, suite.size(),
             s.norm == "l2" ? "L2" : "Linf", s.epsilon);
  std::fflush(stdout);
  // Under scripts/launch.sh each rank evaluates its shard and the counts are summed.
  const auto& world = ardent::distributed::world();
  const auto report = ardent::distributed::reduce_report(
      world, ardent::evaluate(model, ardent::distributed::shard(x, world), ardent::distributed::shard(y, world), suite,
                              ardent::eval::EvalOptions()
                                  .batch_size(s.batch_size)
                                  .individual(!s.protocol_only)
                                  .progress_every(world.is_main() ? s.progress_every : 0)
                                  .progress_seconds(world.is_main() ? s.progress_seconds : 0)));
  if (!world.is_main()) return 0;
  fmt::print("{}", report);
  if (!s.json_path.empty()) {
    report.write_json(s.json_path);
    fmt::print("report written to {}\n", s.json_path);
  }
  if (!s.robustbench_path.empty()) {
    report.write_robustbench_json(
        s.robustbench_path,
        ardent::eval::RobustBenchMetadata().name(s.name).architecture(s.architecture).dataset(s.dataset));
    fmt::print("RobustBench entry written to {}\n", s.robustbench_path);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{"Robust accuracy of a classifier under AutoAttack (APGD-CE, APGD-T, FAB-T, Square) and other attacks"};
  auto* model_opt =
      app.add_option("--model", s.model_path, "TorchScript classifier (inputs in [0, 1])")->check(CLI::ExistingFile);
  auto* checkpoint_opt = app.add_option("--checkpoint", s.checkpoint_path,
                                        "ardent::models::SmallCNN saved with torch::save (Fashion-MNIST only)")
                             ->check(CLI::ExistingFile)
                             ->excludes(model_opt);
  app.add_option("--width", s.width, "Width of the SmallCNN checkpoint")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--dataset", s.dataset, "fashion-mnist (IDX files) or cifar10 (binary version)")
      ->check(CLI::IsMember({"fashion-mnist", "cifar10"}))
      ->capture_default_str();
  app.add_option("--data", s.data_dir,
                 "Directory of the data files (default for fashion-mnist: " +
                     ardent::data::kFashionMNISTDirectory.string() + ")")
      ->check(CLI::ExistingDirectory);
  app.add_option("--suite", s.suite,
                 "autoattack (standard), autoattack-plus, autoattack-rand, autoattack-quick (development only), "
                 "autoattack-lite, pgd, cw-linf, apgd-ce, apgd-t, fab-t, square, study (PGD, BIM, CW-Linf, APGD-CE, "
                 "APGD-T: the reproduction study's table), or all (PGD, CW-Linf, then standard)")
      ->check(CLI::IsMember({"autoattack", "autoattack-plus", "autoattack-rand", "autoattack-quick", "autoattack-lite",
                             "pgd", "cw-linf", "apgd-ce", "apgd-t", "fab-t", "square", "study", "all"}))
      ->capture_default_str();
  app.add_option("--norm", s.norm, "Threat model: linf or l2")
      ->check(CLI::IsMember({"linf", "l2"}))
      ->capture_default_str();
  app.add_option("--epsilon", s.epsilon, "Radius of the ball")->check(CLI::Range(0.0, 1000.0))->capture_default_str();
  app.add_option("--steps", s.steps, "Steps per attack (0: 20 for PGD and CW-Linf, 100 for APGD and FAB)")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--queries", s.queries, "Square's queries (AutoAttack: 5000)")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_flag("--protocol-only", s.protocol_only,
               "Run each attack only on the points the earlier ones left (no 'alone' column; about half the time)");
  app.add_option("--limit", s.limit, "Evaluate only the first N test images (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--batch-size", s.batch_size, "Images per batch")->check(CLI::Range(1, 100000))->capture_default_str();
  app.add_option("--progress", s.progress_every, "Print progress to stderr every N batches (0: never)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--progress-seconds", s.progress_seconds,
                 "Print progress with the time left to stderr at most every S seconds (0: never)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--json", s.json_path, "Write the report as JSON to this file");
  app.add_option("--robustbench", s.robustbench_path, "Write a RobustBench model entry (JSON) to this file");
  app.add_option("--architecture", s.architecture, "Architecture, for the RobustBench entry");
  app.add_option("--name", s.name, "Model name, for the RobustBench entry");
  app.add_option("--threads", s.threads, "LibTorch threads (default: all cores)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--seed", s.seed, "Random seed (random starts)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    if (!*model_opt && !*checkpoint_opt) throw CLI::RequiredError("--model or --checkpoint");
    tools::quiet_unless_main();
    torch::set_num_threads(s.threads);
    ardent::runtime::keep_freed_memory();  // the program's opt-in (ardent/runtime/memory.hpp)
    torch::manual_seed(s.seed);
    fmt::print("ardent evaluate: LibTorch {}, {} threads\n", TORCH_VERSION, torch::get_num_threads());

    torch::Tensor x;
    torch::Tensor y;
    if (s.dataset == "cifar10") {
      if (s.data_dir.empty()) throw std::invalid_argument("--dataset cifar10 needs --data DIR (cifar-10-batches-bin)");
      if (*checkpoint_opt) throw std::invalid_argument("--checkpoint is a 1x28x28 SmallCNN; use --model for CIFAR-10");
      const ardent::data::CIFAR10 test(s.data_dir, ardent::data::CIFAR10::Split::Test);
      x = test.images();
      y = test.labels();
    } else {
      const std::filesystem::path directory = s.data_dir.empty() ? ardent::data::kFashionMNISTDirectory
                                                                 : std::filesystem::path(s.data_dir);
      const ardent::data::MNIST test(directory, ardent::data::MNIST::Split::Test);
      x = test.images();
      y = test.labels();
    }
    if (s.limit > 0 && s.limit < x.size(0)) {
      x = x.slice(0, 0, s.limit);
      y = y.slice(0, 0, s.limit);
    }
    if (*model_opt) {
      auto model = torch::jit::load(s.model_path);
      model.eval();
      fmt::print("model: TorchScript {}\n", s.model_path);
      return run(model, x, y, s);
    }
    ardent::models::SmallCNN model(ardent::models::SmallCNNOptions(10).width(s.width));
    ardent::io::load_module(model, s.checkpoint_path);
    model->eval();
    fmt::print("model: SmallCNN (width {}) from {}\n", s.width, s.checkpoint_path);
    return run(model, x, y, s);
  } catch (const CLI::Error& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    fmt::print(stderr, "evaluate: {}\n", tools::error_message(e));
    return 1;
  }
}
