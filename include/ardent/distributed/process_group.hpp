#pragma once
// The processes of a data-parallel run, on PyTorch's c10d engine (the one behind torch.distributed
// and DDP): Gloo for CPU tensors, NCCL for CUDA tensors where LibTorch was built with it.
//
// The world comes from torchrun's environment variables, so any launcher works unchanged:
//
//   RANK         this process, 0 <= RANK < WORLD_SIZE
//   WORLD_SIZE   number of processes
//   LOCAL_RANK   this process on its machine (optional; the CUDA device index)
//   MASTER_ADDR  host of rank 0, which serves the rendezvous (a c10d::TCPStore)
//   MASTER_PORT  its port
//
// Unset (or WORLD_SIZE=1), the world is this process alone and no c10d object is created.
// Under torchrun's default (static) rendezvous its agent already serves a store on MASTER_PORT and
// says so with TORCHELASTIC_USE_AGENT_STORE=True: every rank then joins that store, under the
// prefix /worker/attempt_<TORCHELASTIC_RESTART_COUNT> (as torch.distributed does), so that a
// restarted group starts with fresh keys.
// ARDENT_DIST_TIMEOUT (seconds, default 300) bounds the rendezvous and every collective: a rank
// that died or hangs makes the others fail with an error instead of waiting for ever, and so does a
// rank 0 that stops answering (every store operation is bounded: bounded_store.hpp).

#include "ardent/core/check.hpp"
#include "ardent/distributed/bounded_store.hpp"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/torch.h>

#include <fmt/format.h>
#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace ardent::distributed {

/// torchrun's variables, read and checked.
struct Environment {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;
  /// torchrun's agent serves the rendezvous store (TORCHELASTIC_USE_AGENT_STORE=True).
  bool agent_store = false;
  /// How many times torchrun restarted the group (TORCHELASTIC_RESTART_COUNT).
  int64_t restart_count = 0;
};

