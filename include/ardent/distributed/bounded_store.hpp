#pragma once
// Rendezvous-store operations with a deadline. LibTorch 1.13's c10d::TCPStore client waits for the
// server's reply without a time limit: its timeout covers connecting and wait(), not add, get or
// set. A rank 0 that is stopped (SIGSTOP), or a MASTER_PORT that another program serves, leaves
// them blocked for ever (977 s were observed with ARDENT_DIST_TIMEOUT=15). BoundedStore runs each
// operation on a thread of its own and gives up after the timeout with StoreNotResponding; the
// abandoned thread keeps the store alive and stays blocked until the process exits, and the store
// is not used again (its connection is in an unknown state of the protocol).

#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace ardent::distributed {

/// The store gave no answer within the timeout (or an earlier operation on it did not).
class StoreNotResponding : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class BoundedStore {
 public:
  BoundedStore() = default;
  BoundedStore(c10::intrusive_ptr<c10d::Store> store, std::chrono::milliseconds timeout)
      : store_(std::move(store)), timeout_(timeout) {}

  explicit operator bool() const { return store_.defined(); }

  /// Runs `operation(store)` and returns its result, or throws StoreNotResponding after the timeout;
  /// the operation's own exceptions pass through.
  template <typename Operation>
  auto operator()(Operation operation) const -> decltype(operation(std::declval<c10d::Store&>())) {
    using Result = decltype(operation(std::declval<c10d::Store&>()));
    if (lost_->load()) throw StoreNotResponding("an earlier operation on the store did not complete");
    auto task = std::make_shared<std::packaged_task<Result()>>(
        [store = store_, operation = std::move(operation)]() mutable { return operation(*store); });
    auto result = task->get_future();
    std::thread([task] { (*task)(); }).detach();
    if (result.wait_for(timeout_) != std::future_status::ready) {
      lost_->store(true);
      throw StoreNotResponding(fmt::format("no answer within {:.3g} s", static_cast<double>(timeout_.count()) / 1000));
    }
    return result.get();
  }

  int64_t add(const std::string& key, int64_t value) const {
    return (*this)([key, value](c10d::Store& s) { return s.add(key, value); });
  }
  std::vector<uint8_t> get(const std::string& key) const {
    return (*this)([key](c10d::Store& s) { return s.get(key); });
  }
  void set(const std::string& key, const std::vector<uint8_t>& value) const {
    (*this)([key, value](c10d::Store& s) { s.set(key, value); });
  }

  const c10::intrusive_ptr<c10d::Store>& store() const { return store_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  c10::intrusive_ptr<c10d::Store> store_;
  std::chrono::milliseconds timeout_{0};
  std::shared_ptr<std::atomic<bool>> lost_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace ardent::distributed
