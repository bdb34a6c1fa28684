// The fast-training pieces: FGSM with a random start and N-FGSM against their formulas written out
// here, warm starts (attacks::WarmStart, attacks::PerturbationMemory), the catastrophic-overfitting
// guard, the example indices of data::ShuffledBatches, and the attack-scoped memory reuse.
#include "catch.hpp"

#include <ardent/ardent.hpp>

#include <algorithm>
#include <numeric>
#include <set>

using namespace ardent;

namespace {

// A fixed model whose input gradient is easy to write independently: logits = W flatten(x) + b.
struct LinearNetImpl : torch::nn::Module {
  LinearNetImpl() { head = register_module("head", torch::nn::Linear(16, 3)); }
  torch::Tensor forward(const torch::Tensor& x) { return head->forward(x.flatten(1)); }
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(LinearNet);

/// The input gradient of the summed cross-entropy at x, by plain autograd.
torch::Tensor ce_gradient(LinearNet& model, const torch::Tensor& x, const torch::Tensor& y) {
  auto input = x.detach().clone().requires_grad_(true);
  const auto loss = torch::nn::functional::cross_entropy(
      model->forward(input), y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  return torch::autograd::grad({loss}, {input})[0];
}

struct Fixture {
  LinearNet model;
  torch::Tensor x;
  torch::Tensor y;
  Fixture() {
    torch::manual_seed(3);
    model = LinearNet();
    x = torch::rand({8, 1, 4, 4});
    y = torch::randint(3, {8}, torch::kLong);
  }
};

}  // namespace

TEST_CASE("FGSM with a random start is one clipped sign step from a uniform point of the ball", "[attacks][fast]") {
  Fixture f;
  const double eps = 0.1;
  const double a = 1.25 * eps;
  torch::manual_seed(7);
  const auto x_adv =
      attacks::FGSM(attacks::FGSMOptions(eps).random_start(true).step_size(a)).perturb(f.model, f.x, f.y);

  torch::manual_seed(7);
  const auto x0 = (f.x + torch::empty_like(f.x).uniform_(-eps, eps)).clamp(0, 1);
  const auto stepped = x0 + a * ce_gradient(f.model, x0, f.y).sign();
  const auto expected = torch::max(torch::min(stepped, f.x + eps), f.x - eps).clamp(0, 1);
  CHECK(torch::allclose(x_adv, expected, 0, 1e-6));
  CHECK((x_adv - f.x).abs().max().item<double>() <= eps + 1e-6);

  SECTION("the defaults are Goodfellow's FGSM: x + eps sign(grad L(x))") {
    const auto fgsm = attacks::FGSM(eps).perturb(f.model, f.x, f.y);
    CHECK(torch::allclose(fgsm, (f.x + eps * ce_gradient(f.model, f.x, f.y).sign()).clamp(0, 1), 0, 1e-6));
  }
}

TEST_CASE("N-FGSM steps from strongly noised points without projecting back to the ball", "[attacks][fast]") {
  Fixture f;
  const double eps = 0.1;
  torch::manual_seed(11);
  const attacks::NFGSM nfgsm(attacks::NFGSMOptions(eps).noise(2 * eps).step_size(eps).project(false));
  const auto x_adv = nfgsm.perturb(f.model, f.x, f.y);

  torch::manual_seed(11);
  const auto x0 = (f.x + torch::empty_like(f.x).uniform_(-2 * eps, 2 * eps)).clamp(0, 1);
  const auto expected = (x0 + eps * ce_gradient(f.model, x0, f.y).sign()).clamp(0, 1);
  CHECK(torch::allclose(x_adv, expected, 0, 1e-6));
  const double distance = (x_adv - f.x).abs().max().item<double>();
  CHECK(distance > eps);  // not projected
  CHECK(distance <= nfgsm.radius() + 1e-6);
  CHECK(nfgsm.radius() == Approx(3 * eps));

  SECTION("project(true) clips the perturbation to the eps ball") {
    torch::manual_seed(11);
    const auto projected = attacks::NFGSM(attacks::NFGSMOptions(eps).project(true)).perturb(f.model, f.x, f.y);
    CHECK(torch::allclose(projected, torch::max(torch::min(expected, f.x + eps), f.x - eps), 0, 1e-6));
  }
  SECTION("bad options are refused, naming them") {
    CHECK_THROWS_WITH(attacks::NFGSM(attacks::NFGSMOptions(eps).noise(-1)), ContainsSubstring("'noise'"));
    CHECK_THROWS_WITH(attacks::FGSM(attacks::FGSMOptions(eps).step_size(-1)), ContainsSubstring("'step_size'"));
  }
}

TEST_CASE("a warm-started attack starts each example from its stored perturbation", "[attacks][fast][warm]") {
  Fixture f;
  const double eps = 0.1;
  attacks::PerturbationMemory memory(attacks::PerturbationMemoryOptions(20, {1, 4, 4}));
  const auto indices = torch::tensor({3, 1, 4, 15, 9, 2, 6, 5}, torch::kLong);
  // Two PGD steps of 0.05: the first call starts at random points of the ball.
  const attacks::WarmStart warm(attacks::PGD(attacks::PGDOptions(eps).step_size(0.05).steps(2)), memory);
  warm.for_examples(indices);
  const auto first = warm.perturb(f.model, f.x, f.y);
  CHECK(memory->stored_count() == 8);
  CHECK(torch::equal(memory->named_buffers()["perturbations"].index_select(0, indices), first - f.x));
  CHECK((first - f.x).abs().max().item<double>() <= eps + 1e-6);

  SECTION("the stored perturbation is the next start: with step size 0 the attack returns it") {
    const attacks::WarmStart still(attacks::PGD(attacks::PGDOptions(eps).step_size(0).steps(1)), memory);
    still.for_examples(indices);
    CHECK(torch::allclose(still.perturb(f.model, f.x, f.y), first, 0, 1e-7));
    // A cold run of the same attack starts elsewhere (random start).
    CHECK_FALSE(torch::allclose(attacks::PGD(attacks::PGDOptions(eps).step_size(0).steps(1)).perturb(f.model, f.x, f.y),
                                first, 0, 1e-7));
  }
  SECTION("a perturbation stored for other inputs never leaves the ball around these") {
    warm.for_examples(indices);
    const auto shifted = (f.x + 0.3).clamp(0, 1);
    const auto second = warm.perturb(f.model, shifted, f.y);
    CHECK((second - shifted).abs().max().item<double>() <= eps + 1e-6);
  }
  SECTION("without indices, or with indices outside the memory, it refuses") {
    CHECK_THROWS_WITH(warm.perturb(f.model, f.x, f.y), ContainsSubstring("without the batch's example indices"));
    warm.for_examples(torch::full({8}, 20, torch::kLong));
    CHECK_THROWS_WITH(warm.perturb(f.model, f.x, f.y), ContainsSubstring("'indices'"));
  }
  SECTION("the memory round-trips through a checkpoint bit for bit, in half precision too") {
    const auto path = std::filesystem::temp_directory_path() / "ardent_fast_memory.pt";
    for (const bool half : {false, true}) {
      attacks::PerturbationMemory stored(attacks::PerturbationMemoryOptions(20, {1, 4, 4}).half(half));
      stored->remember(indices, f.x, first);
      train::Checkpoint out{1, {{"perturbations", stored.ptr()}}, nullptr, {}, {}};
      train::save_checkpoint(out, path);
      attacks::PerturbationMemory loaded(attacks::PerturbationMemoryOptions(20, {1, 4, 4}).half(half));
      train::Checkpoint in{0, {{"perturbations", loaded.ptr()}}, nullptr, {}, {}};
      CHECK(train::load_checkpoint(in, path) == 1);
      for (const auto& name : {"perturbations", "stored"}) {
        CHECK(torch::equal(stored->named_buffers()[name], loaded->named_buffers()[name]));
      }
    }
    std::filesystem::remove(path);
    std::filesystem::remove(train::previous_checkpoint_path(path));
  }
}

TEST_CASE("warm-started ARD resumes bit for bit", "[distill][fast][warm]") {
  // Two epochs in one run, and one epoch + a resumed second: the same student and perturbations.
  const auto dir = std::filesystem::temp_directory_path() / "ardent_fast_resume";
  std::filesystem::remove_all(dir);
  torch::manual_seed(0);
  const auto images = torch::rand({24, 1, 28, 28});
  const auto labels = torch::randint(10, {24}, torch::kLong);
  const auto teacher = models::SmallCNN(models::SmallCNNOptions(10).width(2));
  auto run = [&](const std::string& name, int64_t epochs, bool resume) {
    torch::manual_seed(1);
    models::SmallCNN student(models::SmallCNNOptions(10).width(2));
    attacks::PerturbationMemory memory(attacks::PerturbationMemoryOptions(24, {1, 28, 28}));
    Distiller d(teacher, student, attacks::WarmStart(attacks::PGD(attacks::PGDOptions(0.1).steps(2)), memory),
                losses::KL(losses::KLOptions().temperature(4)), targets::Logits{}, recipes::ard());
    torch::optim::SGD optimizer(d.parameters(), 0.05);
    data::ShuffledBatches batches(images, labels, 8, /*seed=*/5);
    train::LoopOptions loop;
    loop.epochs = epochs;
    loop.checkpoint = dir / name / "checkpoint.pt";
    loop.resume = resume;
    loop.progress_every = 0;
    std::filesystem::create_directories(dir / name);
    train::train_loop(d, batches, optimizer, {{"student", student.ptr()}, {"perturbations", memory.ptr()}}, loop);
    return std::pair{student, memory};
  };
  const auto [whole, whole_memory] = run("whole", 2, false);
  run("split", 1, false);
  const auto [resumed, resumed_memory] = run("split", 2, true);
  CHECK(whole_memory->stored_count() == 24);
  for (const auto& p : whole->named_parameters()) CHECK(torch::equal(p.value(), resumed->named_parameters()[p.key()]));
  CHECK(torch::equal(whole_memory->named_buffers()["perturbations"], resumed_memory->named_buffers()["perturbations"]));
  std::filesystem::remove_all(dir);
}

TEST_CASE("the overfitting guard fires on a collapse, rolls back, and stays quiet on a healthy run",
          "[train][fast][guard]") {
  torch::manual_seed(0);
  auto model = std::make_shared<torch::nn::LinearImpl>(4, 2);
  std::vector<train::GuardReading> readings;
  std::size_t next = 0;
  train::OverfittingGuard guard([&] { return readings.at(next++); }, model);
  const EpochSummary summary;
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

TEST_CASE("ShuffledBatches gives each batch its examples' indices", "[data][fast]") {
  const auto images = torch::arange(50, torch::kFloat).reshape({50, 1, 1, 1});
  const auto labels = torch::arange(50, torch::kLong);
  data::ShuffledBatches one(images, labels, 8, 3);
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::vector<int64_t> seen;
    for (const auto& batch : one) {
      CHECK(torch::equal(batch.indices, batch.labels));  // labels are the positions here
      for (int64_t i = 0; i < batch.indices.size(0); ++i) seen.push_back(batch.indices[i].item<int64_t>());
    }
    std::sort(seen.begin(), seen.end());
    std::vector<int64_t> all(50);
    std::iota(all.begin(), all.end(), 0);
    CHECK(seen == all);  // a permutation per epoch
  }
  std::set<int64_t> rank0;
  std::set<int64_t> rank1;
  for (const int64_t rank : {0, 1}) {
    data::ShuffledBatches shard(images, labels, 5, 3);
    shard.set_shard(rank, 2);
    for (const auto& batch : shard) {
      for (int64_t i = 0; i < batch.indices.size(0); ++i)
        (rank == 0 ? rank0 : rank1).insert(batch.indices[i].item<int64_t>());
    }
  }
  for (const auto i : rank0) CHECK(rank1.count(i) == 0);  // disjoint across ranks
  CHECK(rank0.size() + rank1.size() == 50);
}

TEST_CASE("an attack reuses the large blocks it frees and returns them when it ends", "[core][memory]") {
  auto* const allocator = c10::GetCPUAllocator();
  {
    MemoryReuseScope scope;
    const void* first = nullptr;
    {
      const auto block = torch::empty({1 << 20});  // 4 MiB
      first = block.data_ptr();
    }
    CHECK(MemoryReuseScope::cached_bytes() == (std::size_t{4} << 20));
    const auto again = torch::empty({1 << 20});
    CHECK(again.data_ptr() == first);
    CHECK(MemoryReuseScope::cached_bytes() == 0);
    {
      MemoryReuseScope nested;
      const auto other = torch::empty({1 << 19});
    }
    CHECK(MemoryReuseScope::cached_bytes() == (std::size_t{2} << 20));  // the outer scope still holds it
  }
  CHECK(MemoryReuseScope::cached_bytes() == 0);
  CHECK(c10::GetCPUAllocator() == allocator);
  SECTION("switched off, nothing is cached") {
    SpeedupsGuard off(Speedups{.reuse_memory = false});
    MemoryReuseScope scope;
    { const auto block = torch::empty({1 << 20}); }
    CHECK(MemoryReuseScope::cached_bytes() == 0);
  }
}