namespace detail {

inline std::optional<std::string> variable(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

inline int64_t integer_variable(const char* name, int64_t fallback, int64_t low, int64_t high) {
  const auto text = variable(name);
  if (!text) return fallback;
  std::size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(*text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  TORCH_CHECK(used == text->size() && value >= low && value <= high, "ardent::distributed: environment variable ", name,
              " is '", *text, "', expected an integer in [", low, ", ", high, "]");
  return value;
}

}  // namespace detail

/// The environment's world; throws with the variable's name when one is malformed or inconsistent.
inline Environment environment() {
  Environment e;
  e.world_size = detail::integer_variable("WORLD_SIZE", 1, 1, 1 << 20);
  e.rank = detail::integer_variable("RANK", 0, 0, (1 << 20) - 1);
  e.local_rank = detail::integer_variable("LOCAL_RANK", 0, 0, (1 << 20) - 1);
  TORCH_CHECK(e.rank < e.world_size, "ardent::distributed: environment variable RANK is ", e.rank,
              ", expected < WORLD_SIZE (", e.world_size, ")");
  if (e.world_size > 1) {
    TORCH_CHECK(detail::variable("RANK").has_value(), "ardent::distributed: WORLD_SIZE is ", e.world_size,
                " but RANK is unset; set RANK (0 .. ", e.world_size - 1,
                ") for every process or use scripts/launch.sh");
    e.master_addr = detail::variable("MASTER_ADDR").value_or(e.master_addr);
    e.master_port = detail::integer_variable("MASTER_PORT", e.master_port, 1, 65535);
    e.agent_store = detail::variable("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True";
    e.restart_count = detail::integer_variable("TORCHELASTIC_RESTART_COUNT", 0, 0, 1 << 20);
  }
  return e;
}

struct ProcessGroupOptions {
  /// Bound on the rendezvous and on every collective.
  TORCH_ARG(std::chrono::milliseconds, timeout) = std::chrono::seconds(300);
  /// Seconds between the liveness beats each rank posts to the rendezvous store (0: none); on a
  /// failed collective they name the ranks that stopped.
  TORCH_ARG(double, heartbeat_seconds) = 1.0;
};

/// The timeout from ARDENT_DIST_TIMEOUT (seconds), or the default.
inline ProcessGroupOptions options_from_environment() {
  ProcessGroupOptions options;
  const auto seconds = detail::integer_variable("ARDENT_DIST_TIMEOUT", 300, 1, 7 * 24 * 3600);
  return options.timeout(std::chrono::seconds(seconds));
}

/// A set of processes that run collectives together. A default-constructed group is the
/// one-process world: every collective is then the identity and nothing touches c10d.
class ProcessGroup {
 public:
  ProcessGroup() = default;

  /// Joins the world that `environment` describes (rendezvous on MASTER_ADDR:MASTER_PORT).
  explicit ProcessGroup(const Environment& environment, ProcessGroupOptions options = options_from_environment())
      : rank_(environment.rank), size_(environment.world_size), options_(options) {
    if (size_ == 1) return;
    const auto where = fmt::format("{}:{}", environment.master_addr, environment.master_port);
    check_resolves(environment.master_addr);
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<std::uint16_t>(environment.master_port);
    store_options.isServer = rank_ == 0 && !environment.agent_store;
    store_options.numWorkers = static_cast<std::size_t>(size_);
    store_options.waitWorkers = false;
    store_options.timeout = options_.timeout();
    try {
      store_ = attempt(environment, c10::make_intrusive<c10d::TCPStore>(environment.master_addr, store_options));
    } catch (const std::exception& e) {
      TORCH_CHECK(false, "ardent::distributed: rank ", rank_, " of ", size_, ": ",
                  store_options.isServer
                      ? "cannot serve the rendezvous on port " + std::to_string(environment.master_port) +
                            " (in use? choose another MASTER_PORT)"
                      : "cannot reach the rendezvous at " + where + " within " +
                            std::to_string(options_.timeout().count() / 1000) +
                            " s (is rank 0 running, MASTER_ADDR/MASTER_PORT right?)",
                  ": ", first_line(e.what()));
    }
    rendezvous_ = BoundedStore(store_, options_.timeout());
    check_world_size(where);
    auto gloo = c10d::ProcessGroupGloo::Options::create(options_.timeout());
    gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(gloo_host(environment.master_addr)));
    gloo->threads = 2;
    try {
      backend_ = c10::make_intrusive<c10d::ProcessGroupGloo>(c10::make_intrusive<c10d::PrefixStore>("gloo", store_),
                                                             static_cast<int>(rank_), static_cast<int>(size_), gloo);
    } catch (const std::exception& e) {
      TORCH_CHECK(false, "ardent::distributed: rank ", rank_, " of ", size_,
                  ": connecting to the other ranks failed: ", first_line(e.what()), peer_report());
    }
#if defined(USE_C10D_NCCL)
    if (torch::cuda::is_available()) {
      auto nccl = c10d::ProcessGroupNCCL::Options::create();
      nccl->timeout = options_.timeout();
      nccl_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(c10::make_intrusive<c10d::PrefixStore>("nccl", store_),
                                                          static_cast<int>(rank_), static_cast<int>(size_), nccl);
    }
#endif
    start_heartbeat(environment);
  }

  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;
  ~ProcessGroup() {
    // Rank 0 hosts the rendezvous store: it stays until every rank has left (at most 30 s), so
    // that no rank loses the store or its connections while it is still finishing.
    if (rendezvous_ && !failed_) {
      try {
        rendezvous_.add("ardent/left", 1);
        const auto deadline = std::chrono::steady_clock::now() +
                              std::min<std::chrono::milliseconds>(options_.timeout(), std::chrono::seconds(30));
        while (rank_ == 0 && rendezvous_.add("ardent/left", 0) < size_ && std::chrono::steady_clock::now() < deadline) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      } catch (const std::exception&) {
        // leaving anyway
      }
    }
    if (heartbeat_.joinable()) {
      {
        const std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
      }
      wake_.notify_all();
      heartbeat_.join();
    }
  }

  int64_t rank() const { return rank_; }
  int64_t size() const { return size_; }
  /// Rank 0: the one that prints, writes reports and checkpoints.
  bool is_main() const { return rank_ == 0; }
  std::chrono::milliseconds timeout() const { return options_.timeout(); }

  /// The c10d group for `tensor`'s device (nullptr in a one-process world).
  c10::intrusive_ptr<c10d::ProcessGroup> backend(const torch::Tensor& tensor = {}) const {
#if defined(USE_C10D_NCCL)
    if (nccl_ && tensor.defined() && tensor.is_cuda()) return nccl_;
#endif
    (void)tensor;
    return backend_;
  }

  /// Starts an all-reduce (a sum unless `op` says otherwise) of one tensor in place; wait() it with
  /// `wait`.
  c10::intrusive_ptr<c10d::Work> all_reduce_async(torch::Tensor& tensor,
                                                  c10d::ReduceOp op = c10d::ReduceOp::SUM) const {
    std::vector<torch::Tensor> one{tensor};
    c10d::AllreduceOptions options;
    options.reduceOp = op;
    ++collectives_;
    return backend(tensor)->allreduce(one, options);
  }

  /// Waits for `work`; on failure or timeout throws naming this rank, the operation and the ranks
  /// that stopped beating.
  void wait(const c10::intrusive_ptr<c10d::Work>& work, std::string_view what) const {
    try {
      work->wait(options_.timeout());
    } catch (const std::exception& e) {
      failed_ = true;
      TORCH_CHECK(false, "ardent::distributed: rank ", rank_, " of ", size_, ": ", what,
                  " failed: ", first_line(e.what()), peer_report());
    }
  }

  /// Sums `tensor` over the ranks, in place.
  void all_reduce_sum(torch::Tensor& tensor, std::string_view what = "all_reduce") const {
    if (size_ == 1) return;
    wait(all_reduce_async(tensor), what);
  }

  /// Sums scalars over the ranks (counts, losses).
  std::vector<double> all_reduce_sum(std::vector<double> values, std::string_view what = "all_reduce") const {
    if (size_ == 1 || values.empty()) return values;
    auto t = torch::tensor(values, torch::kDouble);
    all_reduce_sum(t, what);
    return {t.data_ptr<double>(), t.data_ptr<double>() + t.numel()};
  }

  /// Copies rank `root`'s `tensors` to every rank, in place (flattened into one message per dtype).
  void broadcast(const std::vector<torch::Tensor>& tensors, int64_t root = 0,
                 std::string_view what = "broadcast") const {
    if (size_ == 1 || tensors.empty()) return;
    torch::NoGradGuard no_grad;
    std::vector<bool> done(tensors.size(), false);
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      if (done[i]) continue;
      std::vector<std::size_t> group;
      for (std::size_t j = i; j < tensors.size(); ++j) {
        if (!done[j] && tensors[j].scalar_type() == tensors[i].scalar_type() &&
            tensors[j].device() == tensors[i].device()) {
          group.push_back(j);
          done[j] = true;
        }
      }
      std::vector<torch::Tensor> flat;
      for (const auto j : group) flat.push_back(tensors[j].detach().reshape(-1));
      std::vector<torch::Tensor> message{torch::cat(flat)};
      c10d::BroadcastOptions options;
      options.rootRank = static_cast<int>(root);
      ++collectives_;
      wait(backend(message[0])->broadcast(message, options), what);
      int64_t offset = 0;
      for (const auto j : group) {
        const auto n = tensors[j].numel();
        tensors[j].detach().copy_(message[0].narrow(0, offset, n).view_as(tensors[j]));
        offset += n;
      }
    }
  }

  /// Waits until every rank gets here.
  void barrier(std::string_view what = "barrier") const {
    if (size_ == 1) return;
    auto token = torch::zeros({1});
    all_reduce_sum(token, what);
  }

 private:
  static std::string first_line(const std::string& text) {
    const auto end = text.find('\n');
    return end == std::string::npos ? text : text.substr(0, end);
  }

  /// The agent's store seen under this attempt's prefix; our own store as it is.
  static c10::intrusive_ptr<c10d::Store> attempt(const Environment& environment,
                                                 c10::intrusive_ptr<c10d::Store> store) {
    if (!environment.agent_store) return store;
    return c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(environment.restart_count),
                                                  std::move(store));
  }

