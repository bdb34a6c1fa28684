// own_trainer: ardent inside a training loop you write yourself.
//
// The loop is plain LibTorch: a torch::data loader, an optimizer, a for loop. ardent adds one call
// per batch, Distiller::step, which attacks the student (PGD), runs the teacher on the clean batch,
// computes ARD's loss and updates the student. ardent::evaluate then measures the teacher and the
// student, clean and under PGD-20, on Fashion-MNIST test images.
//
//   build/examples/own_trainer [training images] [test images]      (from the repository's root)
//
// Defaults: 20,000 training images (batches of 128 drawn at random from the 60,000) and 1,000 test
// images, about two and a half minutes on two cores.
#include <ardent/ardent.hpp>

#include <fmt/core.h>

#include <cstdlib>
#include <thread>

using ardent::models::SmallCNN;

int main(int argc, char** argv) {
  const int64_t training_images = argc > 1 ? std::atoll(argv[1]) : 20000;
  const int64_t test_images = argc > 2 ? std::atoll(argv[2]) : 1000;
  torch::set_num_threads(static_cast<int>(std::thread::hardware_concurrency()));  // LibTorch starts with one
  fmt::print("LibTorch {}, {} threads\n", TORCH_VERSION, torch::get_num_threads());
  torch::manual_seed(0);

  // The robust teacher that ships with ardent: a SmallCNN of width 32, adversarially trained at
  // Linf epsilon 0.1. The student is the same network at half the width.
  SmallCNN teacher(ardent::models::SmallCNNOptions(10).width(32));
  ardent::io::load_module(teacher, "models/fashion_teacher.pt");
  SmallCNN student(ardent::models::SmallCNNOptions(10).width(16));

  // ARD (KL to the teacher's clean logits at T = 30) on PGD-10 examples within the teacher's
  // budget: steps of 0.025 within 0.1.
  ardent::Distiller<SmallCNN, SmallCNN> ard(teacher, student, ardent::attacks::PGDOptions(0.1).step_size(0.025));
  torch::optim::Adam optimizer(ard.parameters(), torch::optim::AdamOptions(1e-3));

  // Fashion-MNIST from Debian's dataset-fashion-mnist; MNIST is a torch::data dataset.
  auto train_set = ardent::data::MNIST().map(torch::data::transforms::Stack<>());
  auto loader = torch::data::make_data_loader<torch::data::samplers::RandomSampler>(std::move(train_set), 128);

  ard.train();
  int64_t seen = 0;
  for (auto& batch : *loader) {
    const ardent::StepResult result = ard.step(batch.data, batch.target, optimizer);
    seen += result.batch_size;
    if (seen % 6400 == 0 || seen >= training_images) fmt::print("{} images: loss {:.4f}\n", seen, result.loss);
    if (seen >= training_images) break;
  }

  const ardent::data::MNIST test(ardent::data::kFashionMNISTDirectory, ardent::data::MNIST::Split::Test);
  const auto x = test.images().slice(0, 0, test_images);
  const auto y = test.labels().slice(0, 0, test_images);
  auto measure = [&](const char* name, SmallCNN& model) {
    const ardent::EvalReport report = ardent::evaluate(model, x, y, {ardent::eval::pgd(0.1, 20)});
    fmt::print("{}: clean {:.1f}%, PGD-20 {:.1f}% on {} test images\n", name, 100 * report.clean_accuracy,
               100 * report.worst_case_accuracy, report.samples);
  };
  measure("teacher", teacher);
  measure("student", student);
}
