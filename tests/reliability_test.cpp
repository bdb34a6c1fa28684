// Reliability: the file readers against crafted hostile input (state dicts, torch::save archives,
// IDX and CIFAR files), checkpoints against corruption, other options, other shapes and partial
// loads, and training against kills at any moment (the kill-and-resume test). Each test case
// names the defect of issue 11 it guards against; each fails on the code before its fix.
#include "catch.hpp"

#include <ardent/data/cifar.hpp>
#include <ardent/data/mnist.hpp>
#include <ardent/io/digest.hpp>
#include <ardent/io/module_archive.hpp>
#include <ardent/io/state_dict.hpp>
#include <ardent/models/small_cnn.hpp>
#include <ardent/train/checkpoint.hpp>
#include <ardent/train/metrics.hpp>

#include <caffe2/serialize/inline_container.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <thread>

#include "test_config.hpp"

namespace fs = std::filesystem;
using ardent::models::SmallCNN;
using ardent::models::SmallCNNOptions;

namespace {

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() / ("ardent_reliability_" + name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const fs::path& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

/// A zip archive as torch.save writes it: data.pkl and the given records "data/<key>".
fs::path archive(const fs::path& path, const std::string& pickle, const std::map<std::string, std::string>& records) {
  caffe2::serialize::PyTorchStreamWriter writer(path.string());
  writer.writeRecord("data.pkl", pickle.data(), pickle.size());
  for (const auto& [key, bytes] : records) writer.writeRecord("data/" + key, bytes.data(), bytes.size());
  writer.writeEndOfFile();
  return path;
}

std::string u32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }

/// BINUNICODE: a str of pickle protocol 2.
std::string str(const std::string& text) { return "X" + u32(static_cast<uint32_t>(text.size())) + text; }

/// A pickle of {'w': tensor} whose tensor has `sizes` and `strides` over storage '0' of `numel`
/// float elements (LONG1-encoded integers, so any int64 fits).
std::string tensor_pickle(const std::vector<int64_t>& sizes, const std::vector<int64_t>& strides, int64_t numel,
                          int64_t offset = 0) {
  auto integer = [](int64_t v) {
    return std::string("\x8a\x08", 2) + std::string(reinterpret_cast<const char*>(&v), 8);
  };
  auto tuple = [&](const std::vector<int64_t>& values) {
    std::string out = "(";
    for (auto v : values) out += integer(v);
    return out + "t";
  };
  std::string p = std::string("\x80\x02}(") + str("w");
  p += "ctorch._utils\n_rebuild_tensor_v2\n(";
  p += "(" + str("storage") + "ctorch\nFloatStorage\n" + str("0") + str("cpu") + integer(numel) + "tQ";
  p += integer(offset) + tuple(sizes) + tuple(strides) + "\x89" + "ccollections\nOrderedDict\n)R" + "tR";
  p += "u.";
  return p;
}

}  // namespace

// ---- defects 1-5: the state-dict reader ---------------------------------------------------------

TEST_CASE("defect 1: a list nested 200,000 deep is refused past kMaxPickleDepth, without recursion", "[reliability]") {
  TempDir tmp("deep");
  constexpr int depth = 200000;
  std::string p = "\x80\x02";
  p += std::string(depth, ']') + std::string(depth - 1, 'a') + ".";
  const auto path = archive(tmp.path / "deep.pt", p, {});
  CHECK_THROWS_WITH(ardent::io::read_state_dict(path),
                    ContainsSubstring("deep.pt") && ContainsSubstring("nest deeper than 1000 levels"));
  // A chain built through the memo evades the depth count as it is built (each APPEND sees a
  // shallow child); freeing it must still not recurse.
  std::string chain = "\x80\x02]r" + u32(0) + "0";
  for (uint32_t i = 1; i <= static_cast<uint32_t>(depth); ++i) {
    chain += "]r" + u32(i) + "0j" + u32(i - 1) + "j" + u32(i) + "a0";
  }
  chain += "j" + u32(0) + ".";
  CHECK_THROWS_WITH(ardent::io::read_state_dict(archive(tmp.path / "chain.pt", chain, {})),
                    ContainsSubstring("holds a list, expected a state dict"));
}

