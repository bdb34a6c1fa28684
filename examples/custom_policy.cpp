// custom_policy: your own attack in ardent's Distiller, without touching the library.
//
// RandomFGSM is R+FGSM (Tramer et al., "Ensemble Adversarial Training", ICLR 2018): a random sign
// step of size a, then one gradient sign step of size eps - a. Written with the public attack kit
// (<ardent/attacks/kit.hpp>), it keeps every guarantee of the built-in attacks: gradients with
// respect to the input only, the model's modes restored, the result in the epsilon ball and in
// [0, 1]. The Distiller takes it in place of PGD, with ardent's KL loss, soft target and ARD recipe.
//
//   build/examples/custom_policy [training images] [test images]      (from the repository's root)
//
// Defaults: one epoch over the first 20,000 training images and 1,000 test images, about a minute
// on two cores. The student trains against a one-gradient attack; PGD-20 measures what robustness it got.
#include <ardent/ardent.hpp>

#include <fmt/core.h>

#include <cstdlib>
#include <thread>

namespace kit = ardent::attacks;
using ardent::models::SmallCNN;

// An attack holds its hyperparameters only; everything a call needs lives inside perturb().
class RandomFGSM {
 public:
  RandomFGSM(double epsilon, double random_step) : epsilon_(epsilon), random_step_(random_step) {
    TORCH_CHECK(random_step >= 0 && random_step <= epsilon, "RandomFGSM: random_step is ", random_step,
                ", expected a value in [0, epsilon]");
  }

  // Any goal: labels, ardent::Targeted{targets} or an objective, so every recipe can use it.
  template <ardent::Model M, ardent::AttackGoal G>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const G& goal) const {
    kit::check_call("RandomFGSM", model, x, goal, 0.0, 1.0);  // shapes, dtypes, devices, labels
    const kit::AttackScope scope(model);                      // eval mode, parameters frozen; restored after
    const auto objective = kit::to_objective(goal);
    const auto clean = kit::attack_copy(x);
    const auto start = (clean + random_step_ * torch::randn_like(clean).sign()).clamp(0.0, 1.0);
    const auto gradient = kit::loss_and_gradient(model, start, objective).gradient;
    const auto stepped = start + (epsilon_ - random_step_) * gradient.sign();
    return kit::project(ardent::Norm::Linf, stepped, clean, epsilon_, 0.0, 1.0).detach();
  }

 private:
  double epsilon_;
  double random_step_;
};

// The concept says what is missing, by name, if a member is wrong (docs/attacks.md).
static_assert(ardent::Attack<RandomFGSM>);

int main(int argc, char** argv) {
  const int64_t training_images = argc > 1 ? std::atoll(argv[1]) : 20000;
  const int64_t test_images = argc > 2 ? std::atoll(argv[2]) : 1000;
  torch::set_num_threads(static_cast<int>(std::thread::hardware_concurrency()));  // LibTorch starts with one
  fmt::print("LibTorch {}, {} threads\n", TORCH_VERSION, torch::get_num_threads());
  torch::manual_seed(0);

  SmallCNN teacher(ardent::models::SmallCNNOptions(10).width(32));  // shipped, robust at Linf epsilon 0.1
  ardent::io::load_module(teacher, "models/fashion_teacher.pt");
  SmallCNN student(ardent::models::SmallCNNOptions(10).width(16));

  // The user's attack, ardent's loss and soft target, ARD's recipe (alpha 1).
  ardent::Distiller ard(teacher, student, RandomFGSM(/*epsilon=*/0.1, /*random_step=*/0.05),
                        ardent::losses::KL(ardent::losses::KLOptions().temperature(30.0)), ardent::targets::Logits{},
                        ardent::recipes::ard(1.0));
  torch::optim::Adam optimizer(ard.parameters(), torch::optim::AdamOptions(1e-3));
  const ardent::data::MNIST train(ardent::data::kFashionMNISTDirectory, ardent::data::MNIST::Split::Train);
  ardent::data::ShuffledBatches batches(train.images().slice(0, 0, training_images),
                                        train.labels().slice(0, 0, training_images), /*batch_size=*/128, /*seed=*/0);
  ard.fit(batches, optimizer, /*epochs=*/1);

  const ardent::data::MNIST test(ardent::data::kFashionMNISTDirectory, ardent::data::MNIST::Split::Test);
  const auto report = ardent::evaluate(student, test.images().slice(0, 0, test_images),
                                       test.labels().slice(0, 0, test_images), {ardent::eval::pgd(0.1, 20)});
  fmt::print("student distilled with R+FGSM: clean {:.1f}%, PGD-20 {:.1f}% on {} test images\n",
             100 * report.clean_accuracy, 100 * report.worst_case_accuracy, report.samples);
}
