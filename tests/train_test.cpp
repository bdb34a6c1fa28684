// Training machinery: fit and its callbacks, seeded batches, checkpoints written atomically, and
// resume giving exactly the result of an uninterrupted run.
#include "catch.hpp"
#include "tiny_nets.hpp"

#include <ardent/data/batches.hpp>
#include <ardent/distill/factories.hpp>
#include <ardent/models/small_cnn.hpp>
#include <ardent/train/loop.hpp>
#include <ardent/train/overfitting_guard.hpp>

#include <unistd.h>

#include <cmath>

using ardent_test::Setup;

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
  ardent::train::EpochSummary over_ranks(ardent::train::EpochSummary mine) const override {
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

namespace {
struct CountingCallback {
  int epochs_begun = 0;
  int batches = 0;
  int epochs_ended = 0;
  int stop_after_batches = 1000;
  template <typename T>
  void on_epoch_begin(T& /*trainer*/, int64_t /*epoch*/) {
    ++epochs_begun;
  }
  template <typename T>
  bool on_batch_end(T& /*trainer*/, int64_t /*batch*/, const ardent::StepResult& r) {
    CHECK(std::isfinite(r.loss));
    return ++batches >= stop_after_batches;
  }
  template <typename T>
  void on_epoch_end(T& /*trainer*/, int64_t /*epoch*/, const ardent::train::EpochSummary& /*summary*/) {
    ++epochs_ended;
  }
};
struct NoHooks {};

struct PairDataset : torch::data::datasets::Dataset<PairDataset> {
  PairDataset(torch::Tensor x, torch::Tensor y) : x(std::move(x)), y(std::move(y)) {}
  torch::data::Example<> get(size_t i) override { return {x[static_cast<int64_t>(i)], y[static_cast<int64_t>(i)]}; }
  torch::optional<size_t> size() const override { return static_cast<size_t>(x.size(0)); }
  torch::Tensor x;
  torch::Tensor y;
};
}  // namespace

TEST_CASE("fit calls the hooks a callback has, and stops when one returns true", "[train][fit]") {
  Setup s;
  auto kd = ardent::make_kd(s.teacher, s.student);
  torch::optim::SGD optimizer(kd.parameters(), 0.01);
  std::vector<std::pair<torch::Tensor, torch::Tensor>> loader(3, {s.x, s.y});
  CountingCallback all;
  const auto full = kd.fit(loader, optimizer, 2, all, NoHooks{});
  CHECK(all.epochs_begun == 2);
  CHECK(all.batches == 6);
  CHECK(all.epochs_ended == 2);
  CHECK_FALSE(full.stopped_early);

  CountingCallback stopper;
  stopper.stop_after_batches = 4;
  const auto stopped = kd.fit(loader, optimizer, 5, stopper);
  CHECK(stopped.stopped_early);
  CHECK(stopper.batches == 4);
  CHECK(stopped.epochs_completed == 1);

  SECTION("a resumed run starts at epoch N, and the callbacks see the real numbers") {
    struct Epochs_ {
      std::vector<int64_t> seen;
      void on_epoch_begin(decltype(kd)&, int64_t epoch) { seen.push_back(epoch); }
    } recorder;
    const auto resumed = kd.fit(loader, optimizer, ardent::train::Epochs{2, 4}, recorder);
    CHECK(recorder.seen == std::vector<int64_t>{2, 3});
    CHECK(resumed.epochs_completed == 2);
    CHECK(resumed.epochs.front().epoch == 2);
  }
  SECTION("a loader with no batch is refused, not counted a success") {
    std::vector<std::pair<torch::Tensor, torch::Tensor>> empty;
    CHECK_THROWS_WITH(kd.fit(empty, optimizer, 1), ContainsSubstring("ardent::train::fit") &&
                                                       ContainsSubstring("'loader'") &&
                                                       ContainsSubstring("no batch in epoch 0"));
  }
  SECTION("a torch::data loader works too") {
    auto data_loader = torch::data::make_data_loader(PairDataset(s.x, s.y), torch::data::DataLoaderOptions(4));
    CountingCallback counter;
    kd.fit(*data_loader, optimizer, 1, counter);
    CHECK(counter.batches == 2);
  }
}

TEST_CASE("train_loop passes user callbacks the real epoch numbers, and one can stop it", "[train][fit]") {
  Setup s;
  auto kd = ardent::make_kd(s.teacher, s.student);
  torch::optim::SGD optimizer(kd.parameters(), 0.01);
  ardent::data::ShuffledBatches batches(s.x, s.y, 4, 0);
  ardent::train::LoopOptions options;
  options.epochs = 5;
  options.progress_every = 0;
  struct StopAfterSecond {
    std::vector<int64_t> begun;
    void on_epoch_begin(decltype(kd)&, int64_t epoch) { begun.push_back(epoch); }
    bool on_epoch_end(decltype(kd)&, int64_t epoch, const ardent::train::EpochSummary&) { return epoch == 1; }
  } callback;
  const auto history = ardent::train::train_loop(kd, batches, optimizer, {}, options, callback);
  CHECK(callback.begun == std::vector<int64_t>{0, 1});
  CHECK(history.size() == 2);
}

TEST_CASE("the overfitting guard fires on a collapse, rolls back, and stays quiet on a healthy run",
          "[train][fast][guard]") {
  torch::manual_seed(0);
  auto model = std::make_shared<torch::nn::LinearImpl>(4, 2);
  std::vector<ardent::train::GuardReading> readings;
  std::size_t next = 0;
  ardent::train::OverfittingGuard guard([&] { return readings.at(next++); }, model);
  const ardent::train::EpochSummary summary;
  int trainer = 0;

  SECTION("healthy: PGD accuracy rises and falls a little") {
    readings = {{0.40, 0.50}, {0.45, 0.55}, {0.43, 0.60}, {0.48, 0.62}};
    for (int64_t e = 0; e < 4; ++e) CHECK_FALSE(guard.on_epoch_end(trainer, e, summary));
    CHECK(guard.columns().at("guard_collapse") == 0);
  }
  SECTION("collapse: PGD accuracy falls to 2% while the training attack's rises to 90%") {
    readings = {{0.40, 0.50}, {0.45, 0.55}, {0.02, 0.90}};
    CHECK_FALSE(guard.on_epoch_end(trainer, 0, summary));
    CHECK_FALSE(guard.on_epoch_end(trainer, 1, summary));
    const auto best = model->weight.detach().clone();
    {
      torch::NoGradGuard no_grad;
      model->weight.add_(1.0);  // the collapsed epoch's update
    }
    CHECK(guard.on_epoch_end(trainer, 2, summary));
    CHECK(guard.columns().at("guard_collapse") == 1);
    CHECK(torch::equal(model->weight, best));  // rolled back to the best epoch
  }
  SECTION("a drop that the training attack shares is not catastrophic overfitting") {
    readings = {{0.45, 0.55}, {0.10, 0.15}};
    CHECK_FALSE(guard.on_epoch_end(trainer, 0, summary));
    CHECK_FALSE(guard.on_epoch_end(trainer, 1, summary));
  }
}