TEST_CASE("defect 2: a tensor of size [2^31] and stride [0] is a view of its 4-byte storage", "[reliability]") {
  TempDir tmp("stride0");
  const float one = 1.5F;
  const auto path = archive(tmp.path / "stride0.pt", tensor_pickle({int64_t{1} << 31}, {0}, 1),
                            {{"0", std::string(reinterpret_cast<const char*>(&one), 4)}});
  const auto dict = ardent::io::read_state_dict(path);
  const auto& w = dict["w"];
  CHECK(w.numel() == (int64_t{1} << 31));
  CHECK(w.storage().nbytes() == 4);  // no 8 GB clone
  CHECK(w[12345].item<float>() == 1.5F);
  SmallCNN model(SmallCNNOptions(10).width(2));
  CHECK_THROWS_WITH(ardent::io::load_state_dict(model, path), ContainsSubstring("unexpected keys [w]"));
}

TEST_CASE("defect 3: storage extents are computed with overflow checks", "[reliability]") {
  TempDir tmp("overflow");
  const std::string four(16, '\0');
  const int64_t big = int64_t{1} << 62;
  CHECK_THROWS_WITH(
      ardent::io::read_state_dict(archive(tmp.path / "a.pt", tensor_pickle({big}, {4}, 4), {{"0", four}})),
      ContainsSubstring("reaches beyond 2^63"));
  CHECK_THROWS_WITH(
      ardent::io::read_state_dict(archive(tmp.path / "b.pt", tensor_pickle({big, big}, {0, 0}, 4), {{"0", four}})),
      ContainsSubstring("more than 2^63 elements"));
  CHECK_THROWS_WITH(
      ardent::io::read_state_dict(archive(tmp.path / "c.pt", tensor_pickle({3}, {1}, 4, INT64_MAX - 1), {{"0", four}})),
      ContainsSubstring("reaches beyond 2^63"));
  CHECK_THROWS_WITH(ardent::io::read_state_dict(archive(tmp.path / "d.pt", tensor_pickle({5}, {1}, 4), {{"0", four}})),
                    ContainsSubstring("overruns its storage of 4 elements"));
}

TEST_CASE("defect 4: a list that contains itself is freed with the rest", "[reliability]") {
  TempDir tmp("cycle");
  // {'state_dict': {'w': T}, 'loop': L} where L = [L, T]: the tensor's only owner after the read
  // must be the returned dict; a leaked L would hold it too.
  std::string base = tensor_pickle({2}, {1}, 2);
  base.resize(base.size() - 2);  // drop "u." to add entries
  std::string p = "\x80\x02}(" + str("state_dict") + "}q\x06" + base.substr(3) + "u";
  p += str("loop") +
       "]q\x05h\x05"
       "a"
       "h\x06"
       "a";  // L = [L, the state dict]
  p += "u.";
  const std::string two(8, '\0');
  const auto dict = ardent::io::read_state_dict(archive(tmp.path / "cycle.pt", p, {{"0", two}}));
  REQUIRE(dict.contains("w"));
  CHECK(dict["w"].use_count() == 1);
}

