// custom_policy: extending ardent without touching it. This program defines its own attack,
// R+FGSM (Tramèr et al., "Ensemble Adversarial Training", ICLR 2018: a random sign step of size
// a, then one gradient sign step of size eps - a), written with the public attack kit
// (ardent/attacks/kit.hpp) so that it has every guarantee of the built-in attacks, and its own
// attack objective for the Distiller (a recipe: the student attacked away from the teacher's
// clean prediction instead of the labels). Both plug into the generic Distiller with the
// built-in KL loss and Logits soft target.
//
//   custom_policy --teacher models/fashion_teacher.pt --limit 6000 [--objective teacher]
//
// `--help` lists every option.
#include "common.hpp"

#include <CLI/CLI.hpp>

namespace {

namespace kit = ardent::attacks;

/// R+FGSM: x0 = clamp(x + a sign(N(0, 1))), x' = clamp_{x, eps}(x0 + (eps - a) sign(grad L(x0))).
/// A policy holds hyperparameters only; everything else lives inside perturb(). Taking any
/// ardent::AttackGoal (labels, Targeted{targets} or an objective) makes it usable with every
/// recipe, RSLAD's and AdaAD's KL objectives included.
class RandomFGSM {
 public:
  RandomFGSM(double epsilon, double random_step) : epsilon_(epsilon), random_step_(random_step) {
    ardent::check_non_negative("RandomFGSM", "epsilon", epsilon);
    if (!(random_step >= 0 && random_step <= epsilon)) {
      ardent::fail_argument("RandomFGSM", "random_step",
                            fmt::format("is {}, expected a value in [0, epsilon]", random_step));
    }
  }

  template <ardent::Model M, ardent::AttackGoal G>
  torch::Tensor perturb(M& model, const torch::Tensor& x, const G& goal) const {
    kit::check_call("RandomFGSM", model, x, goal, 0.0, 1.0);  // x, device, dtype, labels: once per call
    const kit::AttackScope scope(model);                      // autograd on, parameters frozen, eval mode; all restored
    const auto objective = kit::to_objective(goal);           // labels copied out of InferenceMode
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

static_assert(ardent::Attack<RandomFGSM>, "RandomFGSM is an ardent::Attack");
static_assert(ardent::TargetedAttack<RandomFGSM, ardent::models::SmallCNN>);

/// An attack objective (a recipe's type): x' maximises CE(S(x'), argmax T(x)), the student pushed
/// away from the teacher's clean prediction rather than from the labels.
struct AgainstTeacherPrediction {
  static constexpr bool uses_clean_teacher_logits = true;  // the Distiller computes T(x) for it

  template <typename A, ardent::Model T, ardent::Model S>
  requires ardent::HasPerturb<A, S> torch::Tensor perturb(A& attack, T& /*teacher*/, S& student,
                                                          const ardent::AdversaryInputs& in)
  const { return attack.perturb(student, in.x, in.teacher_logits.argmax(1)); }
};

/// The recipe: ARD's weights (alpha = 1) with the objective above.
ardent::Recipe<AgainstTeacherPrediction> against_teacher_prediction() {
  return ardent::Recipe<AgainstTeacherPrediction>(ardent::recipes::ard(1.0));
}

template <typename Recipe>
void distill(const examples::Subset& train, const examples::Subset& test, ardent::models::SmallCNN teacher,
             ardent::models::SmallCNN student, double epsilon, int64_t epochs, const Recipe& recipe) {
  // The user's attack, ardent's loss and soft target, the recipe's objective (deduced).
  ardent::Distiller distiller(teacher, student, RandomFGSM(epsilon, epsilon / 2),
                              ardent::losses::KL(ardent::losses::KLOptions().temperature(30.0)),
                              ardent::targets::Logits{}, recipe);
  torch::optim::Adam optimizer(distiller.parameters(), torch::optim::AdamOptions(1e-3));
  ardent::data::ShuffledBatches batches(train.images, train.labels, 128, 0);
  ardent::train::LoopOptions loop;
  loop.epochs = epochs;
  loop.progress_every = 20;
  // Opt-in: one process, or data-parallel across those scripts/launch.sh or torchrun started.
  const ardent::distributed::DataParallelLoop parallel(ardent::distributed::world());
  loop.parallel = &parallel;
  ardent::train::train_loop(distiller, batches, optimizer, {}, loop);

  fmt::print("student distilled with R+FGSM on {} images: clean {:.2f}%, PGD-20 {:.2f}% on {} test images\n",
             train.images.size(0), 100 * examples::accuracy_under(student, ardent::attacks::None(), test),
             100 * examples::accuracy_under(student, examples::pgd(epsilon, 20), test), test.images.size(0));
}

}  // namespace

int main(int argc, char** argv) {
  std::string teacher_path = "models/fashion_teacher.pt";
  std::string data_dir = ardent::data::kFashionMNISTDirectory.string();
  int64_t teacher_width = 32;
  int64_t width = 16;
  double epsilon = 0.1;
  int64_t epochs = 1;
  int64_t limit = 6000;
  int64_t eval_limit = 1000;
  int threads = examples::default_threads();
  std::string objective = "labels";
  CLI::App app{"A user-written attack (R+FGSM) and attack objective plugged into ardent's Distiller"};
  app.add_option("--teacher", teacher_path, "Robust SmallCNN teacher saved by train_teacher")
      ->check(CLI::ExistingFile)
      ->capture_default_str();
  app.add_option("--teacher-width", teacher_width, "The teacher's SmallCNN width")->capture_default_str();
  app.add_option("--width", width, "The student's SmallCNN width")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--data", data_dir, "Directory with the Fashion-MNIST IDX files")
      ->check(CLI::ExistingDirectory)
      ->capture_default_str();
  app.add_option("--epsilon", epsilon, "Linf radius")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--epochs", epochs, "Training epochs")->check(CLI::Range(1, 1000))->capture_default_str();
  app.add_option("--limit", limit, "Training images (0: all)")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--eval-limit", eval_limit, "Test images (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--objective", objective,
                 "What the attack pushes the student away from: the labels (ARD) or "
                 "the teacher's clean prediction (the user-written recipe)")
      ->check(CLI::IsMember({"labels", "teacher"}))
      ->capture_default_str();
  app.add_option("--threads", threads, "LibTorch threads (default: all cores)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    examples::set_threads(threads);
    torch::manual_seed(0);
    const auto train = examples::take(ardent::data::MNIST(data_dir, ardent::data::MNIST::Split::Train), limit);
    const auto test = examples::take(ardent::data::MNIST(data_dir, ardent::data::MNIST::Split::Test), eval_limit);
    ardent::models::SmallCNN teacher(ardent::models::SmallCNNOptions(10).width(teacher_width));
    ardent::io::load_module(teacher, teacher_path);
    ardent::models::SmallCNN student(ardent::models::SmallCNNOptions(10).width(width));

    if (objective == "teacher") {
      distill(train, test, teacher, student, epsilon, epochs, against_teacher_prediction());
    } else {
      distill(train, test, teacher, student, epsilon, epochs, ardent::recipes::ard(1.0));
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "custom_policy: {}\n", examples::error_message(e));
    return 1;
  }
  return 0;
}
