// deploy: a Fashion-MNIST SmallCNN student to int8, ONNX, and the robustness that survives it.
//
//   deploy --student runs/ard/student.pt --width 16 --out runs/deploy
//
// Writes <out>/student.int8.pt (ardent::deploy::load_int8), <out>/student.onnx (float),
// <out>/student.int8.onnx (QDQ), <out>/report.json and what ONNX Runtime's check of the exports
// needs (manifest.json, the test images and ardent's logits for them), and prints a table: size on disk, clean
// accuracy, robust accuracy of the float and the int8 model side by side (the float model under
// white-box APGD-CE, APGD-T and Square; the int8 model under eval::deployed: APGD-CE and APGD-T
// transferred from its float twin, Square on the int8 model), the agreement of the int8 model with
// its float twin, and batch-1 / batch-64 latency per engine. See docs/deploy.md.
//
// With --qat-teacher, it also distils a quantization-aware student of the same width from that teacher
// with ARD (deploy::quantization_aware as the Distiller's student; the budget of distill's defaults:
// Adam 1e-3, batch 128, PGD-10 of 2.5 eps / 10 within eps, KL at T = 30, alpha 1), quantizes it with its
// learned ranges and reports it in a third column (transfer attacks from its own fake-quantized model).
#include "common.hpp"

#include <ardent/ardent.hpp>
#include <ardent/deploy.hpp>
#include <ardent/eval/autoattack.hpp>
#include <ardent/eval/deployed.hpp>
#include <ardent/eval/evaluate.hpp>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>

