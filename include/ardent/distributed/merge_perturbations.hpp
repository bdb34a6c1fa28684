#pragma once
// Keeps the ranks' PerturbationMemory equal in a data-parallel run. Each rank attacks a disjoint
// shard of every epoch, so each stores the perturbations of its own examples; merged after each
// epoch (an all-reduce of each rank's new perturbations, zero elsewhere, and of the flags), every
// rank holds every example's latest perturbation, whichever rank attacks it next, and rank 0's
// checkpoint holds them all.

#include "ardent/attacks/perturbation_memory.hpp"
#include "ardent/distributed/process_group.hpp"

namespace ardent::distributed {

inline void merge_perturbations(const ProcessGroup& group, attacks::PerturbationMemory& memory) {
  if (group.size() <= 1) {
    memory->clear_touched();
    return;
  }
  torch::NoGradGuard no_grad;
  auto buffers = memory->named_buffers();
  auto& perturbations = buffers["perturbations"];
  auto& stored = buffers["stored"];
  const auto touched = memory->touched();
  std::vector<int64_t> shape(static_cast<std::size_t>(perturbations.dim()), 1);
  shape[0] = perturbations.size(0);
  // One rank touches an example per epoch (disjoint shards): the sum is that rank's value, exactly.
  auto contribution = torch::where(touched.reshape(shape), perturbations.to(torch::kFloat), torch::zeros({}));
  auto count = touched.to(torch::kFloat);
  group.all_reduce_sum(contribution, "merging the ranks' perturbation memories");
  group.all_reduce_sum(count, "merging the ranks' perturbation memories");
  const auto merged = count.gt(0);
  perturbations.copy_(torch::where(merged.reshape(shape), contribution.to(perturbations.scalar_type()), perturbations));
  stored.logical_or_(merged);
  memory->clear_touched();
}

/// A train_loop callback that merges the memory after every epoch (before the checkpoint).
struct MergePerturbations {
  const ProcessGroup& group;
  attacks::PerturbationMemory memory;

  template <typename Trainer, typename Summary>
  bool on_epoch_end(Trainer& /*trainer*/, int64_t /*epoch*/, const Summary& /*summary*/) {
    merge_perturbations(group, memory);
    return false;
  }
};

}  // namespace ardent::distributed
