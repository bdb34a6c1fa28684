// The program the multi-process tests launch (tests/distributed/run.sh): one process of a tiny
// data-parallel run on synthetic data, writing what the script then compares.
//
//   worker train   --method ard|madry --batch B --epochs E --out DIR [--resume] [--model small-cnn|bn]
//                  [--sync-bn] [--kill-rank R --kill-batch K] [--hang-rank R --hang-batch K]
//                  [--stop-rank R --stop-batch K]
//   worker shard   --batch B --out DIR
//   worker eval    --out DIR
//   worker compare A B TOLERANCE        (tensors saved by torch::save; max |A - B| <= TOLERANCE)
//   worker differ A B TOLERANCE         (max |A - B| > TOLERANCE: the comparison can fail)
//   worker shards  DIR WORLD ONE_DIR    (the WORLD ranks' batches == one process's, disjoint)
//   worker reports A B                  (two report.json files with equal counts and accuracies)
#include <ardent/ardent.hpp>
#include <ardent/distributed.hpp>

#include <csignal>
#include <fstream>
#include <iostream>
#include <thread>

namespace {

constexpr int64_t kImages = 48;

struct Args {
  std::string mode, method = "ard", out, model = "small-cnn";
  int64_t batch = 8, epochs = 2, kill_rank = -1, kill_batch = -1, hang_rank = -1, hang_batch = -1, stop_rank = -1,
          stop_batch = -1;
  bool resume = false, sync_bn = false;
};

Args parse(int argc, char** argv) {
  Args a;
  a.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&] { return std::string(argv[++i]); };
    if (k == "--method")
      a.method = next();
    else if (k == "--batch")
      a.batch = std::stoll(next());
    else if (k == "--epochs")
      a.epochs = std::stoll(next());
    else if (k == "--out")
      a.out = next();
    else if (k == "--resume")
      a.resume = true;
    else if (k == "--model")
      a.model = next();
    else if (k == "--sync-bn")
      a.sync_bn = true;
    else if (k == "--hang-rank")
      a.hang_rank = std::stoll(next());
    else if (k == "--hang-batch")
      a.hang_batch = std::stoll(next());
    else if (k == "--stop-rank")
      a.stop_rank = std::stoll(next());
    else if (k == "--stop-batch")
      a.stop_batch = std::stoll(next());
    else if (k == "--kill-rank")
      a.kill_rank = std::stoll(next());
    else if (k == "--kill-batch")
      a.kill_batch = std::stoll(next());
    else
      throw std::invalid_argument("unknown argument " + k);
  }
  return a;
}

std::pair<torch::Tensor, torch::Tensor> synthetic(int64_t n, uint64_t seed) {
  auto generator = at::detail::createCPUGenerator(seed);
  return {torch::rand({n, 1, 28, 28}, generator), torch::randint(0, 10, {n}, generator, torch::kLong)};
}

ardent::models::SmallCNN small_cnn(int64_t width, uint64_t seed) {
  torch::manual_seed(seed);
  return ardent::models::SmallCNN(ardent::models::SmallCNNOptions(10).width(width));
}

/// A small convolutional network with BatchNorm, applied through ardent::models::conv_bn so that
/// SyncBatchNorm reaches it.
class BnNetImpl : public torch::nn::Cloneable<BnNetImpl> {
 public:
  BnNetImpl() { reset(); }
  void reset() override {
    namespace nn = torch::nn;
    conv_ = register_module("conv", nn::Conv2d(nn::Conv2dOptions(1, 4, 3).stride(2).bias(false)));
    bn_ = register_module("bn", nn::BatchNorm2d(4));
    fc_ = register_module("fc", nn::Linear(4 * 13 * 13, 10));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return fc_->forward(torch::relu(ardent::models::conv_bn(conv_, bn_, x)).flatten(1));
  }

 private:
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::BatchNorm2d bn_{nullptr};
  torch::nn::Linear fc_{nullptr};
};
TORCH_MODULE(BnNet);

torch::Tensor flat(const std::vector<torch::Tensor>& parameters) {
  std::vector<torch::Tensor> pieces;
  for (const auto& p : parameters) pieces.push_back(p.detach().reshape(-1));
  return torch::cat(pieces);
}

