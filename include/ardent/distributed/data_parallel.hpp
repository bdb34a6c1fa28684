#pragma once
// DataParallel: makes a model train data-parallel across the ranks of a ProcessGroup, as PyTorch's
// DistributedDataParallel does, without changing the code that trains it:
//
//   ardent::distributed::DataParallel parallel(world, trainer.parameters(), {student.ptr()});
//   trainer.step(x_shard, y_shard, optimizer);   // backward() returns with averaged gradients
//
// - At construction, rank 0's parameters and buffers are copied to every rank.
// - Each parameter gets an autograd hook. Gradients are copied into flat buckets (about
//   `bucket_bytes` each, in reverse parameter order, the order backward produces them); a full
//   bucket starts its all-reduce at once, on c10d's threads, while backward continues. At the end
//   of every backward pass that reached the parameters (an autograd engine callback), the last
//   buckets are sent, all are awaited and every parameter's .grad becomes the mean over the ranks:
//       g = (1 / W) sum_r g_r,
//   which, with equal per-rank batches, is the gradient of the mean loss over the global batch.
// - Parameters that took no part in a backward count as zero gradients (all ranks must send the
//   same buckets in the same order).
// - Buffers (BatchNorm running statistics) are per-rank during the step and rank 0's are copied to
//   every rank after each backward (DDP's broadcast_buffers): BatchNorm normalises each rank's
//   batch by its own statistics, as DDP does.
// - Gradients the attacks take with respect to the input (torch::autograd::grad) never reach the
//   parameters' hooks, so attacks need no communication; neither does a teacher (not registered).
//
// Why hooks and not c10d::Reducer: reducer.hpp includes a header of distributed autograd that
// Debian's libtorch-dev does not ship, so it cannot be compiled against the system LibTorch. One
// path (hooks + c10d all-reduce) is used everywhere rather than two that would need testing apart.
//
// In a one-process world the object does nothing (no hooks, no copies).

#include "ardent/distributed/process_group.hpp"

#include <torch/csrc/autograd/engine.h>

#include <memory>
#include <vector>

namespace ardent::distributed {

struct DataParallelOptions {
  /// Target size of one all-reduce message.
  TORCH_ARG(int64_t, bucket_bytes) = int64_t{1} << 20;
  /// Copy rank 0's buffers (BatchNorm statistics) to every rank after each backward.
  TORCH_ARG(bool, broadcast_buffers) = true;
};

class DataParallel {
 public:
  /// `parameters`: what the optimizer trains (student and connectors); `modules`: whose buffers
  /// are broadcast (the same modules). The group must outlive this object.
  DataParallel(const ProcessGroup& group, std::vector<torch::Tensor> parameters,
               const std::vector<std::shared_ptr<torch::nn::Module>>& modules, DataParallelOptions options = {})
      : group_(group), options_(options) {
    if (options_.bucket_bytes() < 1) {
      fail_argument("ardent::distributed::DataParallel", "options.bucket_bytes",
                    fmt::format("is {}, expected >= 1", options_.bucket_bytes()));
    }
    if (group_.size() == 1) return;
    for (auto& p : parameters) {
      if (p.requires_grad()) parameters_.push_back(p);
    }
    for (const auto& m : modules) {
      for (auto& b : m->buffers()) buffers_.push_back(b);
    }
    // Every rank starts from rank 0's model; the sizes must agree first, or the broadcast would
    // silently mix up tensors.
    std::vector<double> shape{static_cast<double>(parameters_.size())};
    for (const auto& p : parameters_) shape.push_back(static_cast<double>(p.numel()));
    auto mine = torch::tensor(shape, torch::kDouble);
    auto sum = mine.clone();
    group_.all_reduce_sum(sum, "DataParallel: comparing the models");
    TORCH_CHECK(torch::equal(sum, mine * static_cast<double>(group_.size())),
                "ardent::distributed::DataParallel: rank ", group_.rank(),
                ": the ranks' models differ in their parameters (", parameters_.size(),
                " trainable tensors here); every rank must build the same model");
    std::vector<torch::Tensor> state(parameters_.begin(), parameters_.end());
    state.insert(state.end(), buffers_.begin(), buffers_.end());
    group_.broadcast(state, 0, "DataParallel: broadcasting rank 0's parameters and buffers");
    make_buckets();
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
      hooks_.push_back(parameters_[i].register_hook([this, i](const torch::Tensor& grad) { on_gradient(i, grad); }));
    }
  }

  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;
  ~DataParallel() {
    for (std::size_t i = 0; i < hooks_.size(); ++i) parameters_[i].remove_hook(hooks_[i]);
  }