  /// Gloo binds to the address this host reaches the master by (loopback for a local run).
  static std::string gloo_host(const std::string& master) {
    if (master == "127.0.0.1" || master == "localhost" || master == "::1") return master;
    if (const auto host = detail::variable("ARDENT_GLOO_HOST")) return *host;
    char name[256] = {};
    if (gethostname(name, sizeof(name) - 1) == 0) return name;
    return "127.0.0.1";
  }

  /// Every rank posts its WORLD_SIZE under its RANK and reads everyone's: a mismatch, a duplicate
  /// RANK or a rank that never comes each give their own message.
  void check_world_size(const std::string& where) {
    try {
      check_world_size_unbounded(where);
    } catch (const StoreNotResponding& e) {
      failed_ = true;
      TORCH_CHECK(false, "ardent::distributed: rank ", rank_, " of ", size_, ": the rendezvous store at ", where,
                  " is not responding (", e.what(),
                  "): rank 0 is stopped or hung, or MASTER_PORT belongs to another "
                  "program");
    }
  }

  void check_world_size_unbounded(const std::string& where) {
    const auto me = std::to_string(rank_);
    TORCH_CHECK(rendezvous_.add("ardent/rank/" + me, 1) == 1, "ardent::distributed: RANK ", rank_,
                " joined the rendezvous at ", where, " twice; every process needs its own RANK");
    const auto text = std::to_string(size_);
    rendezvous_.set("ardent/world_size/" + me, std::vector<uint8_t>(text.begin(), text.end()));
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    const auto process = fmt::format("{} {}", host, ::getpid());  // for peer_report's diagnosis
    rendezvous_.set("ardent/process/" + me, std::vector<uint8_t>(process.begin(), process.end()));
    for (int64_t r = 0; r < size_; ++r) {
      const auto key = "ardent/world_size/" + std::to_string(r);
      try {
        const auto timeout = options_.timeout();
        // Bounded twice: the store's own wait, and BoundedStore's deadline a little later.
        BoundedStore(store_,
                     timeout + std::chrono::seconds(5))([key, timeout](c10d::Store& s) { s.wait({key}, timeout); });
      } catch (const std::exception&) {
        TORCH_CHECK(false, "ardent::distributed: rank ", rank_, ": rank ", r, " of WORLD_SIZE=", size_,
                    " did not join the rendezvous at ", where, " within ", options_.timeout().count() / 1000, " s");
      }
      const auto value = rendezvous_.get(key);
      const std::string theirs(value.begin(), value.end());
      TORCH_CHECK(theirs == text, "ardent::distributed: rank ", rank_, ": WORLD_SIZE is ", size_, " here but ", theirs,
                  " on rank ", r, " (rendezvous at ", where, "); every rank needs the same WORLD_SIZE");
    }
  }