/// Forwards to a trainer; at batch `kill_batch` of the first epoch SIGKILLs this process on rank
/// `kill_rank` (a rank dying mid-epoch), and at `hang_batch` sleeps for an hour on `hang_rank` (a
/// rank alive but stuck), and at `stop_batch` stops itself with SIGSTOP on `stop_rank` (a rank
/// neither dead nor running, which answers nothing, its store server included on rank 0).
template <typename Trainer>
struct Dying {
  Trainer& trainer;
  int64_t rank;
  const Args& args;
  int64_t batch = 0;
  ardent::StepResult step(const torch::Tensor& x, const torch::Tensor& y, torch::optim::Optimizer& optimizer) {
    if (rank == args.kill_rank && batch == args.kill_batch) std::raise(SIGKILL);
    if (rank == args.hang_rank && batch == args.hang_batch) std::this_thread::sleep_for(std::chrono::hours(1));
    if (rank == args.stop_rank && batch == args.stop_batch) std::raise(SIGSTOP);
    ++batch;
    return trainer.step(x, y, optimizer);
  }
  std::vector<torch::Tensor> parameters() { return trainer.parameters(); }
  void train(bool on = true) { trainer.train(on); }
};

template <typename Trainer, typename Student>
void train_with(Trainer& trainer, Student& student, const Args& a) {
  const auto& world = ardent::distributed::world();
  const auto [images, labels] = synthetic(kImages, 11);
  torch::optim::SGD optimizer(trainer.parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  ardent::data::ShuffledBatches batches(images, labels, a.batch, 5);
  ardent::train::LoopOptions loop;
  loop.epochs = a.epochs;
  loop.checkpoint = std::filesystem::path(a.out) / "checkpoint.pt";
  loop.resume = a.resume;
  loop.progress_every = 0;
  loop.metrics_csv = std::filesystem::path(a.out) / "metrics.csv";
  const ardent::distributed::DataParallelLoop parallel(
      world, ardent::distributed::DataParallelLoopOptions().sync_batch_norm(a.sync_bn));
  loop.parallel = &parallel;
  Dying<Trainer> dying{trainer, world.rank(), a};
  ardent::train::train_loop(dying, batches, optimizer, {{"student", student.ptr()}}, loop);
  torch::save(flat(ardent::parameters(student)),
              (std::filesystem::path(a.out) / fmt::format("student.rank{}.pt", world.rank())).string());
}

template <typename Student>
void train(Student& student, const Args& a) {
  // A deterministic attack (no random start), so that 1 and 2 processes can agree exactly.
  const auto attack = ardent::attacks::PGDOptions(0.1).step_size(0.05).steps(2).random_start(false);
  if (a.method == "ard") {
    auto teacher = small_cnn(6, 2);
    auto d = ardent::make_ard(teacher, student, 0.9, 4.0, attack);
    train_with(d, student, a);
  } else {
    auto t = ardent::make_madry_trainer(student, attack);
    train_with(t, student, a);
  }
}

void train(const Args& a) {
  const auto& world = ardent::distributed::world();
  std::filesystem::create_directories(a.out);
  // Each rank initialises differently: DataParallel must start every rank from rank 0's weights.
  const auto seed = 3 + static_cast<uint64_t>(world.rank());
  if (a.model == "bn") {
    torch::manual_seed(seed);
    BnNet student;
    train(student, a);
  } else {
    auto student = small_cnn(4, seed);
    train(student, a);
  }
}

void shard(const Args& a) {
  const auto& world = ardent::distributed::world();
  std::filesystem::create_directories(a.out);
  const int64_t n = 45;  // not a multiple of the global batch: the last one is split
  ardent::data::ShuffledBatches batches(torch::zeros({n, 1}), torch::arange(n, torch::kLong), a.batch, 9);
  batches.set_shard(world.rank(), world.size());
  batches.set_epoch(3);
  std::vector<torch::Tensor> ids;
  for (auto&& batch : batches) ids.push_back(batch.labels);
  torch::save(ids, (std::filesystem::path(a.out) / fmt::format("shard.rank{}.pt", world.rank())).string());
}

void eval(const Args& a) {
  const auto& world = ardent::distributed::world();
  std::filesystem::create_directories(a.out);
  auto model = small_cnn(4, 7);
  const auto [images, labels] = synthetic(37, 13);  // 37: uneven shards
  auto x = ardent::distributed::shard(images, world);
  auto y = ardent::distributed::shard(labels, world);
  const auto fgsm = ardent::attacks::FGSM(ardent::attacks::FGSMOptions(0.05));
  const auto pgd = ardent::attacks::PGD(ardent::attacks::PGDOptions(0.1).steps(3).step_size(0.05).random_start(false));
  std::vector<ardent::eval::NamedAttack<ardent::models::SmallCNN>> attacks;
  attacks.emplace_back("fgsm", fgsm);
  attacks.emplace_back("pgd", pgd);
  auto report = ardent::evaluate(model, x, y, attacks, ardent::eval::EvalOptions().batch_size(5));
  report = ardent::distributed::reduce_report(world, report);
  if (world.is_main()) report.write_json(std::filesystem::path(a.out) / "report.json");
}

double max_difference(const std::string& a, const std::string& b) {
  torch::Tensor x, y;
  torch::load(x, a);
  torch::load(y, b);
  const double diff = (x - y).abs().max().item<double>();
  fmt::print("max |{} - {}| = {:.3g} ({} values)\n", a, b, diff, x.numel());
  return diff;
}

int shards(const std::string& dir, int64_t world, const std::string& one_dir) {
  std::vector<torch::Tensor> one;
  torch::load(one, (std::filesystem::path(one_dir) / "shard.rank0.pt").string());
  std::vector<std::vector<torch::Tensor>> ranks(static_cast<std::size_t>(world));
  for (int64_t r = 0; r < world; ++r) {
    torch::load(ranks[r], (std::filesystem::path(dir) / fmt::format("shard.rank{}.pt", r)).string());
    if (ranks[r].size() != one.size()) {
      fmt::print("rank {} has {} batches, one process {}\n", r, ranks[r].size(), one.size());
      return 1;
    }
  }
  std::vector<torch::Tensor> all;
  for (std::size_t k = 0; k < one.size(); ++k) {
    std::vector<torch::Tensor> parts;
    for (const auto& r : ranks) parts.push_back(r[k]);
    const auto together = torch::cat(parts);
    if (!torch::equal(together, one[k])) {
      fmt::print("global batch {}: the ranks' slices differ from one process's batch\n", k);
      return 1;
    }
    all.push_back(together);
  }
  const auto everything = std::get<0>(torch::cat(all).sort());
  const bool disjoint_and_complete = torch::equal(everything, torch::arange(everything.numel(), torch::kLong));
  fmt::print("{} global batches, {} images, disjoint and complete: {}\n", one.size(), everything.numel(),
             disjoint_and_complete);
  return disjoint_and_complete ? 0 : 1;
}

int reports(const std::string& a, const std::string& b) {
  auto read = [](const std::string& path) {
    auto json = nlohmann::json::parse(std::ifstream(path));
    json.erase("seconds");
    for (auto& attack : json["attacks"]) attack.erase("seconds");
    return json;
  };
  const auto x = read(a);
  const auto y = read(b);
  fmt::print("{}\n{}\n", x.dump(), y.dump());
  return x == y ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) throw std::invalid_argument("usage: worker MODE ...");
    torch::set_num_threads(1);
    const std::string mode = argv[1];
    if (mode == "compare") return max_difference(argv[2], argv[3]) <= std::stod(argv[4]) ? 0 : 1;
    if (mode == "differ") return max_difference(argv[2], argv[3]) > std::stod(argv[4]) ? 0 : 1;
    if (mode == "shards") return shards(argv[2], std::stoll(argv[3]), argv[4]);
    if (mode == "reports") return reports(argv[2], argv[3]);
    const auto a = parse(argc, argv);
    if (mode == "train")
      train(a);
    else if (mode == "shard")
      shard(a);
    else if (mode == "eval")
      eval(a);
    else
      throw std::invalid_argument("unknown mode " + mode);
  } catch (const std::exception& e) {
    fmt::print(stderr, "worker: {}\n", e.what());
    return 1;
  }
  return 0;
}