TEST_CASE("defect 5: a record's real size is compared before anything is allocated", "[reliability]") {
  TempDir tmp("claims");
  const std::string four(4, '\0');
  CHECK_THROWS_WITH(ardent::io::read_state_dict(
                        archive(tmp.path / "big.pt", tensor_pickle({1}, {1}, int64_t{1} << 40), {{"0", four}})),
                    ContainsSubstring("has 4 bytes, expected 4398046511104"));
  CHECK_THROWS_WITH(ardent::io::read_state_dict(
                        archive(tmp.path / "wrap.pt", tensor_pickle({1}, {1}, int64_t{1} << 62), {{"0", four}})),
                    ContainsSubstring("claims 4611686018427387904 elements"));
  // A zip directory whose record claims more bytes than the file holds.
  auto bytes = slurp(archive(tmp.path / "ok.pt", tensor_pickle({1}, {1}, 1), {{"0", four}}));
  const auto entry = bytes.rfind("ok/data/0");  // the central directory's copy of the name
  REQUIRE(entry != std::string::npos);
  const uint32_t huge = 0x7fffffff;
  std::memcpy(&bytes[entry - 46 + 20], &huge, 4);
  std::memcpy(&bytes[entry - 46 + 24], &huge, 4);
  spit(tmp.path / "lying.pt", bytes);
  CHECK_THROWS_WITH(ardent::io::read_state_dict(tmp.path / "lying.pt"),
                    ContainsSubstring("lying.pt") && ContainsSubstring("claims 2147483647 bytes"));
}

TEST_CASE("a flipped bit in a state dict's tensor data fails the CRC-32 check", "[reliability]") {
  TempDir tmp("crc");
  SmallCNN model(SmallCNNOptions(10).width(2));
  const auto path = tmp.path / "model.pt";
  ardent::io::save_state_dict(model, path);
  auto bytes = slurp(path);
  const auto fc = model->named_parameters()["fc.weight"];
  const std::string data(static_cast<const char*>(fc.data_ptr()), 64);
  const auto at = bytes.find(data);
  REQUIRE(at != std::string::npos);
  bytes[at + 10] = static_cast<char>(bytes[at + 10] ^ 0x01);
  spit(path, bytes);
  CHECK_THROWS_WITH(ardent::io::load_state_dict(model, path),
                    ContainsSubstring("model.pt") && ContainsSubstring("fails its CRC-32 check"));
}

// ---- issue 14: the teacher, torch::save archives, shapes -----------------------------------------

TEST_CASE("the shipped teacher loads as a state dict and as a module; the wrong width is refused", "[reliability]") {
  const fs::path models = fs::path(ARDENT_TEST_DATA_DIR) / ".." / ".." / "models";
  SmallCNN from_archive(SmallCNNOptions(10).width(32));
  ardent::io::load_module(from_archive, models / "fashion_teacher.pt");
  SmallCNN from_state_dict(SmallCNNOptions(10).width(32));
  ardent::io::load_state_dict(from_state_dict, models / "fashion_teacher.state_dict.pt");
  for (const auto& p : from_archive->named_parameters())
    CHECK(torch::equal(p.value(), from_state_dict->named_parameters()[p.key()]));
  CHECK_THROWS_WITH(ardent::io::load_state_dict(from_state_dict, models / "fashion_teacher.pt"),
                    ContainsSubstring("torch::save") && ContainsSubstring("ardent::io::load_module(model, path)"));
  CHECK_THROWS_WITH(ardent::io::load_module(from_archive, models / "fashion_teacher.state_dict.pt"),
                    ContainsSubstring("ardent::io::load_state_dict(model, path)"));
  SmallCNN narrow(SmallCNNOptions(10).width(16));
  const auto before = narrow->named_parameters()["c1.weight"].clone();
  CHECK_THROWS_WITH(ardent::io::load_module(narrow, models / "fashion_teacher.pt"),
                    ContainsSubstring("c1.weight (file [32, 1, 3, 3], model [16, 1, 3, 3])"));
  CHECK_THROWS_WITH(ardent::io::load_state_dict(narrow, models / "fashion_teacher.state_dict.pt"),
                    ContainsSubstring("c1.weight (file [32, 1, 3, 3], model [16, 1, 3, 3])"));
  CHECK(torch::equal(narrow->named_parameters()["c1.weight"], before));
  CHECK(narrow->named_parameters()["c1.weight"].size(0) == 16);
}

// ---- defects 7-10: checkpoints -------------------------------------------------------------------

