// Uses only the umbrella header: the version the package was found with, a small model, a PGD attack, and
// a check of its guarantees.
#include <ardent/ardent.hpp>

#include <cstring>
#include <iostream>

static_assert(ARDENT_VERSION >= 200, "ardent/version.hpp must come with the umbrella header");

int main() {
  if (std::strcmp(ardent::version_string, EXPECTED_ARDENT_VERSION) != 0) {
    std::cerr << "consumer: headers say version " << ardent::version_string << ", the package says "
              << EXPECTED_ARDENT_VERSION << "\n";
    return 1;
  }
  torch::manual_seed(0);
  ardent::models::SmallCNN model(ardent::models::SmallCNNOptions(10).width(4));
  const auto x = torch::rand({4, 1, 28, 28});
  const auto labels = torch::randint(10, {4}, torch::kLong);
  const ardent::attacks::PGD pgd(ardent::attacks::PGDOptions(0.1).step_size(0.02).steps(3));
  const auto x_adv = pgd.perturb(model, x, labels);
  const bool in_ball = (x_adv - x).abs().max().item<double>() <= 0.1 + 1e-6;
  const bool moved = !torch::equal(x_adv, x);
  if (!in_ball || !moved) {
    std::cerr << "consumer: PGD result is wrong (in ball: " << in_ball << ", moved: " << moved << ")\n";
    return 1;
  }
  std::cout << "consumer: ok\n";
  return 0;
}
