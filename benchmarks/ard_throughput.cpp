// ARD training throughput, one process of a data-parallel run or a process alone, on synthetic
// data (docs/performance.md, "Data-parallel scaling"; benchmarks/distributed_scaling.sh runs it in
// every configuration):
//
//   ard_throughput --model small_cnn|mobilenet_v2 --batch GLOBAL --steps S [--warmup K] [--threads T]
//
// Each rank trains at GLOBAL / WORLD_SIZE images per step. Rank 0 prints one line: the global
// images per second over the S timed steps, and the share of that time spent waiting for gradient
// all-reduces at the end of backward passes (the communication that backward did not hide).
#include <ardent/ardent.hpp>
#include <ardent/distributed.hpp>

#include <CLI/CLI.hpp>

namespace {

template <typename Teacher, typename Student>
int run(Teacher teacher, Student student, const std::vector<int64_t>& shape, const std::string& name, int64_t batch,
        int64_t steps, int64_t warmup, int64_t pgd_steps) {
  const auto& world = ardent::distributed::world();
  if (batch % world.size() != 0) throw std::invalid_argument("--batch must be a multiple of WORLD_SIZE");
  const int64_t per_rank = batch / world.size();
  const int64_t n = batch * (steps + warmup);
  auto generator = at::detail::createCPUGenerator(1);
  std::vector<int64_t> sizes{n};
  sizes.insert(sizes.end(), shape.begin(), shape.end());
  const auto images = torch::rand(sizes, generator);
  const auto labels = torch::randint(0, 10, {n}, generator, torch::kLong);
  ardent::data::ShuffledBatches batches(images, labels, per_rank, 0);
  batches.set_shard(world.rank(), world.size());
  const double eps = 8.0 / 255;
  auto ard = ardent::make_ard(
      teacher, student, 1.0, 30.0,
      ardent::attacks::PGDOptions(eps).step_size(2.5 * eps / static_cast<double>(pgd_steps)).steps(pgd_steps));
  torch::optim::SGD optimizer(ard.parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  const ardent::distributed::DataParallel parallel(world, ard.parameters(), {student.ptr()});
  ard.train();
  int64_t step = 0;
  double waited = 0;
  auto start = std::chrono::steady_clock::now();
  for (auto&& [x, y, indices] : batches) {
    if (step == warmup) {
      world.barrier();
      start = std::chrono::steady_clock::now();
      waited = parallel.wait_seconds();
    }
    ard.step(x, y, optimizer);
    ++step;
  }
  world.barrier();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double share = (parallel.wait_seconds() - waited) / seconds;
  const double mean_share = ardent::distributed::mean_over_ranks(world, share, 1);
  // The all-reduce alone: the student's gradient size, in the same buckets, without backward.
  double allreduce_seconds = 0;
  if (world.size() > 1) {
    std::vector<torch::Tensor> buckets;
    for (const auto size : parallel.bucket_sizes()) buckets.push_back(torch::ones({size}));
    constexpr int repeats = 5;
    world.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < repeats; ++i) {
      std::vector<c10::intrusive_ptr<c10d::Work>> works;
      for (auto& b : buckets) works.push_back(world.all_reduce_async(b));
      for (auto& w : works) world.wait(w, "benchmark all_reduce");
    }
    allreduce_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / repeats;
  }
  int64_t parameter_count = 0;
  for (const auto& p : student->parameters()) parameter_count += p.numel();
  if (world.is_main()) {
    const double step = seconds / static_cast<double>(steps);
    fmt::print(
        "model={} processes={} threads={} global_batch={} steps={} parameters={} images_per_s={:.2f} "
        "step_s={:.3f} allreduce_s={:.4f} allreduce_share={:.4f} allreduce_wait_share={:.4f}\n",
        name, world.size(), torch::get_num_threads(), batch, steps, parameter_count,
        static_cast<double>(batch * steps) / seconds, step, allreduce_seconds, allreduce_seconds / step, mean_share);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "small_cnn";
  int64_t batch = 64, steps = 10, warmup = 2, pgd_steps = 10;
  int threads = 1;
  CLI::App app{"ARD training throughput (images/s) of one rank of a data-parallel run"};
  app.add_option("--model", model, "small_cnn (1x28x28, SmallCNN teacher) or mobilenet_v2 (3x32x32, ResNet18 teacher)")
      ->check(CLI::IsMember({"small_cnn", "mobilenet_v2"}));
  app.add_option("--batch", batch, "Global batch (divided among the processes)")->check(CLI::PositiveNumber);
  app.add_option("--steps", steps, "Timed steps")->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "Untimed steps first")->check(CLI::NonNegativeNumber);
  app.add_option("--pgd-steps", pgd_steps, "PGD steps of the ARD attack")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "LibTorch threads of this process")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  try {
    torch::set_num_threads(threads);
    torch::manual_seed(0);
    if (model == "small_cnn") {
      return run(ardent::models::SmallCNN(ardent::models::SmallCNNOptions(10).width(32)),
                 ardent::models::SmallCNN(ardent::models::SmallCNNOptions(10).width(16)), {1, 28, 28}, model, batch,
                 steps, warmup, pgd_steps);
    }
    return run(ardent::models::ResNet18(), ardent::models::MobileNetV2(), {3, 32, 32}, model, batch, steps, warmup,
               pgd_steps);
  } catch (const std::exception& e) {
    fmt::print(stderr, "ard_throughput: {}\n", e.what());
    return 1;
  }
}
