// data::ImageFolder's decoding speed, and whether a training step waits for data
// (docs/data.md, "Images in folders"; benchmarks/image_folder.sh generates the folders and runs it):
//
//   image_folder_throughput ROOT --size S [--batch B] [--workers W] [--steps N] [--pgd-steps K]
//
// Prints three lines: images/s decoded by ImageFolder::get on the calling thread alone; images/s
// of one epoch of ImageFolderBatches with W workers and nothing else to do; and, for N steps of
// ARD (MobileNetV2 x0.25 student distilled from a MobileNetV2 x0.5 teacher, PGD-K, one LibTorch
// thread) fed by the loader, the mean step time and the share of it spent waiting for a batch.
#include <ardent/ardent.hpp>
#include <ardent/data/image_batches.hpp>

#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
  CLI::App app{"ImageFolder decoding and loader throughput"};
  std::string root;
  int64_t size = 32;
  int64_t batch = 64;
  int64_t workers = 2;
  int64_t steps = 20;
  int64_t pgd_steps = 2;
  int64_t decode_limit = 5000;
  app.add_option("root", root, "An ImageFolder root (root/<class>/<image>)")->required();
  app.add_option("--size", size, "Side of the images after resize and crop")->capture_default_str();
  app.add_option("--batch", batch, "Batch size")->capture_default_str();
  app.add_option("--workers", workers, "Loader threads")->capture_default_str();
  app.add_option("--steps", steps, "Training steps timed")->capture_default_str();
  app.add_option("--pgd-steps", pgd_steps, "PGD steps of the training attack")->capture_default_str();
  app.add_option("--decode-limit", decode_limit, "Images decoded on one thread (0: all)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    torch::set_num_threads(1);
    using Clock = std::chrono::steady_clock;
    const auto seconds = [](Clock::time_point since) {
      return std::chrono::duration<double>(Clock::now() - since).count();
    };
    const ardent::data::ImageFolder folder(root, ardent::data::ImageFolderOptions().size(size));
    fmt::print("LibTorch {}, {} images in {} classes, {}x{}, {} cores\n", TORCH_VERSION, folder.size(),
               folder.classes().size(), size, size, std::thread::hardware_concurrency());

    const int64_t n = decode_limit > 0 ? std::min(decode_limit, folder.size()) : folder.size();
    auto start = Clock::now();
    for (int64_t i = 0; i < n; ++i) (void)folder.get(i);
    fmt::print("decode, calling thread alone: {} images in {:.2f} s = {:.0f} images/s\n", n, seconds(start),
               static_cast<double>(n) / seconds(start));

    ardent::data::ImageFolderBatches loader(folder, batch, 0,
                                            ardent::data::ImageFolderBatchesOptions().workers(workers));
    start = Clock::now();
    int64_t loaded = 0;
    for (auto&& b : loader) loaded += b.inputs.size(0);
    fmt::print("loader, {} workers, no training: {} images in {:.2f} s = {:.0f} images/s\n", workers, loaded,
               seconds(start), static_cast<double>(loaded) / seconds(start));

    const auto classes = static_cast<int64_t>(folder.classes().size());
    ardent::models::MobileNetV2 teacher(ardent::models::MobileNetV2Options(classes).width_multiplier(0.5));
    ardent::models::MobileNetV2 student(ardent::models::MobileNetV2Options(classes).width_multiplier(0.25));
    const double eps = 8.0 / 255;
    auto ard = ardent::make_ard(
        teacher, student, 1.0, 30.0,
        ardent::attacks::PGDOptions(eps).step_size(2.5 * eps / static_cast<double>(pgd_steps)).steps(pgd_steps));
    torch::optim::SGD optimizer(ard.parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
    ard.train();
    double waited = 0;
    int64_t done = 0;
    start = Clock::now();
    for (auto it = loader.begin(); it != loader.end() && done < steps; ++it, ++done) {
      const auto asked = Clock::now();
      const auto b = *it;
      waited += seconds(asked);
      ard.step(b.inputs, b.labels, optimizer);
    }
    const double total = seconds(start);
    fmt::print(
        "ARD steps fed by the loader ({} workers, batch {}, PGD-{}): {} steps, {:.0f} ms a step, "
        "waiting for data {:.1f} ms a step ({:.1f}% of the step)\n",
        workers, batch, pgd_steps, done, 1000 * total / static_cast<double>(done),
        1000 * waited / static_cast<double>(done), 100 * waited / total);
    return 0;
  } catch (const c10::Error& e) {
    fmt::print(stderr, "image_folder_throughput: {}\n", e.what_without_backtrace());
    return 1;
  }
}
