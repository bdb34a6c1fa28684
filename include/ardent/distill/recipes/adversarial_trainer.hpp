#pragma once
// Recipes for the AdversarialTrainer: its training method, with each paper's defaults.

#include "ardent/distill/training_methods/madry.hpp"
#include "ardent/distill/training_methods/trades.hpp"

namespace ardent::recipes {

/// Madry adversarial training (the AdversarialTrainer's default method).
inline training_methods::Madry madry() { return {}; }
/// TRADES with the trade-off `beta`.
inline training_methods::TRADES trades(double beta = 6.0) { return training_methods::TRADES(beta); }

}  // namespace ardent::recipes
