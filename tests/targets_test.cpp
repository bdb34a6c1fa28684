// The soft targets: Features' learned connectors.
#include "catch.hpp"
#include "tiny_nets.hpp"

#include <ardent/distill/distiller.hpp>
#include <ardent/distill/recipes/distiller.hpp>
#include <ardent/losses/mse.hpp>
#include <ardent/targets/features.hpp>

using namespace ardent;
using ardent_test::kAttack;
using ardent_test::Stages;

TEST_CASE("Features builds connectors exactly where channels differ, and trains them", "[targets][features]") {
  torch::manual_seed(0);
  Stages teacher(4, 8);
  Stages student(4, 6);  // s1 matches, s2 does not
  targets::Features features(targets::FeaturesOptions().input_shape({1, 4, 4}));
  Distiller d(teacher, student, attacks::PGD(kAttack), losses::MSE(), features, recipes::ard(1.0));
  auto& bound = d.target();
  REQUIRE(bound.pairs().size() == 2);
  CHECK(bound.connectors()->size() == 1);
  const auto connector_parameters = bound.parameters();
  CHECK(connector_parameters.size() == 3);  // 1x1 conv weight, BN weight and bias
  CHECK(d.parameters().size() == student->parameters().size() + 3);

  const auto x = torch::rand({6, 1, 4, 4});
  const auto y = torch::randint(3, {6}, torch::kLong);
  const auto before = connector_parameters[0].clone();
  torch::optim::SGD optimizer(d.parameters(), 0.1);
  d.train();
  d.step(x, y, optimizer);
  CHECK(connector_parameters[0].grad().defined());
  CHECK(connector_parameters[0].grad().abs().sum().item<double>() > 0);
  CHECK_FALSE(torch::equal(connector_parameters[0], before));

  CHECK_THROWS_WITH(
      Distiller(teacher, student, attacks::PGD(kAttack), losses::MSE(), targets::Features{}, recipes::ard(1.0)),
      ContainsSubstring("'input_shape'"));
}
