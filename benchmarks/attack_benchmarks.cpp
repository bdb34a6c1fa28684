// The PGD inner loop and the ARD training step, timed with Google Benchmark (docs/performance.md).
//
//   PgdStep/<model>/<batch>      one PGD step of ardent's attack beside, in the same iterations,
//                                an inference-mode forward (with ardent's speedups, and ATen's
//                                plain one) and a textbook LibTorch loop; counters give
//                                step / forward and ardent / textbook.
//   PgdSpeedups/<model>/<batch>  ardent's step with the speedups switched on one after another.
//   ArdentPgd/<model>/<batch>    ardent's step alone (benchmarks/python/compare.py runs it).
//   ArdStep/<batch>              one ARD training step, MobileNetV2 student and ResNet18 teacher.
//   AutoAttack/<attack>/<model>  Square, FAB-T and untargeted FAB on 100 images that resist them:
//                                seconds per query or step, and per 100 images at AutoAttack's
//                                budgets (5000 queries; 9 targets x 100 steps; 100 steps).
//
// Models are randomly initialised with random BatchNorm statistics; inputs are uniform in [0, 1].
// The thread count is ARDENT_BENCHMARK_THREADS, or every core. The process runs as a user's program
// starts, with malloc's defaults, unless ARDENT_BENCHMARK_KEEP_FREED_MEMORY=1 makes it call the
// opt-in ardent::runtime::keep_freed_memory() first: run both to see what the opt-in adds.

#include <ardent/ardent.hpp>

#include <benchmark/benchmark.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