TEST_CASE("defect 7: a corrupted checkpoint is refused naming the file; the previous one is kept", "[reliability]") {
  TempDir tmp("corrupt");
  torch::manual_seed(1);
  SmallCNN model(SmallCNNOptions(10).width(2));
  const auto path = tmp.path / "checkpoint.pt";
  ardent::train::save_checkpoint({1, {{"model", model.ptr()}}, nullptr}, path);
  const auto first = slurp(path);
  CHECK_FALSE(fs::exists(tmp.path / "checkpoint.prev.pt"));
  {
    torch::NoGradGuard no_grad;
    model->named_parameters()["fc.weight"].add_(1.0);
  }
  ardent::train::save_checkpoint({2, {{"model", model.ptr()}}, nullptr}, path);
  CHECK(slurp(tmp.path / "checkpoint.prev.pt") == first);  // the previous one, kept
  for (const auto& entry : fs::directory_iterator(tmp.path)) {
    CHECK(entry.path().filename().string().find(".tmp") == std::string::npos);
  }
  auto bytes = slurp(path);
  const auto fc = model->named_parameters()["fc.weight"];
  const std::string data(static_cast<const char*>(fc.data_ptr()), 64);
  const auto at = bytes.find(data);
  REQUIRE(at != std::string::npos);
  bytes[at + 5] = static_cast<char>(bytes[at + 5] ^ 0x10);
  spit(path, bytes);
  SmallCNN other(SmallCNNOptions(10).width(2));
  const auto before = other->named_parameters()["fc.weight"].clone();
  ardent::train::Checkpoint target{0, {{"model", other.ptr()}}, nullptr};
  CHECK_THROWS_WITH(ardent::train::load_checkpoint(target, path), ContainsSubstring(path.string()) &&
                                                                      ContainsSubstring("CRC-32") &&
                                                                      ContainsSubstring("checkpoint.prev.pt"));
  CHECK(torch::equal(other->named_parameters()["fc.weight"], before));
  CHECK(ardent::train::load_checkpoint(target, tmp.path / "checkpoint.prev.pt") == 1);
}

TEST_CASE("defect 6: stale temporaries of killed writers are removed", "[reliability]") {
  TempDir tmp("stale");
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);  // a pid that no longer runs
  const auto stale = tmp.path / ("checkpoint.pt.tmp" + std::to_string(child));
  spit(stale, "half a checkpoint");
  SmallCNN model(SmallCNNOptions(10).width(2));
  ardent::train::save_checkpoint({1, {{"model", model.ptr()}}, nullptr}, tmp.path / "checkpoint.pt");
  CHECK_FALSE(fs::exists(stale));
}

TEST_CASE("defect 8: resuming with other run options or other shapes is refused naming both", "[reliability]") {
  TempDir tmp("options");
  SmallCNN model(SmallCNNOptions(10).width(2));
  const auto path = tmp.path / "checkpoint.pt";
  ardent::train::save_checkpoint({1, {{"student", model.ptr()}}, nullptr, {{"width", "2"}, {"epsilon", "0.1"}}}, path);
  SmallCNN wider(SmallCNNOptions(10).width(3));
  const auto before = wider->named_parameters()["c1.weight"].clone();
  ardent::train::Checkpoint resumed{0, {{"student", wider.ptr()}}, nullptr, {{"width", "3"}, {"epsilon", "0.1"}}};
  CHECK_THROWS_WITH(ardent::train::load_checkpoint(resumed, path),
                    ContainsSubstring("checkpoint.pt") && ContainsSubstring("option 'width' is 3 now but was 2"));
  resumed.run_options.clear();  // no options given: the shapes still must agree
  CHECK_THROWS_WITH(ardent::train::load_checkpoint(resumed, path),
                    ContainsSubstring("student.c1.weight (file [2, 1, 3, 3], model [3, 1, 3, 3])"));
  CHECK(torch::equal(wider->named_parameters()["c1.weight"], before));
  CHECK(wider->named_parameters()["c1.weight"].size(0) == 3);
}

