#pragma once
// Training methods: what an AdversarialTrainer minimises, a policy type (its last template
// parameter), as the Distiller's adversary is, so that a method the attack cannot serve
// fails to compile and each method is its own trainer type. The built-ins are in namespace
// ardent::training_methods (ardent/distill/training_methods/):
//
//   Madry    Madry et al., ICLR 2018:      min E[ CE(f(x'), y) ],  x' = argmax_{B(x, eps)} CE(f(x'), y)
//   TRADES   Zhang et al., ICML 2019:      min E[ CE(f(x), y) + beta * KL(f(x) || f(x')) ],
//                                          x' = argmax_{B(x, eps)} KL(f(x) || f(x'))
//
// (for TRADES, build the attack with PGDOptions(eps).random_start(false).start_noise(0.001), as
// make_trades_trainer does, to start at x + 0.001 N(0, 1)). A method is a type with the member
//
//   template <typename Attack, ardent::Model M>
//   torch::Tensor loss(Attack& attack, M& model, const torch::Tensor& x, const torch::Tensor& labels,
//                      ardent::StepResult& result) const;
//
// constrained on what it asks of the attack (ardent::TrainingMethodFor). It runs with the model in
// train mode; x and the labels are already checked; it fills the parts of `result` it computes.

#include "ardent/core/model.hpp"
#include "ardent/distill/options.hpp"

#include <concepts>

namespace ardent {

/// `Method` can train a model of type `M` with `Attack`.
template <typename Method, typename Attack, typename M>
concept TrainingMethodFor = requires(const Method& method, Attack& attack, M& model, const torch::Tensor& x,
                                     StepResult& result) {
  { method.loss(attack, model, x, x, result) } -> std::same_as<torch::Tensor>;
};

}  // namespace ardent