namespace {

struct Settings {
  std::string student_path;
  std::string data_dir = ardent::data::kFashionMNISTDirectory.string();
  std::string out = "runs/deploy";
  std::vector<std::string> engines{"qnnpack", "onednn"};
  std::string engine = "onednn";
  int width = 16;
  double epsilon = 0.1;
  int64_t calibration = 1000;
  int64_t limit = 1000;
  int64_t queries = 5000;
  int64_t apgd_steps = 100;
  int64_t latency_runs = 50;
  bool per_tensor = false;
  std::string qat_teacher;
  int qat_teacher_width = 32;
  int64_t qat_epochs = 1;
  int64_t qat_limit = 0;
  int64_t qat_steps = 10;
  uint64_t seed = 0;
  int threads = tools::default_threads();
};

/// Median wall time of `runs` calls of fn, in milliseconds (after one warm-up call).
template <typename Fn>
double median_ms(Fn&& fn, int64_t runs) {
  fn();
  std::vector<double> times;
  for (int64_t i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(times.size() / 2), times.end());
  return times[times.size() / 2];
}

// Raw float32 in the machine's order, as tests/onnx/check_onnxruntime.js reads it.
void write_floats(const std::filesystem::path& path, const torch::Tensor& t) {
  const auto c = t.detach().to(torch::kFloat32).contiguous();
  ardent::io::write_file_atomically(
      path, std::string_view(static_cast<const char*>(c.data_ptr()), static_cast<std::size_t>(c.nbytes())), "deploy");
}

double file_kib(const std::filesystem::path& path) {
  return static_cast<double>(std::filesystem::file_size(path)) / 1024.0;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{"A SmallCNN student to int8 and ONNX, with size, accuracy, robustness and latency side by side"};
  app.add_option("--student", s.student_path, "ardent::models::SmallCNN saved with torch::save")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--width", s.width, "Width of the SmallCNN")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--data", s.data_dir, "Fashion-MNIST directory (IDX files)")->check(CLI::ExistingDirectory);
  app.add_option("--out", s.out, "Output directory")->capture_default_str();
  app.add_option("--engine", s.engine, "Engine of the saved int8 model and of the robustness runs")
      ->check(CLI::IsMember({"qnnpack", "onednn"}))
      ->capture_default_str();
  app.add_option("--latency-engines", s.engines, "Engines whose latency is measured")
      ->check(CLI::IsMember({"qnnpack", "onednn"}));
  app.add_flag("--per-tensor", s.per_tensor, "One weight scale per tensor instead of per output channel");
  app.add_option("--epsilon", s.epsilon, "Linf radius")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--calibration", s.calibration, "Calibration images (the first N training images)")
      ->check(CLI::Range(int64_t{1}, int64_t{60000}))
      ->capture_default_str();
  app.add_option("--limit", s.limit, "Test images evaluated")
      ->check(CLI::Range(int64_t{1}, int64_t{10000}))
      ->capture_default_str();
  app.add_option("--queries", s.queries, "Square's queries")
      ->check(CLI::Range(int64_t{1}, int64_t{100000}))
      ->capture_default_str();
  app.add_option("--apgd-steps", s.apgd_steps, "APGD steps")
      ->check(CLI::Range(int64_t{1}, int64_t{10000}))
      ->capture_default_str();
  app.add_option("--latency-runs", s.latency_runs, "Timed calls per latency (median)")
      ->check(CLI::Range(int64_t{1}, int64_t{100000}))
      ->capture_default_str();
  app.add_option("--qat-teacher", s.qat_teacher, "Teacher (SmallCNN, torch::save) of a quantization-aware ARD student")
      ->check(CLI::ExistingFile);
  app.add_option("--qat-teacher-width", s.qat_teacher_width, "Width of the teacher")->capture_default_str();
  app.add_option("--qat-epochs", s.qat_epochs, "Epochs of quantization-aware ARD")->capture_default_str();
  app.add_option("--qat-limit", s.qat_limit, "Train on the first N training images (0: all)")->capture_default_str();
  app.add_option("--qat-steps", s.qat_steps, "PGD steps of the training attack")->capture_default_str();
  app.add_option("--seed", s.seed, "Seed of the quantization-aware student")->capture_default_str();
  app.add_option("--threads", s.threads, "Intra-op threads")->check(CLI::Range(1, 1024))->capture_default_str();
  try {
    app.parse(argc, argv);
    tools::set_threads(s.threads);
    namespace dp = ardent::deploy;
    const std::filesystem::path out = s.out;
    std::filesystem::create_directories(out);

    ardent::models::SmallCNN student(ardent::models::SmallCNNOptions(10).width(s.width));
    ardent::io::load_module(student, s.student_path);
    student->eval();
    const auto train = tools::take(ardent::data::MNIST(s.data_dir, ardent::data::MNIST::Split::Train), s.calibration);
    const auto test = tools::take(ardent::data::MNIST(s.data_dir, ardent::data::MNIST::Split::Test), s.limit);
    fmt::print("student: SmallCNN (width {}) from {}; {} calibration images, {} test images, eps {}\n", s.width,
               s.student_path, train.images.size(0), test.images.size(0), s.epsilon);

    const auto options = dp::QuantizeOptions().engine(s.engine).per_channel(!s.per_tensor);
    auto q = dp::quantize(student, train.images, options);
    dp::save_int8(q, out / "student.int8.pt");
    const auto example = test.images.slice(0, 0, 1);
    dp::export_onnx(student, example, (out / "student.onnx").string());
    dp::export_onnx(q, example, (out / "student.int8.onnx").string());

    // ONNX Runtime's check of both exports on the test images: `node tests/onnx/check_onnxruntime.js <out>`
    // compares its logits with ardent's (float: largest difference; int8: argmax agreement).
    {
      torch::NoGradGuard no_grad;
      write_floats(out / "test_images.bin", test.images);
      write_floats(out / "student.logits.bin", student->forward(test.images));
      write_floats(out / "student.int8.logits.bin", ardent::forward(q, test.images));
      const auto shape = test.images.sizes().vec();
      const nlohmann::json manifest = {{{"model", "student.onnx"},
                                        {"images", "test_images.bin"},
                                        {"shape", shape},
                                        {"expected", "student.logits.bin"},
                                        {"max_abs_difference", 1e-4}},
                                       {{"model", "student.int8.onnx"},
                                        {"images", "test_images.bin"},
                                        {"shape", shape},
                                        {"expected", "student.int8.logits.bin"},
                                        {"min_argmax_agreement", 0.99}}};
      ardent::io::write_file_atomically(out / "manifest.json", manifest.dump(2) + "\n", "deploy");
    }

    nlohmann::json report;
    report["settings"] = {{"student", s.student_path},
                          {"width", s.width},
                          {"epsilon", s.epsilon},
                          {"calibration_images", train.images.size(0)},
                          {"test_images", test.images.size(0)},
                          {"engine", s.engine},
                          {"per_channel", !s.per_tensor},
                          {"square_queries", s.queries},
                          {"apgd_steps", s.apgd_steps},
                          {"threads", torch::get_num_threads()}};
    report["size_kib"] = {{"student", file_kib(s.student_path)},
                          {"student.int8.pt", file_kib(out / "student.int8.pt")},
                          {"student.onnx", file_kib(out / "student.onnx")},
                          {"student.int8.onnx", file_kib(out / "student.int8.onnx")}};

    // The int8 model against its float twin (same arithmetic, fake quantization) and the float model.
    {
      torch::NoGradGuard no_grad;
      const auto int8_pred = ardent::forward(q, test.images).argmax(1);
      report["argmax_agreement"] = {
          {"int8_vs_float_twin",
           int8_pred.eq(q->reference_forward(test.images).argmax(1)).to(torch::kFloat).mean().item<double>()},
          {"int8_vs_float",
           int8_pred.eq(student->forward(test.images).argmax(1)).to(torch::kFloat).mean().item<double>()}};
    }

    namespace ev = ardent::eval;
    const auto float_report = ardent::evaluate(
        student, test.images, test.labels,
        std::vector<ev::Preset>{ev::apgd_ce(s.epsilon, s.apgd_steps), ev::apgd_t(s.epsilon, s.apgd_steps),
                                ev::square(s.epsilon, s.queries)});
    // The APGDs run on the int8 network's float twin (its exact arithmetic, straight-through gradients):
    // the strongest transfer source it has.
    const auto int8_report = ardent::evaluate(q, test.images, test.labels,
                                              ev::deployed(s.epsilon, s.queries, s.apgd_steps));
    report["float"] = float_report.to_json();
    report["int8"] = int8_report.to_json();

    std::optional<ardent::EvalReport> qat_report;
    if (!s.qat_teacher.empty()) {
      ardent::models::SmallCNN teacher(ardent::models::SmallCNNOptions(10).width(s.qat_teacher_width));
      ardent::io::load_module(teacher, s.qat_teacher);
      teacher->eval();
      torch::manual_seed(s.seed);
      ardent::models::SmallCNN fresh(ardent::models::SmallCNNOptions(10).width(s.width));
      auto qat = dp::quantization_aware(fresh, train.images, options);
      auto ard = ardent::make_ard(teacher, qat, 1.0, 30.0, tools::madry_pgd_options(s.epsilon, s.qat_steps));
      torch::optim::Adam adam(qat->parameters(), torch::optim::AdamOptions(1e-3));
      const auto all = tools::take(ardent::data::MNIST(s.data_dir, ardent::data::MNIST::Split::Train), s.qat_limit);
      ardent::data::ShuffledBatches batches(all.images, all.labels, 128, s.seed);
      const auto start = std::chrono::steady_clock::now();
      for (int64_t epoch = 0; epoch < s.qat_epochs; ++epoch) {
        qat->train();
        for (const auto& [x, y, indices] : batches) ard.step(x, y, adam, indices);
        fmt::print("quantization-aware ARD: epoch {} done ({:.0f} s)\n", epoch + 1,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        std::fflush(stdout);
      }
      qat->eval();
      auto qat_int8 = dp::quantize(qat, train.images, options);
      dp::save_int8(qat_int8, out / "qat_student.int8.pt");
      qat_report = ardent::evaluate(
          qat_int8, test.images, test.labels,
          ev::deployed(s.epsilon, qat, "quantization-aware student", s.queries, s.apgd_steps));
      report["qat_int8"] = qat_report->to_json();
      report["settings"]["qat"] = {{"teacher", s.qat_teacher},
                                   {"epochs", s.qat_epochs},
                                   {"train_images", all.images.size(0)},
                                   {"pgd_steps", s.qat_steps},
                                   {"seed", s.seed}};
    }

    // Latency: batch 1 and batch 64, float (ardent's inference forward) and int8 per engine.
    // The int8 model on each engine is the same program, prepacked for that engine (no new calibration).
    std::vector<std::pair<std::string, dp::Int8Model>> on_engines;
    for (const auto& engine : s.engines) {
      auto program = q->program();
      program.engine = engine;
      on_engines.emplace_back(engine, dp::Int8Model(std::move(program)));
    }
    nlohmann::json latency = nlohmann::json::array();
    for (const int64_t batch : {int64_t{1}, int64_t{64}}) {
      const auto x = test.images.slice(0, 0, batch).contiguous();
      torch::InferenceMode inference;
      const double float_ms = median_ms([&] { return student->forward(x); }, s.latency_runs);
      for (auto& [engine, qe] : on_engines) {
        const double int8_ms = median_ms([&] { return ardent::forward(qe, x); }, s.latency_runs);
        latency.push_back({{"engine", engine},
                           {"batch", batch},
                           {"float_ms", float_ms},
                           {"int8_ms", int8_ms},
                           {"speedup", float_ms / int8_ms}});
      }
    }
    report["latency"] = latency;

    fmt::print("\n| file | KiB |\n| --- | --- |\n");
    for (const auto& [name, kib] : report["size_kib"].items()) fmt::print("| {} | {:.1f} |\n", name, kib.get<double>());
    const auto alone = [](const ardent::eval::AttackResult& a) {
      return 100 * a.robust_accuracy.value_or(a.worst_case_accuracy);
    };
    const auto qat_cell = [&](double value) { return qat_report ? fmt::format(" {:.2f}% |", value) : std::string(); };
    fmt::print("\n| attack | float | int8 (PTQ) |{}\n| --- | --- | --- |{}\n", qat_report ? " int8 (QAT ARD) |" : "",
               qat_report ? " --- |" : "");
    fmt::print("| clean | {:.2f}% | {:.2f}% |{}\n", 100 * float_report.clean_accuracy, 100 * int8_report.clean_accuracy,
               qat_cell(qat_report ? 100 * qat_report->clean_accuracy : 0));
    for (std::size_t k = 0; k < float_report.attacks.size(); ++k) {
      fmt::print("| {} / {} | {:.2f}% | {:.2f}% |{}\n", float_report.attacks[k].name, int8_report.attacks[k].name,
                 alone(float_report.attacks[k]), alone(int8_report.attacks[k]),
                 qat_cell(qat_report ? alone(qat_report->attacks[k]) : 0));
    }
    fmt::print("| worst case | {:.2f}% | {:.2f}% |{}\n", 100 * float_report.worst_case_accuracy,
               100 * int8_report.worst_case_accuracy, qat_cell(qat_report ? 100 * qat_report->worst_case_accuracy : 0));
    fmt::print(
        "\n(int8: not a white-box evaluation - APGD transferred from the int8 model's float twin, Square on the "
        "int8 model)\n");
    fmt::print("argmax agreement: int8 vs float twin {:.2f}%, int8 vs float {:.2f}%\n",
               100 * report["argmax_agreement"]["int8_vs_float_twin"].get<double>(),
               100 * report["argmax_agreement"]["int8_vs_float"].get<double>());
    fmt::print("\n| engine | batch | float ms | int8 ms | speedup |\n| --- | --- | --- | --- | --- |\n");
    for (const auto& l : latency) {
      fmt::print("| {} | {} | {:.3f} | {:.3f} | {:.2f}x |\n", l["engine"].get<std::string>(), l["batch"].get<int64_t>(),
                 l["float_ms"].get<double>(), l["int8_ms"].get<double>(), l["speedup"].get<double>());
    }
    ardent::io::write_file_atomically(out / "report.json", report.dump(2) + "\n", "deploy");
    fmt::print("\nwrote {}/student.int8.pt, student.onnx, student.int8.onnx, report.json\n", out.string());
    return 0;
  } catch (const CLI::Error& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    fmt::print(stderr, "deploy: {}\n", e.what());
    return 1;
  }
}