TEST_CASE("defect 9: a failed load_checkpoint changes nothing", "[reliability]") {
  TempDir tmp("partial");
  torch::manual_seed(2);
  SmallCNN saved(SmallCNNOptions(10).width(2));
  const auto path = tmp.path / "checkpoint.pt";
  ardent::train::save_checkpoint({3, {{"student", saved.ptr()}}, nullptr}, path);
  SmallCNN student(SmallCNNOptions(10).width(2));
  SmallCNN connectors(SmallCNNOptions(10).width(2));
  const auto before = student->named_parameters()["fc.weight"].clone();
  torch::optim::SGD sgd(student->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  ardent::train::Checkpoint target{0, {{"student", student.ptr()}, {"connectors", connectors.ptr()}}, &sgd};
  CHECK_THROWS_WITH(ardent::train::load_checkpoint(target, path), ContainsSubstring("module.connectors"));
  CHECK(torch::equal(student->named_parameters()["fc.weight"], before));
  CHECK(target.epochs_completed == 0);
  // The optimizer entry is missing too (saved without one): also nothing changed.
  ardent::train::Checkpoint only_student{0, {{"student", student.ptr()}}, &sgd};
  CHECK_THROWS_WITH(ardent::train::load_checkpoint(only_student, path), ContainsSubstring("'optimizer'"));
  CHECK(torch::equal(student->named_parameters()["fc.weight"], before));
}

TEST_CASE("defect 10: broken TorchScript code in a checkpoint or a module archive is never compiled", "[reliability]") {
  TempDir tmp("script");
  SmallCNN model(SmallCNNOptions(10).width(2));
  // Rewrites an archive with valid CRC-32s but broken TorchScript code.
  const auto break_code = [&tmp](const fs::path& good, const std::string& name) {
    const auto bytes = slurp(good);
    std::istringstream stream(bytes);
    caffe2::serialize::PyTorchStreamReader reader(&stream);
    const auto bad = tmp.path / name;
    caffe2::serialize::PyTorchStreamWriter writer(bad.string());
    for (const auto& record : reader.getAllRecords()) {
      auto [data, size] = reader.getRecord(record);
      std::string content(static_cast<const char*>(data.get()), size);
      if (record.rfind("code/", 0) == 0 && record.size() > 3 && record.substr(record.size() - 3) == ".py") {
        content = "def broken(((:\n";
      }
      if (record != "version" && record != ".data/version") writer.writeRecord(record, content.data(), content.size());
    }
    writer.writeEndOfFile();
    return bad;
  };
  ardent::train::save_checkpoint({1, {{"student", model.ptr()}}, nullptr}, tmp.path / "good.pt");
  ardent::io::save_module(model, tmp.path / "good_module.pt");
  // The code is never read (issue 22): the data loads as it is (torch::load threw here).
  ardent::train::Checkpoint target{0, {{"student", model.ptr()}}, nullptr};
  CHECK(ardent::train::load_checkpoint(target, break_code(tmp.path / "good.pt", "bad_code.pt")) == 1);
  CHECK_NOTHROW(ardent::io::load_module(model, break_code(tmp.path / "good_module.pt", "bad_module.pt")));
  // A checkpoint is not a module: the error names the file and what is missing.
  CHECK_THROWS_WITH(ardent::io::load_module(model, tmp.path / "bad_code.pt"),
                    ContainsSubstring("bad_code.pt") && ContainsSubstring("missing entries [c1.*"));
}

// ---- the data readers ----------------------------------------------------------------------------

TEST_CASE("IDX headers whose element count wraps around 2^64 are refused", "[reliability]") {
  TempDir tmp("idx");
  auto be = [](uint32_t v) {
    return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                       static_cast<char>(v)};
  };
  // 2^31 * 2^31 * 4 = 2^64, which wrapped to 0 and matched an empty payload.
  spit(tmp.path / "wrap.idx", std::string("\0\0\x08\x03", 4) + be(1U << 31) + be(1U << 31) + be(4));
  CHECK_THROWS_WITH(ardent::data::read_idx_u8(tmp.path / "wrap.idx", 3),
                    ContainsSubstring("wrap.idx") && ContainsSubstring("more than 2^64"));
  spit(tmp.path / "ok.idx", std::string("\0\0\x08\x01", 4) + be(3) + "abc");
  CHECK(ardent::data::read_idx_u8(tmp.path / "ok.idx", 1).numel() == 3);
}

