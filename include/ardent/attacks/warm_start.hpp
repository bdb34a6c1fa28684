#pragma once
// WarmStart<Inner>: an attack that starts each example from its perturbation of the previous epoch
// (attacks::PerturbationMemory; ATTA, Zheng et al., CVPR 2020) and stores the new one:
//   x'_0 = x + delta_i (delta_i stored) or Inner's own start,   x' = Inner run from x'_0,   delta_i <- x' - x.
// Inner is any attack with start(x) and perturb_from(model, x, from, goal): PGD (with fewer steps
// than cold, e.g. 2 or 3), FGSM, NFGSM.
//
// The trainer tells it which examples a batch holds: Distiller::step and AdversarialTrainer::step
// take the batch's indices (ardent::train::fit and train::train_loop pass those of data::ShuffledBatches),
// and call for_examples(indices) before the attack. A perturb without them is refused.

#include "ardent/attacks/perturbation_memory.hpp"
#include "ardent/core/attack.hpp"
#include "ardent/core/check.hpp"

namespace ardent::attacks {

/// An attack that can start from a given point: what WarmStart needs of its inner attack.
template <typename A>
concept StartableAttack = requires(const A& attack, const torch::Tensor& x) {
  { attack.start(x) } -> std::convertible_to<torch::Tensor>;
};

template <typename Inner>
class WarmStart {
  static_assert(StartableAttack<Inner>,
                "ardent::attacks::WarmStart: the inner attack has no member start(x) and perturb_from(model, x, "
                "from, goal); PGD, FGSM and NFGSM have them");

 public:
  WarmStart(Inner inner, PerturbationMemory memory) : inner_(std::move(inner)), memory_(std::move(memory)) {}

  const Inner& inner() const { return inner_; }
  const auto& options() const { return inner_.options(); }
  PerturbationMemory& memory() { return memory_; }
  const PerturbationMemory& memory() const { return memory_; }

  /// The data-set indices of the batch the next perturb attacks (consumed by that call).
  void for_examples(torch::Tensor indices) const { indices_ = std::move(indices); }

  template <Model M, AttackGoal G>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const G& goal) const {
    TORCH_CHECK(indices_.defined(),
                "ardent::attacks::WarmStart: perturb was called without the batch's example indices; train "
                "with ardent::train::fit or train::train_loop over data::ShuffledBatches, or pass the indices to "
                "step(x, labels, optimizer, indices)");
    const auto indices = std::move(indices_);
    indices_ = torch::Tensor();
    // The inner attack's start runs before its own checks: check x first.
    if constexpr (HasPixelBox<Inner>) {
      check_input_batch("ardent::attacks::WarmStart", "x", x, inner_.options().clip_min(), inner_.options().clip_max());
    }
    const auto from = memory_->start(indices, x, inner_.start(x));
    auto x_adv = inner_.perturb_from(model, x, from, goal);
    memory_->remember(indices, x, x_adv);
    return x_adv;
  }

 private:
  Inner inner_;
  mutable PerturbationMemory memory_;  // perturb (const, as every attack) stores into it
  mutable torch::Tensor indices_;
};

template <typename Json, typename Inner>
void to_json(Json& j, const WarmStart<Inner>& attack) {
  j = Json(attack.inner());
  j["warm_start"] = true;
  j["memory_half"] = attack.memory()->options().half();
}

}  // namespace ardent::attacks
