// ardent::distributed within one process: the environment's checks, shard arithmetic, and the
// one-process world in which DataParallel and the reductions change nothing. The multi-process
// behaviour is tested by tests/distributed/run.sh (ctest: distributed.*).
// LibTorch first (as the precompiled header does): its glog defines CHECK, which Catch's must replace.
#include <torch/torch.h>

#include "catch.hpp"

#include <ardent/data/batches.hpp>
#include <ardent/distributed/data_parallel.hpp>
#include <ardent/distributed/data_parallel_loop.hpp>
#include <ardent/distributed/sharding.hpp>

#include <cstdlib>

namespace {

/// Sets environment variables for one test and restores them.
struct Env {
  std::vector<std::pair<std::string, std::optional<std::string>>> saved;
  Env(std::initializer_list<std::pair<const char*, const char*>> values) {
    for (const auto& [name, value] : values) {
      const char* old = std::getenv(name);
      saved.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
      if (value) {
        setenv(name, value, 1);
      } else {
        unsetenv(name);
      }
    }
  }
  ~Env() {
    for (const auto& [name, value] : saved) {
      if (value) {
        setenv(name.c_str(), value->c_str(), 1);
      } else {
        unsetenv(name.c_str());
      }
    }
  }
};

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "";
}

}  // namespace

TEST_CASE("distributed: the environment is read with torchrun's names and checked", "[distributed]") {
  {
    const Env env{{"RANK", nullptr}, {"WORLD_SIZE", nullptr}, {"LOCAL_RANK", nullptr}};
    const auto e = ardent::distributed::environment();
    CHECK(e.rank == 0);
    CHECK(e.world_size == 1);
  }
  {
    const Env env{{"RANK", "2"}, {"WORLD_SIZE", "2"}};
    CHECK_THAT(message_of([] { ardent::distributed::environment(); }),
               Catch::Contains("RANK is 2, expected < WORLD_SIZE (2)"));
  }
  {
    const Env env{{"RANK", nullptr}, {"WORLD_SIZE", "4"}};
    CHECK_THAT(message_of([] { ardent::distributed::environment(); }), Catch::Contains("RANK is unset"));
  }
  {
    const Env env{{"RANK", "0"}, {"WORLD_SIZE", "two"}};
    CHECK_THAT(message_of([] { ardent::distributed::environment(); }),
               Catch::Contains("WORLD_SIZE is 'two', expected an integer"));
  }
  {
    const Env env{{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}};
    CHECK_THAT(message_of([] { ardent::distributed::environment(); }), Catch::Contains("MASTER_PORT is '70000'"));
  }
}

TEST_CASE("distributed: shards are contiguous, disjoint, complete and balanced", "[distributed]") {
  for (int64_t n : {0, 1, 7, 10, 37}) {
    for (int64_t ranks : {1, 2, 3, 4}) {
      int64_t next = 0;
      for (int64_t r = 0; r < ranks; ++r) {
        const auto [first, count] = ardent::distributed::shard_range(n, r, ranks);
        CHECK(first == next);
        CHECK(count >= n / ranks);
        CHECK(count <= n / ranks + 1);
        next = first + count;
      }
      CHECK(next == n);
    }
  }
  CHECK_THAT(message_of([] { ardent::distributed::shard_range(10, 2, 2); }), Catch::Contains("is 2 of 2"));
}

TEST_CASE("distributed: sharded batches give every rank the same number of steps", "[distributed]") {
  // 45 images, batch 4 per rank: 2 ranks x 4 = 8 per global batch, 5 full + 5 left (split 3 + 2);
  // 3 ranks x 4 = 12: 3 full + 9 left (3 + 3 + 3); 8 ranks x 4 = 32: 1 full + 13 left (>= 8 ranks).
  for (int64_t ranks : {1, 2, 3, 8, 50}) {
    std::vector<int64_t> seen;
    int64_t steps = -1;
    for (int64_t r = 0; r < ranks; ++r) {
      ardent::data::ShuffledBatches batches(torch::zeros({45, 1}), torch::arange(45, torch::kLong), 4, 3);
      batches.set_shard(r, ranks);
      int64_t mine = 0;
      for (auto&& [x, y, indices] : batches) {
        CHECK(y.numel() > 0);
        for (int64_t i = 0; i < y.numel(); ++i) seen.push_back(y[i].item<int64_t>());
        ++mine;
      }
      CHECK(mine == batches.batches_per_epoch());
      if (steps >= 0) CHECK(mine == steps);
      steps = mine;
    }
    std::sort(seen.begin(), seen.end());
    CHECK(std::adjacent_find(seen.begin(), seen.end()) == seen.end());  // disjoint
    // Only a last global batch smaller than the number of ranks is dropped (50 ranks: 45 < 50).
    CHECK(static_cast<int64_t>(seen.size()) == (ranks == 50 ? 0 : 45));
  }
  ardent::data::ShuffledBatches batches(torch::zeros({4, 1}), torch::arange(4, torch::kLong), 2, 0);
  CHECK_THAT(message_of([&] { batches.set_shard(2, 2); }), Catch::Contains("argument 'rank' is 2"));
  CHECK_THAT(message_of([&] { batches.set_shard(0, 0); }), Catch::Contains("argument 'ranks' is 0"));
}

TEST_CASE("distributed: the one-process world leaves gradients and values untouched", "[distributed]") {
  const ardent::distributed::ProcessGroup alone;
  CHECK(alone.size() == 1);
  CHECK(alone.is_main());
  torch::nn::Linear model(3, 2);
  const ardent::distributed::DataParallel parallel(alone, model->parameters(), {model.ptr()});
  CHECK(parallel.bucket_sizes().empty());
  const auto x = torch::randn({4, 3});
  model->forward(x).sum().backward();
  const auto expected = x.sum(0).expand({2, 3});
  CHECK(torch::allclose(model->weight.grad(), expected));
  CHECK((ardent::distributed::sum_counts(alone, {3, 4}) == std::vector<int64_t>{3, 4}));
  CHECK(ardent::distributed::mean_over_ranks(alone, 0.5, 10) == 0.5);
  const ardent::distributed::DataParallelLoop loop(alone);
  const auto epoch = loop.over_ranks({0, 3, 10, 0.5});
  CHECK((epoch.samples == 10 && epoch.mean_loss == 0.5));
  ardent::EvalReport report;
  report.samples = 10;
  report.clean_accuracy = 0.3;
  CHECK(ardent::distributed::reduce_report(alone, report).clean_accuracy == 0.3);
}
