#pragma once
// Pieces shared by the example programs: Fashion-MNIST loading with optional subsets, and the
// clean / PGD accuracy used to follow training.

#include <ardent/ardent.hpp>

#include <fmt/format.h>

#include <thread>

namespace examples {

/// Images and labels of a data set, or of its first samples (not to be confused with the data
/// sets' own Split enums, Train and Test).
struct Subset {
  torch::Tensor images;
  torch::Tensor labels;
};

/// The first `limit` samples (0: all).
inline Subset take(const ardent::data::MNIST& set, int64_t limit) {
  const int64_t n = limit > 0 ? std::min<int64_t>(limit, set.images().size(0)) : set.images().size(0);
  return {set.images().slice(0, 0, n), set.labels().slice(0, 0, n)};
}

inline int default_threads() { return static_cast<int>(std::max(1U, std::thread::hardware_concurrency())); }

/// The thread count, and glibc's malloc keeping freed memory for the attacks' fixed-shape passes
/// (an explicit opt-in of the program: ardent itself never changes the allocator).
inline void set_threads(int threads) {
  torch::set_num_threads(threads);
  const bool kept = ardent::keep_freed_memory();
  fmt::print("LibTorch {}, {} threads{}\n", TORCH_VERSION, torch::get_num_threads(),
             kept ? ", freed memory kept for reuse" : "");
}

/// Accuracy on (x, y) after `attack`, in batches; the model is left in the mode it had.
template <ardent::Model M, typename A>
double accuracy_under(M& model, const A& attack, const Subset& data, int64_t batch_size = 500) {
  const ardent::ModeGuard eval(model);
  int64_t correct = 0;
  for (int64_t first = 0; first < data.images.size(0); first += batch_size) {
    const auto x = data.images.slice(0, first, first + batch_size);
    const auto y = data.labels.slice(0, first, first + batch_size);
    const auto x_adv = attack.perturb(model, x, y);
    torch::NoGradGuard no_grad;
    correct += ardent::forward(model, x_adv).argmax(1).eq(y).sum().template item<int64_t>();
  }
  return static_cast<double>(correct) / static_cast<double>(data.images.size(0));
}

/// PGD with Madry et al.'s step size, 2.5 eps / steps.
inline ardent::attacks::PGD pgd(double epsilon, int64_t steps) {
  return ardent::attacks::PGD(
      ardent::attacks::PGDOptions(epsilon).step_size(ardent::attacks::madry_step_size(epsilon, steps)).steps(steps));
}

}  // namespace examples