  /// A thread that increments "ardent/beat/<rank>" on its own store connection, and brings
  /// "ardent/at/<rank>" up to the number of collectives this rank has started (which names a rank
  /// that is alive but stuck before a collective the others wait in).
  void start_heartbeat(const Environment& environment) {
    if (options_.heartbeat_seconds() <= 0) return;
    c10d::TCPStoreOptions o;
    o.port = static_cast<std::uint16_t>(environment.master_port);
    o.isServer = false;
    o.waitWorkers = false;
    o.timeout = std::chrono::seconds(5);
    beats_ = BoundedStore(attempt(environment, c10::make_intrusive<c10d::TCPStore>(environment.master_addr, o)),
                          o.timeout);
    const auto period = std::chrono::duration<double>(options_.heartbeat_seconds());
    heartbeat_ = std::thread([this, period] {
      std::unique_lock<std::mutex> lock(mutex_);
      int64_t posted = 0;
      while (!stopping_) {
        try {
          beats_.add("ardent/beat/" + std::to_string(rank_), 1);
          const int64_t started = collectives_.load();
          if (started != posted) beats_.add("ardent/at/" + std::to_string(rank_), started - posted);
          posted = started;
        } catch (const std::exception&) {
          return;  // the store (rank 0) is gone or stopped; the next collective reports it
        }
        wake_.wait_for(lock, period, [this] { return stopping_; });
      }
    });
  }

  /// " (rank 1 stopped: no heartbeat for 3 s)" etc., from the beats; empty when unknown.
  std::string peer_report() const {
    if (!beats_) return "";
    try {
      std::vector<int64_t> before(static_cast<std::size_t>(size_));
      for (int64_t r = 0; r < size_; ++r) before[r] = beats_.add("ardent/beat/" + std::to_string(r), 0);
      const auto wait = std::chrono::duration<double>(3 * options_.heartbeat_seconds() + 1);
      std::this_thread::sleep_for(wait);
      std::string stopped;
      for (int64_t r = 0; r < size_; ++r) {
        if (r != rank_ && beats_.add("ardent/beat/" + std::to_string(r), 0) == before[r]) {
          stopped += fmt::format("; rank {} {} (no heartbeat for {:.0f} s)", r, diagnosis(r), wait.count());
        }
      }
      if (stopped.empty()) {
        // All alive: the ranks that have started fewer collectives than this one never reached it.
        const int64_t mine = collectives_.load();
        std::string behind;
        for (int64_t r = 0; r < size_; ++r) {
          const auto at = beats_.add("ardent/at/" + std::to_string(r), 0);
          if (r != rank_ && at < mine)
            behind += fmt::format("{}rank {} (at collective {})", behind.empty() ? "" : ", ", r, at);
        }
        if (!behind.empty()) {
          return fmt::format(
              "; {} alive but hung: not at this collective ({} here) after the timeout (ARDENT_DIST_TIMEOUT={} s)",
              behind, mine, options_.timeout().count() / 1000);
        }
        return "; every other rank is alive, so one is hung or slower than the timeout (ARDENT_DIST_TIMEOUT=" +
               std::to_string(options_.timeout().count() / 1000) + " s)";
      }
      return stopped;
    } catch (const StoreNotResponding& e) {
      return fmt::format(
          "; the rendezvous store on rank 0 is not responding ({}): rank 0 is stopped (e.g. SIGSTOP) "
          "or hung",
          e.what());
    } catch (const std::exception&) {
      return "; the rendezvous store on rank 0 is unreachable: rank 0 died or was killed";
    }
  }

