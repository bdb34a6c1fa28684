// fit_rslad: the library end to end, with no loop of your own. A recipe's factory builds the
// distiller (here RSLAD), Distiller::fit trains it over ardent's shuffled batches with a callback
// that prints each epoch, and ardent::evaluate prints a table: clean accuracy, each attack's robust
// accuracy and the worst case over them, as the AutoAttack protocol computes it.
//
//   build/examples/fit_rslad [training images] [test images]      (from the repository's root)
//
// Defaults: two epochs over the first 10,000 training images and 1,000 test images, about three minutes
// on two cores.
#include <ardent/ardent.hpp>

#include <fmt/core.h>

#include <cstdlib>
#include <thread>

using ardent::models::SmallCNN;

// A callback: fit calls whichever of on_epoch_begin, on_batch_end and on_epoch_end it has
// (returning true would stop training).
struct PrintEpochs {
  template <typename Trainer>
  void on_epoch_end(Trainer& /*trainer*/, int64_t epoch, const ardent::train::EpochSummary& summary) {
    fmt::print("epoch {}: mean loss {:.4f} over {} images\n", epoch + 1, summary.mean_loss, summary.samples);
  }
};

int main(int argc, char** argv) {
  const int64_t training_images = argc > 1 ? std::atoll(argv[1]) : 10000;
  const int64_t test_images = argc > 2 ? std::atoll(argv[2]) : 1000;
  torch::set_num_threads(static_cast<int>(std::thread::hardware_concurrency()));  // LibTorch starts with one
  fmt::print("LibTorch {}, {} threads\n", TORCH_VERSION, torch::get_num_threads());
  torch::manual_seed(0);

  // The shipped robust teacher (width 32, trained at Linf epsilon 0.1) and a student of width 16.
  SmallCNN teacher(ardent::models::SmallCNNOptions(10).width(32));
  ardent::io::load_module(teacher, "models/fashion_teacher.pt");
  SmallCNN student(ardent::models::SmallCNNOptions(10).width(16));

  // RSLAD: PGD-10 maximising KL(T(x) || S(x')), loss 5/6 KL(T(x) || S(x')) + 1/6 KL(T(x) || S(x))
  // at T = 1, with the teacher's budget (steps of 0.025 within 0.1).
  auto rslad = ardent::make_rslad(teacher, student, ardent::attacks::PGDOptions(0.1).step_size(0.025));
  torch::optim::Adam optimizer(rslad.parameters(), torch::optim::AdamOptions(1e-3));

  const ardent::data::MNIST train(ardent::data::kFashionMNISTDirectory, ardent::data::MNIST::Split::Train);
  ardent::data::ShuffledBatches batches(train.images().slice(0, 0, training_images),
                                        train.labels().slice(0, 0, training_images), /*batch_size=*/128, /*seed=*/0);
  rslad.fit(batches, optimizer, /*epochs=*/2, PrintEpochs{});

  // PGD-20 and APGD-CE: the worst case counts an image as robust only if both attacks fail on it.
  const ardent::data::MNIST test(ardent::data::kFashionMNISTDirectory, ardent::data::MNIST::Split::Test);
  const auto report = ardent::evaluate(student, test.images().slice(0, 0, test_images),
                                       test.labels().slice(0, 0, test_images),
                                       {ardent::eval::pgd(0.1, 20), ardent::eval::apgd_ce(0.1, 50)});
  fmt::print("\nRSLAD student (width 16), Linf epsilon 0.1: {}", report);
  // torch::save(student, "student.pt") keeps it; build/tools/evaluate --checkpoint student.pt --width 16 reads it.
}
