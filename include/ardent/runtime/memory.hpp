#pragma once
// Reusing freed memory, so that an attack's fixed-shape passes do not page-fault their
// activations in at every step.
//
// glibc's malloc serves every block above 32 MiB (ResNet18's and MobileNetV2's activations at
// batch 128 are 20-80 MiB) with a fresh mmap and unmaps it on free; the next allocation of the
// same block then takes a page fault on every 4 KiB page and the kernel zeroes each one. An
// attack allocates the same activations at every step, so on the CPU that costs as much as the
// arithmetic (2.25 million page faults in one MobileNetV2 PGD benchmark, docs/performance.md).
//
// Two remedies, of different reach:
// - MemoryReuseScope (on in every attack, Speedups::reuse_memory): for the scope of an attack,
//   LibTorch's CPU allocator is wrapped by a cache that keeps freed blocks of 256 KiB and more
//   and hands them back for the next request of the same size. When the outermost scope ends the
//   previous allocator is back and every cached block is returned to the system: the attack holds
//   at most its own working set of large blocks, and only while it runs. Blocks still in use when
//   the scope ends (the attack's result) are freed normally later.
// - keep_freed_memory(): glibc told to keep freed memory for good (no mmap for large blocks, no
//   trimming below 2 GiB), which also speeds up the passes outside attacks (the training step).
//   It changes the host program's allocator for good, so the library never calls it: a program
//   opts in once at start-up.

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <climits>
#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "ardent/runtime/speedups.hpp"

namespace ardent::runtime {

/// Makes glibc's malloc keep freed memory for reuse (process-wide, not undone); returns whether it
/// could. An explicit opt-in for programs; calling it again is harmless.
inline bool keep_freed_memory() {
#if defined(__GLIBC__)
  return mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
#else
  return false;
#endif
}

namespace detail {

/// The cache behind MemoryReuseScope: an at::Allocator that forwards small requests to the
/// allocator it replaced and serves large ones from blocks freed earlier in the scope (same size).
/// Blocks are the replaced allocator's own (its raw_allocate), so its raw_deleter frees any of
/// them: memory that oneDNN obtains through raw_allocate and frees through raw_deleter is freed
/// normally, never cached. One per process, never destroyed (a block may be freed at exit).
class ReusingCpuAllocator final : public c10::Allocator {
 public:
  /// Smaller blocks come from malloc's heap, which reuses them without page faults.
  static constexpr std::size_t min_cached_bytes = 256 * 1024;

  static ReusingCpuAllocator& instance() {
    static auto* allocator = new ReusingCpuAllocator;  // NOLINT(cppcoreguidelines-owning-memory)
    return *allocator;
  }

  /// Opens a scope; the first one installs the cache as LibTorch's CPU allocator.
  void enter() {
    std::lock_guard lock(mutex_);
    if (depth_++ > 0) return;
    auto* current = c10::GetCPUAllocator();
    if (current == this) return;
    replaced_ = current;
    // Priority 0, LibTorch's own default: an allocator a program installed with a higher priority
    // stays, and the cache then simply is not used.
    c10::SetCPUAllocator(this, 0);
  }

  /// Closes a scope; the last one puts the replaced allocator back and frees every cached block.
  void leave() {
    std::lock_guard lock(mutex_);
    if (--depth_ > 0) return;
    if (c10::GetCPUAllocator() == this) c10::SetCPUAllocator(replaced_, 0);
    for (auto& [size, blocks] : free_) {
      for (void* block : blocks) replaced_->raw_deleter()(block);
    }
    free_.clear();
    cached_bytes_ = 0;
    // A block still in use is freed directly when it comes back (no entry: nothing to cache it
    // under); raw allocations oneDNN freed through raw_deleter leave no stale entries behind.
    in_use_.clear();
  }

  c10::DataPtr allocate(std::size_t size) const override {
    if (size < min_cached_bytes) return replaced_->allocate(size);
    void* block = nullptr;
    {
      std::lock_guard lock(mutex_);
      auto found = free_.find(size);
      if (found != free_.end() && !found->second.empty()) {
        block = found->second.back();
        found->second.pop_back();
        cached_bytes_ -= size;
      }
    }
    if (block == nullptr) block = replaced_->raw_allocate(size);
    {
      std::lock_guard lock(mutex_);
      in_use_[block] = size;
    }
    return {block, block, &recycle, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return replaced_->raw_deleter(); }

  /// Bytes of freed blocks held for reuse now (0 outside every scope).
  std::size_t cached_bytes() const {
    std::lock_guard lock(mutex_);
    return cached_bytes_;
  }

 private:
  ReusingCpuAllocator() : replaced_(c10::GetCPUAllocator()) {}

  /// The deleter of every large block handed out: back to the cache inside a scope, else freed.
  static void recycle(void* block) { instance().give_back(block); }

  void give_back(void* block) const {
    std::lock_guard lock(mutex_);
    auto found = in_use_.find(block);
    const std::size_t size = found == in_use_.end() ? 0 : found->second;
    if (found != in_use_.end()) in_use_.erase(found);
    if (depth_ > 0 && size > 0) {
      free_[size].push_back(block);
      cached_bytes_ += size;
    } else {
      replaced_->raw_deleter()(block);
    }
  }

  mutable std::mutex mutex_;
  c10::Allocator* replaced_;
  int depth_ = 0;
  mutable std::unordered_map<std::size_t, std::vector<void*>> free_;
  mutable std::unordered_map<void*, std::size_t> in_use_;
  mutable std::size_t cached_bytes_ = 0;
};

}  // namespace detail

/// For its lifetime, large CPU blocks that LibTorch frees are kept and reused for the next request
/// of the same size; when the outermost scope ends they go back to the system and LibTorch's
/// allocator is as it was. Every attack opens one (attacks::AttackScope) unless
/// Speedups::reuse_memory is off. Scopes nest and may be open on several threads at once; while
/// one is open, every thread's large allocations go through the cache.
class MemoryReuseScope {
 public:
  MemoryReuseScope() : active_(speedups().reuse_memory) {
    if (active_) detail::ReusingCpuAllocator::instance().enter();
  }
  MemoryReuseScope(const MemoryReuseScope&) = delete;
  MemoryReuseScope& operator=(const MemoryReuseScope&) = delete;
  MemoryReuseScope(MemoryReuseScope&&) = delete;
  MemoryReuseScope& operator=(MemoryReuseScope&&) = delete;
  ~MemoryReuseScope() {
    if (active_) detail::ReusingCpuAllocator::instance().leave();
  }

  /// Bytes held for reuse by the open scopes (0 when none is open).
  static std::size_t cached_bytes() { return detail::ReusingCpuAllocator::instance().cached_bytes(); }

 private:
  bool active_;
};

}  // namespace ardent::runtime