// ---- issue 22: opening a file never runs its code; memory bounded by the file's size -------------

namespace {

const fs::path hostile = fs::path(ARDENT_TEST_DATA_DIR) / "hostile";  // made by make_hostile.py

/// Sets read limits for one test and puts the previous ones back.
struct LimitsGuard {
  ardent::io::ReadLimits saved = ardent::io::read_limits();
  ~LimitsGuard() { ardent::io::read_limits() = saved; }
};

/// A stored (uncompressed) zip with the pickle `pickle` as data.pkl.
std::string stored_pickle(const fs::path& dir, const std::string& pickle) {
  const auto path = dir / "pickle.pt";
  archive(path, pickle, {});
  return path.string();
}

}  // namespace

TEST_CASE("issue 22 defect 1: a TorchScript __setstate__ in a module archive or a checkpoint is never run",
          "[reliability][hostile]") {
  TempDir tmp("setstate");
  // torch::load would loop for ever (evil_setstate.pt) or allocate 1 GiB (evil_alloc.pt) here.
  for (const char* name : {"evil_setstate.pt", "evil_alloc.pt"}) {
    INFO(name);
    SmallCNN model(SmallCNNOptions(10).width(2));
    CHECK_THROWS_WITH(ardent::io::load_module(model, hostile / name),
                      ContainsSubstring(name) && ContainsSubstring("__setstate__"));
    fs::copy_file(hostile / name, tmp.path / "checkpoint.pt", fs::copy_options::overwrite_existing);
    ardent::train::Checkpoint target{0, {{"student", model.ptr()}}, nullptr};
    CHECK_THROWS_WITH(ardent::train::load_checkpoint(target, tmp.path / "checkpoint.pt"),
                      ContainsSubstring("checkpoint.pt") && ContainsSubstring("__setstate__"));
  }
}

TEST_CASE("issue 22 defect 2: compressed records inflate at most max_inflation times the file",
          "[reliability][hostile]") {
  // 19.7 KB whose data.pkl inflates to 20 MB of opcodes (3.19 GB of values before).
  CHECK_THROWS_WITH(ardent::io::read_state_dict(hostile / "pickle_bomb.pt"),
                    ContainsSubstring("pickle_bomb.pt") && ContainsSubstring("max_inflation = 64") &&
                        ContainsSubstring("read_limits()"));
  // A 64 MiB tensor record deflated into 66 KB: refused by default, read when the user raises the limit.
  CHECK_THROWS_WITH(ardent::io::read_state_dict(hostile / "deflated_tensor.pt"), ContainsSubstring("max_inflation"));
  const LimitsGuard guard;
  ardent::io::read_limits().max_inflation(2000);
  const auto dict = ardent::io::read_state_dict(hostile / "deflated_tensor.pt");
  CHECK(dict["w"].numel() == 16 << 20);
}

TEST_CASE("issue 22 defect 2: an IDX header is checked before anything is inflated", "[reliability][hostile]") {
  // 50 KB of gzip whose header promises 51 MB (and holds it): refused from the header alone.
  CHECK_THROWS_WITH(ardent::data::read_idx_u8(hostile / "idx_bomb-images-idx3-ubyte.gz", 3),
                    ContainsSubstring("idx_bomb") && ContainsSubstring("more than the file can hold"));
  const LimitsGuard guard;
  ardent::io::read_limits().max_inflation(2000);
  CHECK(ardent::data::read_idx_u8(hostile / "idx_bomb-images-idx3-ubyte.gz", 3).size(0) == 1 << 16);
}

