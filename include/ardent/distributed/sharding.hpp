#pragma once
// Splitting work across the ranks of a ProcessGroup. Training batches shard themselves
// (data::ShuffledBatches::set_shard); this header serves evaluation and per-rank randomness.
//
// Evaluation: each rank evaluates a contiguous slice of the test set and the integer counts are
// summed, so the report equals one process's whenever each image's result does not depend on the
// rest of its batch (true of clean accuracy and of attacks without a random start; random starts
// draw from each rank's own generator).

#include "ardent/distributed/process_group.hpp"
#include "ardent/eval/report.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <mutex>
#include <utility>

namespace ardent::distributed {

/// [first, first + count): the `rank`-th of `ranks` contiguous slices of n items, sizes differing
/// by at most one.
inline std::pair<int64_t, int64_t> shard_range(int64_t n, int64_t rank, int64_t ranks) {
  if (ranks < 1 || rank < 0 || rank >= ranks) {
    fail_argument("ardent::distributed::shard_range", "rank",
                  fmt::format("is {} of {}, expected 0 <= rank < ranks", rank, ranks));
  }
  const int64_t base = n / ranks;
  const int64_t extra = n % ranks;
  return {rank * base + std::min(rank, extra), base + (rank < extra ? 1 : 0)};
}

/// This rank's slice (along dimension 0) of `tensor`.
inline torch::Tensor shard(const torch::Tensor& tensor, const ProcessGroup& group) {
  const auto [first, count] = shard_range(tensor.size(0), group.rank(), group.size());
  return tensor.narrow(0, first, count);
}

/// Sums integer counts (correct predictions, images) over the ranks, exactly.
inline std::vector<int64_t> sum_counts(const ProcessGroup& group, std::vector<int64_t> counts) {
  if (group.size() == 1 || counts.empty()) return counts;
  auto t = torch::tensor(counts, torch::kLong);
  group.all_reduce_sum(t, "sum_counts");
  return {t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel()};
}

/// The report of the whole test set from each rank's report of its shard: the counts behind every
/// accuracy are summed (exactly), the seconds are the slowest rank's.
inline EvalReport reduce_report(const ProcessGroup& group, EvalReport report) {
  if (group.size() == 1) return report;
  const auto n = static_cast<double>(report.samples);
  auto count = [n](double accuracy) { return static_cast<int64_t>(std::llround(accuracy * n)); };
  std::vector<int64_t> counts{report.samples, count(report.clean_accuracy), count(report.worst_case_accuracy)};
  for (const auto& a : report.attacks) {
    counts.insert(counts.end(), {count(a.robust_accuracy.value_or(0.0)), count(a.worst_case_accuracy), a.attacked});
  }
  const auto all = sum_counts(group, counts);
  std::vector<double> seconds{report.seconds};
  for (const auto& a : report.attacks) seconds.push_back(a.seconds);
  auto slowest = torch::tensor(seconds, torch::kDouble);
  if (group.size() > 1) group.wait(group.all_reduce_async(slowest, c10d::ReduceOp::MAX), "reduce_report");
  const auto total = static_cast<double>(all[0]);
  report.samples = all[0];
  report.clean_accuracy = static_cast<double>(all[1]) / total;
  report.worst_case_accuracy = static_cast<double>(all[2]) / total;
  report.seconds = slowest[0].item<double>();
  for (std::size_t k = 0; k < report.attacks.size(); ++k) {
    auto& a = report.attacks[k];
    if (a.robust_accuracy) a.robust_accuracy = static_cast<double>(all[3 + 3 * k]) / total;
    a.worst_case_accuracy = static_cast<double>(all[4 + 3 * k]) / total;
    a.attacked = all[5 + 3 * k];
    a.seconds = slowest[static_cast<int64_t>(k) + 1].item<double>();
  }
  return report;
}

/// Seeds the default CPU generator (attack starts, dropout) from (seed, epoch, rank): distinct
/// streams per rank that a resumed run reproduces from the epoch alone.
inline void reseed(uint64_t seed, int64_t epoch, int64_t rank) {
  // splitmix64 of the three, so nearby triples give unrelated seeds.
  auto mix = [](uint64_t z) {
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27U)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31U);
  };
  const uint64_t value = mix(mix(mix(seed) ^ static_cast<uint64_t>(epoch)) ^ static_cast<uint64_t>(rank));
  auto generator = at::detail::getDefaultCPUGenerator();
  const std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_current_seed(value);
}

}  // namespace ardent::distributed
