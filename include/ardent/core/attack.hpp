#pragma once
// The ardent::Attack concept. An attack is a policy object that holds hyperparameters only and
// turns clean inputs into adversarial ones:
//
//   torch::Tensor x_adv = attack.perturb(model, x, labels);
//
// A type satisfies ardent::Attack<A> when that call compiles for a TorchScript model (any
// ardent::Model works for the built-ins); `ardent::Attack<A, M>` checks another model type.
// Built-in gradient attacks also accept `ardent::Targeted{targets}` and any ardent::Objective in
// place of the labels.

#include "ardent/core/model.hpp"
#include "ardent/core/objective.hpp"

#include <concepts>
#include <cstdint>
#include <optional>
#include <utility>

namespace ardent {

/// Marks labels as targets: `attack.perturb(model, x, ardent::Targeted{targets})`.
struct Targeted {
  torch::Tensor targets;
};

/// The norm whose ball bounds the perturbation.
enum class Norm { Linf, L2 };

/// Has `perturb(model, x, labels) -> torch::Tensor`.
template <typename A, typename M>
concept HasPerturb = requires(A& attack, M& model, const torch::Tensor& x, const torch::Tensor& labels) {
  { attack.perturb(model, x, labels) } -> std::same_as<torch::Tensor>;
};

template <typename A, typename M = torch::jit::Module>
concept Attack = Model<M> && HasPerturb<A, M>;

/// What a built-in attack accepts as its third argument: labels, Targeted{targets} or an Objective.
template <typename T>
concept AttackGoal = std::same_as<std::remove_cvref_t<T>, torch::Tensor> ||
    std::same_as<std::remove_cvref_t<T>, Targeted> || Objective<T>;

/// Labels or ardent::Targeted{targets}: what the attacks that minimise a margin of the classes
/// (CW, CW-Linf) accept in place of an arbitrary objective.
template <typename T>
concept LabelsOrTargets = std::same_as<std::remove_cvref_t<T>, torch::Tensor> ||
    std::same_as<std::remove_cvref_t<T>, Targeted>;

/// An attack that can aim at chosen classes.
template <typename A, typename M = torch::jit::Module>
concept TargetedAttack = Attack<A, M> && requires(A& attack, M& model, const torch::Tensor& x, const Targeted& t) {
  { attack.perturb(model, x, t) } -> std::same_as<torch::Tensor>;
};

/// Has a pixel box: `attack.options().clip_min()` and `clip_max()` (every built-in).
template <typename A>
concept HasPixelBox = requires(const A& attack) {
  { attack.options().clip_min() } -> std::convertible_to<double>;
  { attack.options().clip_max() } -> std::convertible_to<double>;
};

/// Declares `static constexpr bool gradient_free = true`: it never reads a gradient (Square), so
/// it can break points where gradients mislead (gradient masking).
template <typename A>
concept GradientFreeAttack = requires {
  { A::gradient_free } -> std::convertible_to<bool>;
}
&&static_cast<bool>(A::gradient_free);

/// Declares `static constexpr bool randomised = true`: its result depends on random draws beyond
/// the caller's seed (random search), so two runs may differ.
template <typename A>
concept RandomisedAttack = requires {
  { A::randomised } -> std::convertible_to<bool>;
}
&&static_cast<bool>(A::randomised);

/// Tries target classes of its own choosing: `attack.target_class_count()` returns how many
/// (0 when its options make it untargeted), as APGD-T and FAB-T do.
template <typename A>
concept TriesTargetClasses = requires(const A& attack) {
  { attack.target_class_count() } -> std::convertible_to<int64_t>;
};

/// Needs a least number of classes: `attack.classes_needed()` (APGD's DLR needs 3).
template <typename A>
concept NeedsClasses = requires(const A& attack) {
  { attack.classes_needed() } -> std::convertible_to<int64_t>;
};

/// What an evaluation needs to know of an attack, read from its type by the concepts above
/// (never from its report): ardent::evaluate checks inputs against the pixel box, runs the
/// gradient-masking diagnosis over the gradient-free attacks and checks the class count.
struct AttackCapabilities {
  bool gradient_free = false;
  bool randomised = false;
  /// Target classes the attack tries (0: untargeted).
  int64_t target_classes = 0;
  /// Least class count the attack's loss needs (0: any).
  int64_t classes_needed = 0;
  /// [clip_min, clip_max], when the attack has one.
  std::optional<std::pair<double, double>> pixel_box;
};

/// The capabilities of `attack`: its own `capabilities()` where it has one (a type-erased
/// attack), else what the concepts detect.
template <typename A>
AttackCapabilities capabilities_of(const A& attack) {
  if constexpr (requires {
                  { attack.capabilities() } -> std::convertible_to<AttackCapabilities>;
                }) {
    return attack.capabilities();
  } else {
    AttackCapabilities c;
    c.gradient_free = GradientFreeAttack<A>;
    c.randomised = RandomisedAttack<A>;
    if constexpr (TriesTargetClasses<A>) c.target_classes = attack.target_class_count();
    if constexpr (NeedsClasses<A>) c.classes_needed = attack.classes_needed();
    if constexpr (HasPixelBox<A>)
      c.pixel_box = std::pair<double, double>(attack.options().clip_min(), attack.options().clip_max());
    return c;
  }
}

namespace detail {

/// Tells an attack that keeps per-example state (attacks::WarmStart) which data-set examples the next
/// batch holds; nothing for an attack without for_examples, or without indices.
template <typename A>
void tell_examples(A& attack, const torch::Tensor& indices) {
  if constexpr (requires { attack.for_examples(indices); }) {
    if (indices.defined()) attack.for_examples(indices);
  }
}

}  // namespace detail

}  // namespace ardent
