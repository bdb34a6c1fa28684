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
                               const std::filesystem::path& metrics = {},
                               const ardent::train::Parallelism* parallel = nullptr) {
    ardent::train::LoopOptions options;
    options.parallel = parallel;
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

namespace {

/// A Parallelism written by hand: rank 1 of 2, each collective recorded, the other rank's
/// epoch taken to have had the same samples at twice the loss.
struct PretendRankOne final : ardent::train::Parallelism {
  mutable std::vector<std::string> calls;
  int64_t rank() const override { return 1; }
  int64_t size() const override { return 2; }
  void check_same(int64_t value, std::string_view what) const override {
    calls.push_back(fmt::format("check_same {} {}", value, what.substr(0, 10)));
  }
  ardent::EpochSummary over_ranks(ardent::EpochSummary mine) const override {
    calls.push_back(fmt::format("over_ranks {}", mine.samples));
    mine.mean_loss = (mine.mean_loss + 2 * mine.mean_loss) / 2;
    mine.samples *= 2;
    return mine;
  }
  void begin_epoch(uint64_t seed, int64_t epoch) const override {
    calls.push_back(fmt::format("begin_epoch {} {}", seed, epoch));
  }
  std::shared_ptr<void> synchronise(std::vector<torch::Tensor> parameters,
                                    const std::vector<std::shared_ptr<torch::nn::Module>>& modules) const override {
    calls.push_back(fmt::format("synchronise {} {}", parameters.size(), modules.size()));
    return nullptr;
  }
};

}  // namespace

TEST_CASE("train_loop is one process unless given a Parallelism, whatever the environment says", "[train]") {
  TempDir tmp;
  torch::manual_seed(0);
  const auto x = torch::rand({32, 1, 28, 28});
  const auto y = torch::randint(10, {32}, torch::kLong);
  // torchrun's variables for a world that does not exist: a loop that read them would wait for
  // rank 0 on port 1 and fail; this one trains alone, as rank 0, writing its files.
  const char* saved[] = {"WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"};
  std::vector<std::optional<std::string>> old;
  for (const char* name : saved)
    old.emplace_back(std::getenv(name) ? std::optional<std::string>(std::getenv(name)) : std::nullopt);
  setenv("WORLD_SIZE", "2", 1);
  setenv("RANK", "1", 1);
  setenv("MASTER_ADDR", "127.0.0.1", 1);
  setenv("MASTER_PORT", "1", 1);
  Run alone(x, y, 1);
  const auto history = alone.train(1, tmp.path / "alone.pt", false, tmp.path / "alone.csv");
  for (std::size_t i = 0; i < old.size(); ++i) {
    if (old[i]) {
      setenv(saved[i], old[i]->c_str(), 1);
    } else {
      unsetenv(saved[i]);
    }
  }
  REQUIRE(history.size() == 1);
  CHECK(std::filesystem::exists(tmp.path / "alone.pt"));
  CHECK(std::filesystem::exists(tmp.path / "alone.csv"));

  // Given one, the loop shards the batches, keeps the parameters in step, reseeds per epoch and
  // records the loss of all ranks; as rank 1 it writes nothing.
  const PretendRankOne parallel;
  Run sharded(x, y, 1);
  const auto shared = sharded.train(1, tmp.path / "rank1.pt", false, tmp.path / "rank1.csv", &parallel);
  CHECK(parallel.calls == std::vector<std::string>{"check_same 0 train_loop",
                                                   fmt::format("synchronise {} 1", sharded.trainer.parameters().size()),
                                                   "begin_epoch 7 0", "over_ranks 16"});
  REQUIRE(shared.size() == 1);
  CHECK_FALSE(std::filesystem::exists(tmp.path / "rank1.pt"));
  CHECK_FALSE(std::filesystem::exists(tmp.path / "rank1.csv"));
  // 16 samples (the shard) at loss l here, 16 at 2 l on the pretend other rank: 1.5 l.
  Run shard_alone(x, y, 1);  // the same start: the same generator state, the same shard
  shard_alone.batches.set_shard(1, 2);
  const auto one = shard_alone.train(1, {}, false);
  CHECK(shared[0].at("train_loss") == Approx(1.5 * one[0].at("train_loss")).epsilon(1e-12));
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