TEST_CASE("issue 22 defect 2: the pickle machine's values, stack, memo and marks are capped",
          "[reliability][hostile]") {
  TempDir tmp("caps");
  const LimitsGuard guard;
  ardent::io::read_limits().max_pickle_values(1000);
  const std::string proto("\x80\x02", 2);
  const auto read = [&](const std::string& pickle) {
    return ardent::io::read_state_dict(stored_pickle(tmp.path, pickle));
  };
  CHECK_THROWS_WITH(read(proto + std::string(1500, 'N') + "."), ContainsSubstring("max_pickle_values = 1000 values"));
  CHECK_THROWS_WITH(read(proto + "N" + std::string(1500, '2') + "."), ContainsSubstring("stack entries"));
  std::string memo = proto + "N";
  for (uint32_t i = 0; i < 1500; ++i) memo += "r" + u32(i);
  CHECK_THROWS_WITH(read(memo + "."), ContainsSubstring("memo entries"));
  CHECK_THROWS_WITH(read(proto + std::string(1500, '(') + "."), ContainsSubstring("marks"));
  // A real state dict needs far fewer.
  CHECK(ardent::io::read_state_dict(fs::path(ARDENT_TEST_DATA_DIR) / "state_dicts" / "tinybn.pt").size() > 0);
}

TEST_CASE("issue 22 defect 2: files larger than max_file_bytes are refused before they are read",
          "[reliability][hostile]") {
  const LimitsGuard guard;
  ardent::io::read_limits().max_file_bytes(1000);
  CHECK_THROWS_WITH(ardent::io::read_state_dict(fs::path(ARDENT_TEST_DATA_DIR) / "state_dicts" / "tinybn.pt"),
                    ContainsSubstring("tinybn.pt") && ContainsSubstring("max_file_bytes = 1000"));
}

namespace {

/// A file-size limit (RLIMIT_FSIZE) for this process, as a full disk would impose: writes beyond it
/// fail with EFBIG (SIGXFSZ ignored meanwhile).
struct FileSizeLimit {
  rlimit saved{};
  void (*handler)(int);
  explicit FileSizeLimit(rlim_t bytes) : handler(std::signal(SIGXFSZ, SIG_IGN)) {
    ::getrlimit(RLIMIT_FSIZE, &saved);
    rlimit limited = saved;
    limited.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &limited);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, handler);
  }
};

}  // namespace

TEST_CASE("issue 22 defect 3: save_module is atomic; a full disk is an error naming the file, never an abort",
          "[reliability]") {
  TempDir tmp("save_module");
  const auto path = tmp.path / "student.pt";
  SmallCNN first(SmallCNNOptions(10).width(2));
  ardent::io::save_module(first, path);
  const auto before = slurp(path);
  SmallCNN read_back(SmallCNNOptions(10).width(2));
  ardent::io::load_module(read_back, path);
  CHECK(torch::equal(read_back->named_parameters()["fc.weight"], first->named_parameters()["fc.weight"]));

  SmallCNN second(SmallCNNOptions(10).width(2));
  {
    const FileSizeLimit full(1000);  // torch::save aborted here (enforce fail at inline_container.cc)
    CHECK_THROWS_WITH(ardent::io::save_module(second, path),
                      ContainsSubstring("student.pt") && ContainsSubstring("File too large"));
  }
  CHECK(slurp(path) == before);  // the previous file is intact
  for (const auto& entry : fs::directory_iterator(tmp.path)) CHECK(entry.path().filename() == "student.pt");
}

TEST_CASE("issue 22 defect 3: metrics rows are written atomically and stale temporaries are removed", "[reliability]") {
  TempDir tmp("metrics");
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);  // a pid that no longer runs
  const auto stale = tmp.path / ("metrics.csv.tmp" + std::to_string(child));
  spit(stale, "epoch,train_loss\n1,");
  ardent::train::MetricsLog log(tmp.path / "metrics.csv", {"epoch", "train_loss"});
  log.append({{"epoch", 1}, {"train_loss", 0.5}});
  log.append({{"epoch", 2}, {"train_loss", 0.25}});
  CHECK_FALSE(fs::exists(stale));
  CHECK(slurp(tmp.path / "metrics.csv") == "epoch,train_loss\n1,0.5\n2,0.25\n");
}

