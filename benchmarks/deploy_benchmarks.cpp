// Deploy/...: int8 (each engine) against ardent's float inference forward, SmallCNN (width 16,
// 1x28x28) and MobileNetV2 (3x32x32), batch 1 and 64. The timed loop is the int8 forward; before it,
// outside the timed region, the float forward of the same model and batch is timed (median of 30
// calls), so the counters hold both in the same run: float_ms, int8_ms (the loop's mean), speedup
// (float / int8), and the sizes of the weights: float_kib (float32 parameters) and int8_kib (int8
// weights, float32 biases and scales), size_ratio. Calibration: 64 uniform random images (latency and
// size do not depend on the ranges). docs/deploy.md has a run's numbers.
//   build/benchmarks/ardent_deploy_benchmarks --benchmark_filter=Deploy/
#include <ardent/deploy.hpp>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

namespace {

struct SmallCNNCase {
  static ardent::models::SmallCNN model() {
    return ardent::models::SmallCNN(ardent::models::SmallCNNOptions(10).width(16));
  }
  static torch::Tensor images(int64_t batch) { return torch::rand({batch, 1, 28, 28}); }
};

struct MobileNetV2Case {
  static ardent::models::MobileNetV2 model() {
    return ardent::models::MobileNetV2(ardent::models::MobileNetV2Options(10));
  }
  static torch::Tensor images(int64_t batch) { return torch::rand({batch, 3, 32, 32}); }
};

template <typename Fn>
double median_ms(Fn&& fn, int runs) {
  fn();
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(times.begin(), times.begin() + runs / 2, times.end());
  return times[static_cast<std::size_t>(runs / 2)];
}

template <typename Case>
void Int8VsFloat(benchmark::State& state, const std::string& engine) {
  torch::manual_seed(0);
  auto model = Case::model();
  model->eval();
  const auto x = Case::images(state.range(0));
  auto q = ardent::deploy::quantize(model, Case::images(64), ardent::deploy::QuantizeOptions().engine(engine));
  torch::InferenceMode inference;
  const double float_ms = median_ms([&] { return model->forward(x); }, 30);
  benchmark::DoNotOptimize(ardent::forward(q, x));
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) benchmark::DoNotOptimize(ardent::forward(q, x));
  const double int8_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
                         static_cast<double>(std::max<benchmark::IterationCount>(state.iterations(), 1));
  double float_bytes = 0;
  for (const auto& p : model->parameters()) float_bytes += 4.0 * static_cast<double>(p.numel());
  const auto int8_bytes = static_cast<double>(q->parameter_bytes());
  state.counters["float_ms"] = float_ms;
  state.counters["int8_ms"] = int8_ms;
  state.counters["speedup"] = float_ms / int8_ms;
  state.counters["float_kib"] = float_bytes / 1024;
  state.counters["int8_kib"] = int8_bytes / 1024;
  state.counters["size_ratio"] = float_bytes / int8_bytes;
  state.SetLabel(fmt::format("LibTorch {}, {} threads", TORCH_VERSION, torch::get_num_threads()));
}

void Register() {
  for (const std::string engine : {"qnnpack", "onednn"}) {
    for (const int64_t batch : {1, 64}) {
      benchmark::RegisterBenchmark(("Deploy/SmallCNN/" + engine).c_str(), Int8VsFloat<SmallCNNCase>, engine)
          ->Arg(batch)
          ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark(("Deploy/MobileNetV2/" + engine).c_str(), Int8VsFloat<MobileNetV2Case>, engine)
          ->Arg(batch)
          ->Unit(benchmark::kMillisecond);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  Register();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
