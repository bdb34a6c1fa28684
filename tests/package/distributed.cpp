// The distributed component, found with find_package(ardent COMPONENTS distributed): its header
// compiles against the installed package and Gloo's, and its one-process world works.
#include <ardent/ardent.hpp>
#include <ardent/distributed.hpp>

#include <iostream>

int main() {
  const ardent::distributed::ProcessGroup alone;
  const ardent::distributed::DataParallelLoop parallel(alone);
  const ardent::train::Parallelism& as_loop_sees_it = parallel;
  const auto epoch = as_loop_sees_it.over_ranks({0, 2, 8, 0.25});
  if (as_loop_sees_it.size() != 1 || epoch.samples != 8 || epoch.mean_loss != 0.25) {
    std::cerr << "consumer_distributed: the one-process world changed the epoch\n";
    return 1;
  }
  std::cout << "consumer_distributed: ok\n";
  return 0;
}
