// Training machinery: seeded batches, checkpoints written atomically, and resume giving exactly
// the result of an uninterrupted run.
#include "catch.hpp"

#include <ardent/data/batches.hpp>
#include <ardent/distill/factories.hpp>
#include <ardent/models/small_cnn.hpp>
#include <ardent/train/loop.hpp>

#include <unistd.h>

namespace {

struct TempDir {
  std::filesystem::path path;
  TempDir() : path(std::filesystem::temp_directory_path() / ("ardent_train_test_" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

struct Run {
  ardent::models::SmallCNN model{ardent::models::SmallCNNOptions(10).width(2)};
  ardent::MadryTrainer<ardent::models::SmallCNN> trainer;
  torch::optim::Adam optimizer;
  ardent::data::ShuffledBatches batches;

  Run(const torch::Tensor& x, const torch::Tensor& y, uint64_t init_seed)
      : model(init(init_seed)),
        trainer(ardent::make_madry_trainer(model, ardent::attacks::PGDOptions(0.1).step_size(0.05).steps(2))),
        optimizer(trainer.parameters(), torch::optim::AdamOptions(0.01)),
        batches(x, y, 16, /*seed=*/7) {}

  static ardent::models::SmallCNN init(uint64_t seed) {
    torch::manual_seed(seed);
    return ardent::models::SmallCNN(ardent::models::SmallCNNOptions(10).width(2));
  }

  ardent::train::History train(int64_t epochs, const std::filesystem::path& checkpoint, bool resume,
                               const std::filesystem::path& metrics = {}) {
    ardent::train::LoopOptions options;
    options.epochs = epochs;
    options.checkpoint = checkpoint;
    options.resume = resume;
    options.metrics_csv = metrics;
    options.progress_every = 0;
    return ardent::train::train_loop(trainer, batches, optimizer, {{"model", model.ptr()}}, options);
  }
};

}  // namespace

TEST_CASE("ShuffledBatches: every sample once per epoch, in an order fixed by (seed, epoch)", "[train]") {
  const auto x = torch::arange(10, torch::kFloat).reshape({10, 1});
  const auto y = torch::arange(10, torch::kLong);
  ardent::data::ShuffledBatches a(x, y, 4, 3);
  ardent::data::ShuffledBatches b(x, y, 4, 3);
  std::vector<int64_t> first;
  std::vector<int64_t> second;
  for (const auto& batch : a) {
    const auto& yb = batch.labels;
    for (int64_t i = 0; i < yb.size(0); ++i) first.push_back(yb[i].item<int64_t>());
  }
  for (const auto& batch : a) {
    const auto& yb = batch.labels;
    for (int64_t i = 0; i < yb.size(0); ++i) second.push_back(yb[i].item<int64_t>());
  }
  CHECK(first.size() == 10);
  CHECK(std::set<int64_t>(first.begin(), first.end()).size() == 10);
  CHECK(first != second);  // a new order each epoch
  b.set_epoch(1);
  std::vector<int64_t> resumed;
  for (const auto& batch : b) {
    const auto& yb = batch.labels;
    for (int64_t i = 0; i < yb.size(0); ++i) resumed.push_back(yb[i].item<int64_t>());
  }
  CHECK(resumed == second);  // epoch 1's order, whoever asks for it
  CHECK_THROWS_WITH(ardent::data::ShuffledBatches(x, y.slice(0, 0, 9), 4, 0), ContainsSubstring("'labels'"));
  CHECK_THROWS_WITH(ardent::data::ShuffledBatches(x, y, 0, 0), ContainsSubstring("'batch_size'"));
}

TEST_CASE("resuming from a checkpoint gives the weights of an uninterrupted run, bit for bit", "[train][resume]") {
  TempDir tmp;
  torch::manual_seed(0);
  const auto x = torch::rand({48, 1, 28, 28});
  const auto y = torch::randint(10, {48}, torch::kLong);

  Run straight(x, y, 1);
  straight.train(2, tmp.path / "straight.pt", false);

  {
    Run interrupted(x, y, 1);
    interrupted.train(1, tmp.path / "resumed.pt", false);
  }
  torch::manual_seed(12345);  // the process that resumes starts from another random state
  Run resumed(x, y, 99);      // and other initial weights: the checkpoint must overwrite both
  const auto history = resumed.train(2, tmp.path / "resumed.pt", true);
  REQUIRE(history.size() == 1);  // only epoch 2 ran
  CHECK(history[0].at("epoch") == 2);

  const auto a = straight.model->parameters();
  const auto b = resumed.model->parameters();
  REQUIRE(a.size() == b.size());
  bool any_trained = false;
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(torch::equal(a[i], b[i]));
  Run untrained(x, y, 1);
  for (std::size_t i = 0; i < a.size(); ++i)
    any_trained = any_trained || !torch::equal(a[i], untrained.model->parameters()[i]);
  CHECK(any_trained);
  CHECK_FALSE(std::filesystem::exists(tmp.path / "resumed.pt.tmp"));  // written, then renamed into place
}

TEST_CASE("a resumed run's history starts with the epochs its checkpoint recorded", "[train][resume]") {
  TempDir tmp;
  torch::manual_seed(0);
  const auto x = torch::rand({32, 1, 28, 28});
  const auto y = torch::randint(10, {32}, torch::kLong);
  Run straight(x, y, 1);
  const auto expected = straight.train(2, tmp.path / "straight.pt", false, tmp.path / "straight.csv");
  {
    Run interrupted(x, y, 1);
    interrupted.train(1, tmp.path / "resumed.pt", false, tmp.path / "resumed.csv");
  }
  Run resumed(x, y, 1);
  const auto history = resumed.train(2, tmp.path / "resumed.pt", true, tmp.path / "resumed.csv");
  REQUIRE(history.size() == 2);
  CHECK(history[0].at("epoch") == 1);
  CHECK(history[1].at("epoch") == 2);
  // Epoch 1 as the CSV printed it (6 significant digits), epoch 2 as computed.
  CHECK(history[0].at("train_loss") == Approx(expected[0].at("train_loss")).epsilon(1e-5));
  CHECK(history[1].at("train_loss") == expected[1].at("train_loss"));

  CHECK(ardent::train::metrics_rows("epoch,a,b\n1,0.5,\n2,1e-3,7\n") ==
        ardent::train::History{{{"epoch", 1}, {"a", 0.5}}, {{"epoch", 2}, {"a", 1e-3}, {"b", 7}}});
  CHECK_THROWS_WITH(ardent::train::metrics_rows("epoch\nx\n"), ContainsSubstring("column 'epoch' holds 'x'"));
}

TEST_CASE("a damaged checkpoint is rejected with its path", "[train]") {
  TempDir tmp;
  const auto path = tmp.path / "broken.pt";
  std::ofstream(path) << "not a checkpoint";
  ardent::models::SmallCNN model(ardent::models::SmallCNNOptions(10).width(2));
  ardent::train::Checkpoint checkpoint{0, {{"model", model.ptr()}}, nullptr};
  CHECK_THROWS_WITH(ardent::train::load_checkpoint(checkpoint, path), ContainsSubstring("broken.pt"));
  CHECK_THROWS_WITH(ardent::train::load_checkpoint(checkpoint, tmp.path / "missing.pt"),
                    ContainsSubstring("missing.pt"));
}