  const ProcessGroup& group() const { return group_; }
  /// Bucket sizes in elements, in the order they are sent.
  std::vector<int64_t> bucket_sizes() const {
    std::vector<int64_t> sizes;
    for (const auto& b : buckets_) sizes.push_back(b.buffer.numel());
    return sizes;
  }
  /// Seconds spent waiting for all-reduces at the end of backward passes so far (the part of the
  /// communication that backward did not hide).
  double wait_seconds() const { return wait_seconds_; }

 private:
  struct Bucket {
    std::vector<std::size_t> parameters;
    torch::Tensor buffer;
    int64_t ready = 0;
    c10::intrusive_ptr<c10d::Work> work;
  };

  void make_buckets() {
    int64_t bytes = 0;
    slot_.resize(parameters_.size());
    for (std::size_t k = parameters_.size(); k-- > 0;) {
      const auto& p = parameters_[k];
      const bool fits = !buckets_.empty() && bytes + static_cast<int64_t>(p.nbytes()) <= options_.bucket_bytes() &&
                        buckets_.back().buffer.scalar_type() == p.scalar_type() &&
                        buckets_.back().buffer.device() == p.device();
      if (!fits) {
        buckets_.push_back({{}, torch::empty({0}, p.options()), 0, {}});
        bytes = 0;
      }
      auto& b = buckets_.back();
      slot_[k] = {buckets_.size() - 1, b.buffer.numel()};
      b.parameters.push_back(k);
      b.buffer = torch::empty({b.buffer.numel() + p.numel()}, p.options().requires_grad(false));
      bytes += static_cast<int64_t>(p.nbytes());
    }
    seen_.assign(parameters_.size(), false);
  }

  torch::Tensor slice(std::size_t k) {
    const auto [b, offset] = slot_[k];
    return buckets_[b].buffer.narrow(0, offset, parameters_[k].numel());
  }

  void on_gradient(std::size_t k, const torch::Tensor& grad) {
    if (!active_) {
      active_ = true;
      next_ = 0;
      for (auto& b : buckets_) b.ready = 0;
      seen_.assign(seen_.size(), false);
      torch::autograd::Engine::get_default_engine().queue_callback([this] { finish(); });
    }
    const auto b = slot_[k].first;
    TORCH_CHECK(!seen_[k] || b >= next_, "ardent::distributed::DataParallel: parameter ", k,
                " received a second gradient in one backward pass after its bucket was sent");
    torch::NoGradGuard no_grad;
    if (seen_[k]) {
      slice(k).add_(grad.reshape(-1));
    } else {
      slice(k).copy_(grad.reshape(-1));
      seen_[k] = true;
      ++buckets_[b].ready;
    }
    // Buckets go out in a fixed order on every rank (Gloo matches collectives by order).
    while (next_ < buckets_.size() &&
           buckets_[next_].ready == static_cast<int64_t>(buckets_[next_].parameters.size())) {
      launch(next_++);
    }
  }

  void launch(std::size_t b) { buckets_[b].work = group_.all_reduce_async(buckets_[b].buffer); }

  void finish() {
    active_ = false;
    torch::NoGradGuard no_grad;
    for (; next_ < buckets_.size(); ++next_) {
      for (const auto k : buckets_[next_].parameters) {
        if (!seen_[k]) slice(k).zero_();
      }
      launch(next_);
    }
    const auto start = std::chrono::steady_clock::now();
    for (auto& b : buckets_) {
      group_.wait(b.work, "DataParallel: gradient all_reduce");
      b.work.reset();
      b.buffer.div_(static_cast<double>(group_.size()));
    }
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (std::size_t k = 0; k < parameters_.size(); ++k) {
      auto& p = parameters_[k];
      const auto mean = slice(k).view_as(p);
      if (p.grad().defined()) {
        p.mutable_grad().copy_(mean);
      } else {
        p.mutable_grad() = mean.clone();
      }
    }
    if (options_.broadcast_buffers() && !buffers_.empty()) {
      group_.broadcast(buffers_, 0, "DataParallel: broadcasting rank 0's buffers");
    }
  }

  const ProcessGroup& group_;
  DataParallelOptions options_;
  std::vector<torch::Tensor> parameters_;
  std::vector<torch::Tensor> buffers_;
  std::vector<Bucket> buckets_;
  std::vector<std::pair<std::size_t, int64_t>> slot_;  // (bucket, offset) of each parameter
  std::vector<bool> seen_;
  std::vector<unsigned> hooks_;
  std::size_t next_ = 0;
  bool active_ = false;
  double wait_seconds_ = 0;
};

}  // namespace ardent::distributed
