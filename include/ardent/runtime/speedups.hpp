#pragma once
// Switches for the optimisations of the attack's passes through the model (docs/performance.md).
// Each keeps logits and input gradients within 1e-5 (relative) of the plain computation
// (tests/runtime_test.cpp), so all are on by default; switching one off measures it, or
// reproduces the plain computation. The switches are per thread: SpeedupsGuard sets them for a
// scope on the calling thread (the one that runs the attack and the models' forward passes), and
// other threads keep theirs. reuse_memory wraps LibTorch's CPU allocator for an attack's scope
// only (ardent/runtime/memory.hpp); the process-wide allocator setting is a separate, explicit
// opt-in (keep_freed_memory).

namespace ardent::runtime {

struct Speedups {
  /// Attacks take the model's parameters out of autograd: backward computes the input gradient only.
  bool freeze_parameters = true;
  /// models::conv_bn folds an eval-mode BatchNorm into the convolution before it whenever no gradient
  /// to their parameters is needed (attacks, a teacher without gradients, evaluation).
  bool fold_batch_norm = true;
  /// models::conv2d computes the input gradient of a stride-1 depthwise convolution as a forward
  /// depthwise convolution with the flipped kernel (layer by layer, ATen's CPU backward is up
  /// to 10x slower on some shapes).
  bool depthwise_input_gradient = true;
  /// Attacks pass 4-d inputs to the model in channels-last (NHWC) layout, where oneDNN's
  /// convolutions, depthwise ones above all, are faster.
  bool channels_last = true;
  /// A Linf step is one add and one clamp against bounds computed once per attack,
  /// max(x - eps, lo) <= x' <= min(x + eps, hi), instead of a projection and a box clamp.
  bool fused_linf_step = true;
  /// Attacks reuse the large blocks their passes free (runtime::MemoryReuseScope): no page fault
  /// per 4 KiB of activations at every step, and nothing held once the attack returns.
  bool reuse_memory = true;
};

/// The calling thread's switches (each thread starts with every switch on).
inline Speedups& speedups() {
  thread_local Speedups settings;
  return settings;
}

/// Sets the calling thread's switches for a scope and restores the previous ones on exit.
class SpeedupsGuard {
 public:
  explicit SpeedupsGuard(Speedups settings) : saved_(speedups()) { speedups() = settings; }
  SpeedupsGuard(const SpeedupsGuard&) = delete;
  SpeedupsGuard& operator=(const SpeedupsGuard&) = delete;
  SpeedupsGuard(SpeedupsGuard&&) = delete;
  SpeedupsGuard& operator=(SpeedupsGuard&&) = delete;
  ~SpeedupsGuard() { speedups() = saved_; }

 private:
  Speedups saved_;
};

/// Every switch off: the plain computation.
inline constexpr Speedups no_speedups{false, false, false, false, false, false};

}  // namespace ardent::runtime