TEST_CASE("issue 22 defect 4: file_digest is the SHA-256 of the content", "[reliability]") {
  TempDir tmp("digest");
  spit(tmp.path / "abc", "abc");
  spit(tmp.path / "empty", "");
  // FIPS 180-4's examples (and sha256sum's output).
  CHECK(ardent::io::file_digest(tmp.path / "abc") ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(ardent::io::file_digest(tmp.path / "empty") ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  std::string long_input(1'000'000, 'a');  // FIPS 180-2's third example, across many blocks
  spit(tmp.path / "million", long_input);
  CHECK(ardent::io::file_digest(tmp.path / "million") ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// ---- defect 6 and the kill-and-resume test ---------------------------------------------------------

namespace {

/// Runs the training child in `dir`; `env` is set for it; it is killed (SIGKILL) after
/// `kill_after_ms` if positive. Returns true if it ran to completion.
bool run_child(const fs::path& dir, const std::vector<std::string>& env, int kill_after_ms) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
    ::execl(ARDENT_KILL_RESUME_CHILD, ARDENT_KILL_RESUME_CHILD, dir.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  if (kill_after_ms > 0) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kill_after_ms);
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) && WEXITSTATUS(status) == 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE_FALSE((WIFEXITED(status) && WEXITSTATUS(status) != 0));  // a crash of its own is a failure
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/// The metrics file without its "seconds" column (the one value that differs between runs).
std::string metrics_without_seconds(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  std::string out;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream row(line);
    for (std::string cell; std::getline(row, cell, ',');) cells.push_back(cell);
    if (cells.size() > 2) cells.erase(cells.begin() + 2);
    for (std::size_t i = 0; i < cells.size(); ++i) out += (i ? "," : "") + cells[i];
    out += '\n';
  }
  return out;
}

}  // namespace

TEST_CASE(
    "kill and resume: runs killed at any moment, also while writing the checkpoint, end as an "
    "uninterrupted run",
    "[reliability][kill]") {
  TempDir tmp("kill");
  const auto straight = tmp.path / "straight";
  const auto killed = tmp.path / "killed";
  const auto started = std::chrono::steady_clock::now();
  REQUIRE(run_child(straight, {}, 0));
  const auto full_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
  const std::string expected_metrics = metrics_without_seconds(straight / "metrics.csv");
  REQUIRE(std::count(expected_metrics.begin(), expected_metrics.end(), '\n') == 5);  // header and 4 epochs

  // Forced kills: halfway through writing the checkpoint's temporary (the window in which the old
  // code had already appended the epoch's row), and right after the rename, before the row.
  CHECK_FALSE(run_child(killed, {"ARDENT_TEST_KILL_WRITING=checkpoint.pt"}, 0));
  CHECK_FALSE(run_child(killed, {"ARDENT_TEST_KILL_WRITTEN=checkpoint.pt"}, 0));
  CHECK(metrics_without_seconds(killed / "metrics.csv") != expected_metrics);
  CHECK_FALSE(run_child(killed, {"ARDENT_TEST_KILL_WRITING=checkpoint.pt"}, 0));
  // Random kills.
  std::mt19937 random(20261202);
  std::uniform_int_distribution<int> when(50, static_cast<int>(std::max<int64_t>(full_ms, 200)));
  for (int i = 0; i < 4; ++i) run_child(killed, {}, when(random));
  bool done = false;
  for (int i = 0; i < 10 && !done; ++i) done = run_child(killed, {}, 0);
  REQUIRE(done);
  CHECK(metrics_without_seconds(killed / "metrics.csv") == expected_metrics);
  const auto a = ardent::io::read_state_dict(straight / "final.pt");
  const auto b = ardent::io::read_state_dict(killed / "final.pt");
  REQUIRE(a.size() == b.size());
  for (const auto& item : a) CHECK(torch::equal(item.value(), b[item.key()]));
  for (const auto& entry : fs::directory_iterator(killed)) {
    INFO(entry.path());
    CHECK(entry.path().filename().string().find(".tmp") == std::string::npos);
  }
}
