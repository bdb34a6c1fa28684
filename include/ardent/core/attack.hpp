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
#include "ardent/core/objectives.hpp"

#include <concepts>

namespace ardent {

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

}  // namespace ardent
