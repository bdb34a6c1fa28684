// The training run of the kill-and-resume test (tests/reliability_test.cpp): SmallCNN width 2,
// Madry's PGD-2 adversarial training on 256 seeded synthetic images, 4 epochs, a checkpoint and a
// metrics row per epoch, always with resume. Writes <dir>/final.pt (a state dict) when done.
#include <ardent/data/batches.hpp>
#include <ardent/distill/factories.hpp>
#include <ardent/io/state_dict.hpp>
#include <ardent/models/small_cnn.hpp>
#include <ardent/train/loop.hpp>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::filesystem::path dir = argv[1];
  torch::set_num_threads(1);
  torch::manual_seed(0);
  const auto x = torch::rand({256, 1, 28, 28});
  const auto y = torch::randint(10, {256}, torch::kLong);
  ardent::models::SmallCNN model(ardent::models::SmallCNNOptions(10).width(2));
  auto trainer = ardent::make_madry_trainer(model, ardent::attacks::PGDOptions(0.1).step_size(0.05).steps(2));
  torch::optim::Adam optimizer(trainer.parameters(), torch::optim::AdamOptions(0.01));
  ardent::data::ShuffledBatches batches(x, y, 32, /*seed=*/7);
  ardent::train::LoopOptions options;
  options.epochs = 4;
  options.checkpoint = dir / "checkpoint.pt";
  options.resume = true;
  options.metrics_csv = dir / "metrics.csv";
  options.progress_every = 0;
  options.run_options = {{"width", "2"}, {"epochs", "4"}};
  options.evaluation_columns = {"mean_weight"};
  options.evaluate = [&model](int64_t) {
    return std::map<std::string, double>{{"mean_weight", model->named_parameters()["fc.weight"].mean().item<double>()}};
  };
  ardent::train::train_loop(trainer, batches, optimizer, {{"student", model.ptr()}}, options);
  ardent::io::save_state_dict(model, dir / "final.pt");
  return 0;
}