  /// Why rank `r` stopped beating, as far as this host can tell: a process on this machine is
  /// looked up by its pid (gone: died or was killed; state T: stopped, e.g. SIGSTOP or a debugger).
  std::string diagnosis(int64_t r) const {
    constexpr const char* unknown = "is not responding: it died, was killed, or is stopped";
    try {
      const auto value = rendezvous_.get("ardent/process/" + std::to_string(r));
      const std::string text(value.begin(), value.end());
      const auto space = text.rfind(' ');
      char host[256] = {};
      ::gethostname(host, sizeof(host) - 1);
      if (space == std::string::npos || text.substr(0, space) != host) return unknown;
      const auto pid = static_cast<pid_t>(std::stol(text.substr(space + 1)));
      if (::kill(pid, 0) != 0 && errno == ESRCH) return "died or was killed";
      std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
      std::string line;
      std::getline(stat, line);
      const auto close = line.rfind(')');  // "pid (name) state ..."
      if (close != std::string::npos && close + 2 < line.size() && (line[close + 2] == 'T' || line[close + 2] == 't'))
        return "is stopped (SIGSTOP or a debugger): not responding";
      return "is alive but not responding";
    } catch (const std::exception&) {
      return unknown;
    }
  }

  /// A MASTER_ADDR that does not resolve gets its own message (else: a connection time-out on one
  /// rank and a port "in use" on the other).
  void check_resolves(const std::string& host) const {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int code = ::getaddrinfo(host.c_str(), nullptr, &hints, &found);
    if (found != nullptr) ::freeaddrinfo(found);
    TORCH_CHECK(code == 0, "ardent::distributed: rank ", rank_, " of ", size_, ": MASTER_ADDR '", host,
                "' does not resolve to an address (", ::gai_strerror(code), ")");
  }

  int64_t rank_ = 0;
  int64_t size_ = 1;
  ProcessGroupOptions options_;
  c10::intrusive_ptr<c10d::Store> store_;
  BoundedStore rendezvous_;  // store_, each operation bounded by the timeout
  BoundedStore beats_;       // the heartbeat's own connection
  c10::intrusive_ptr<c10d::ProcessGroup> backend_;
#if defined(USE_C10D_NCCL)
  c10::intrusive_ptr<c10d::ProcessGroup> nccl_;
#endif
  std::thread heartbeat_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  mutable std::atomic<bool> failed_{false};
  mutable std::atomic<int64_t> collectives_{0};  // started by this rank
};

/// Throws on every rank unless all ranks hold the same `value`.
inline void check_same(const ProcessGroup& group, int64_t value, std::string_view what) {
  if (group.size() == 1) return;
  const auto sums = group.all_reduce_sum({static_cast<double>(value), static_cast<double>(value) * value});
  const double n = static_cast<double>(group.size());
  TORCH_CHECK(sums[0] * sums[0] == sums[1] * n, "ardent::distributed: rank ", group.rank(), ": ranks disagree on ",
              what, " (", value, " here)");
}

/// The mean of a per-rank mean over all ranks' samples: sum_r mean_r n_r / sum_r n_r.
inline double mean_over_ranks(const ProcessGroup& group, double mean, int64_t samples) {
  const auto sums = group.all_reduce_sum({mean * static_cast<double>(samples), static_cast<double>(samples)});
  return sums[1] > 0 ? sums[0] / sums[1] : 0.0;
}

/// The process's world from the environment, joined on first use and kept until exit (as
/// torch.distributed's default group).
inline ProcessGroup& world() {
  static ProcessGroup group(environment());
  return group;
}

}  // namespace ardent::distributed