template <typename F>
double seconds(F&& f) {
  const auto start = Clock::now();
  f();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int thread_count() {
  if (const char* value = std::getenv("ARDENT_BENCHMARK_THREADS")) return std::max(1, std::atoi(value));
  return static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
}

std::string cpu_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

/// A model with the settings of its data set: SmallCNN on 1x28x28 at eps 0.1, the CIFAR models on
/// 3x32x32 at eps 8/255.
template <typename Holder>
struct Workload {
  Holder model;
  std::vector<int64_t> image_shape;
  double epsilon;
  double step_size;
};

template <typename Holder>
Workload<Holder> workload(Holder model, std::vector<int64_t> image_shape, double epsilon, double step_size) {
  torch::NoGradGuard no_grad;
  for (auto& m : model->modules(/*include_self=*/false)) {
    if (auto* bn = m->template as<torch::nn::BatchNorm2d>()) {
      bn->running_mean.uniform_(-0.1, 0.1);
      bn->running_var.uniform_(0.5, 2.0);
    }
  }
  model->eval();
  return {std::move(model), std::move(image_shape), epsilon, step_size};
}

/// Calls f with the named model's workload.
template <typename F>
void with_workload(const std::string& name, F&& f) {
  torch::manual_seed(0);
  if (name == "small_cnn") {
    f(workload(ardent::models::SmallCNN(), {1, 28, 28}, 0.1, 0.01));
  } else if (name == "mobilenet_v2") {
    f(workload(ardent::models::MobileNetV2(), {3, 32, 32}, 8.0 / 255, 2.0 / 255));
  } else {
    f(workload(ardent::models::ResNet18(), {3, 32, 32}, 8.0 / 255, 2.0 / 255));
  }
}

struct Batch {
  torch::Tensor x;
  torch::Tensor y;
};

template <typename W>
Batch make_batch(const W& w, int64_t batch) {
  std::vector<int64_t> shape{batch};
  shape.insert(shape.end(), w.image_shape.begin(), w.image_shape.end());
  return {torch::rand(shape), torch::randint(0, 10, {batch})};
}

constexpr int64_t kSteps = 3;  // PGD steps per timed attack; times are reported per step

/// What a user writes by hand: the input marked for gradients, backward() (into every parameter
/// too), the step, the projection, the box. The model is used in the mode it is in (eval here).
template <typename W>
torch::Tensor textbook_pgd(W& w, const Batch& b) {
  auto x_adv = (b.x + torch::empty_like(b.x).uniform_(-w.epsilon, w.epsilon)).clamp(0, 1);
  for (int64_t step = 0; step < kSteps; ++step) {
    x_adv = x_adv.detach().requires_grad_(true);
    auto loss = torch::nn::functional::cross_entropy(w.model->forward(x_adv), b.y);
    w.model->zero_grad();
    loss.backward();
    x_adv = x_adv.detach() + w.step_size * x_adv.grad().sign();
    x_adv = torch::min(torch::max(x_adv, b.x - w.epsilon), b.x + w.epsilon).clamp(0, 1);
  }
  return x_adv;
}

template <typename W>
torch::Tensor ardent_pgd(W& w, const Batch& b) {
  const ardent::attacks::PGD attack(ardent::attacks::PGDOptions(w.epsilon).step_size(w.step_size).steps(kSteps));
  return attack.perturb(w.model, b.x, b.y);
}

/// An inference-mode forward of the batch in the layout the attack hands the model (channels-last
/// with the default speedups: the floor of a step is two of these).
template <typename W>
torch::Tensor inference_forward(W& w, const Batch& b) {
  torch::InferenceMode inference;
  return w.model->forward(ardent::attacks::model_layout(b.x));
}

void pgd_step(benchmark::State& state, const std::string& model, int64_t batch) {
  with_workload(model, [&](auto w) {
    const auto b = make_batch(w, batch);
    const auto plain_forward = [&] {
      ardent::runtime::SpeedupsGuard plain(ardent::runtime::no_speedups);
      return inference_forward(w, b);
    };
    plain_forward(), inference_forward(w, b), textbook_pgd(w, b), ardent_pgd(w, b);  // warm-up
    double forward = 0, plain = 0, textbook = 0, ardent = 0;
    for (auto _ : state) {
      plain += seconds(plain_forward);
      forward += seconds([&] { return inference_forward(w, b); });
      textbook += seconds([&] { return textbook_pgd(w, b); }) / kSteps;
      const double step = seconds([&] { return ardent_pgd(w, b); }) / kSteps;
      ardent += step;
      state.SetIterationTime(step);
    }
    const auto n = static_cast<double>(state.iterations());
    state.counters["forward_s"] = forward / n;
    state.counters["plain_forward_s"] = plain / n;
    state.counters["textbook_s"] = textbook / n;
    state.counters["ardent_s"] = ardent / n;
    state.counters["step_per_forward"] = ardent / forward;
    state.counters["step_per_plain_forward"] = ardent / plain;
    state.counters["ardent_per_textbook"] = ardent / textbook;
  });
}

void ardent_pgd_only(benchmark::State& state, const std::string& model, int64_t batch) {
  with_workload(model, [&](auto w) {
    const auto b = make_batch(w, batch);
    // Two untimed attacks: a fresh process first grows its heap and oneDNN's primitive cache.
    for (int warm_up = 0; warm_up < 2; ++warm_up) ardent_pgd(w, b);
    double total = 0;
    for (auto _ : state) {
      const double step = seconds([&] { return ardent_pgd(w, b); }) / kSteps;
      total += step;
      state.SetIterationTime(step);
    }
    state.counters["seconds_per_step"] = total / static_cast<double>(state.iterations());
  });
}

/// The speedups switched on one after another, interleaved in each iteration.
void pgd_speedups(benchmark::State& state, const std::string& model, int64_t batch) {
  using ardent::runtime::Speedups;
  const std::vector<std::pair<std::string, Speedups>> stages{
      {"plain_s", ardent::runtime::no_speedups},
      {"freeze_s", Speedups{true, false, false, false, false, false}},
      {"fold_s", Speedups{true, true, false, false, false, false}},
      {"channels_last_s", Speedups{true, true, false, true, false, false}},
      {"depthwise_s", Speedups{true, true, true, true, false, false}},
      {"fused_step_s", Speedups{true, true, true, true, true, false}},
      {"reuse_memory_s", Speedups{}}};
  with_workload(model, [&](auto w) {
    const auto b = make_batch(w, batch);
    const auto run = [&](const Speedups& s) {
      ardent::runtime::SpeedupsGuard guard(s);
      return seconds([&] { return ardent_pgd(w, b); }) / kSteps;
    };
    for (const auto& stage : stages) run(stage.second);  // warm-up
    std::vector<double> totals(stages.size(), 0.0);
    for (auto _ : state) {
      double all_on = 0;
      for (std::size_t i = 0; i < stages.size(); ++i) totals[i] += all_on = run(stages[i].second);
      state.SetIterationTime(all_on);
    }
    const auto n = static_cast<double>(state.iterations());
    for (std::size_t i = 0; i < stages.size(); ++i) state.counters[stages[i].first] = totals[i] / n;
    state.counters["plain_per_all"] = totals.front() / totals.back();
  });
}

/// One ARD step (make_ard: PGD-10 of 2/255 in 8/255, KL at T = 30, alpha 1) with SGD.
void ard_step(benchmark::State& state, int64_t batch) {
  torch::manual_seed(0);
  auto distiller = ardent::make_ard(ardent::models::ResNet18(), ardent::models::MobileNetV2());
  torch::optim::SGD optimizer(distiller.parameters(), torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(2e-4));
  distiller.train();
  const auto x = torch::rand({batch, 3, 32, 32});
  const auto y = torch::randint(0, 10, {batch});
  distiller.step(x, y, optimizer);  // warm-up
  double total = 0;
  for (auto _ : state) {
    const double step = seconds([&] { distiller.step(x, y, optimizer); });
    total += step;
    state.SetIterationTime(step);
  }
  state.counters["images_per_second"] = static_cast<double>(batch) * static_cast<double>(state.iterations()) / total;
}

/// Square and FAB at AutoAttack's budgets cost the most on the points they cannot break, which
/// use up every query or step: the labels are the model's own predictions and epsilon is 1e-4,
/// so that (almost) no point is broken. A few queries or steps are timed and the counters scale
/// them to the full budget: seconds_per_100_images = seconds per query (step) x queries (steps).
/// The clean forward each call makes is counted in the per-query time, a small overestimate.
void autoattack_member(benchmark::State& state, const std::string& attack, const std::string& model) {
  namespace at = ardent::attacks;
  constexpr int64_t batch = 100;
  constexpr double epsilon = 1e-4;
  const bool square = attack == "square";
  const int64_t timed = square ? 50 : 5;
  // Square: 5000 queries; FAB-T: 9 targets of 100 steps; untargeted FAB: 100 steps.
  const double budget = square ? 5000.0 : attack == "fab_t" ? 900.0 : 100.0;
  with_workload(model, [&](auto w) {
    auto b = make_batch(w, batch);
    {
      torch::NoGradGuard no_grad;
      b.y = w.model->forward(b.x).argmax(1);
    }
    const auto run = [&] {
      if (square) return at::Square(at::SquareOptions(epsilon).queries(timed)).perturb(w.model, b.x, b.y);
      return at::FAB(at::FABOptions(epsilon).steps(timed).target_classes(1).targeted(attack == "fab_t"))
          .perturb(w.model, b.x, b.y);
    };
    run();  // warm-up
    double total = 0;
    for (auto _ : state) {
      const double call = seconds(run);
      total += call;
      state.SetIterationTime(call);
    }
    const double per_unit = total / static_cast<double>(state.iterations()) / static_cast<double>(timed);
    state.counters[square ? "seconds_per_query" : "seconds_per_step"] = per_unit;
    state.counters["seconds_per_100_images"] = per_unit * budget * 100.0 / static_cast<double>(batch);
  });
}

void register_benchmarks() {
  for (const std::string model : {"small_cnn", "mobilenet_v2", "resnet18"}) {
    for (const int64_t batch : {32, 128}) {
      const auto suffix = model + "/" + std::to_string(batch);
      benchmark::RegisterBenchmark(("PgdStep/" + suffix).c_str(), pgd_step, model, batch)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark(("ArdentPgd/" + suffix).c_str(), ardent_pgd_only, model, batch)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
    benchmark::RegisterBenchmark(("PgdSpeedups/" + model + "/128").c_str(), pgd_speedups, model, int64_t{128})
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
  for (const std::string attack : {"square", "fab_t", "fab"}) {
    for (const std::string model : {"small_cnn", "mobilenet_v2"}) {
      benchmark::RegisterBenchmark(("AutoAttack/" + attack + "/" + model).c_str(), autoattack_member, attack, model)
          ->UseManualTime()
          ->Unit(benchmark::kSecond)
          ->Iterations(2);
    }
  }
  for (const int64_t batch : {32, 128}) {
    benchmark::RegisterBenchmark(("ArdStep/" + std::to_string(batch)).c_str(), ard_step, batch)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = thread_count();
  torch::set_num_threads(threads);
  // By default the process is in the state of a user's program that makes no setup call (the
  // state every user meets first). ARDENT_BENCHMARK_KEEP_FREED_MEMORY=1 applies the explicit opt-in
  // up front, so that every timed loop of the process (the textbook one too) runs with it.
  const char* keep = std::getenv("ARDENT_BENCHMARK_KEEP_FREED_MEMORY");
  const bool kept = keep != nullptr && std::string(keep) == "1" && ardent::runtime::keep_freed_memory();
  benchmark::AddCustomContext("cpu", cpu_name());
  benchmark::AddCustomContext("threads", std::to_string(threads));
  benchmark::AddCustomContext("libtorch", TORCH_VERSION);
  benchmark::AddCustomContext("freed_memory_kept", kept ? "yes" : "no (malloc defaults)");
  register_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
