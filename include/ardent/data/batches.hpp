#pragma once
// ShuffledBatches: mini-batches of an in-memory data set (images and labels as tensors), in a
// seeded order that depends only on (seed, epoch), so that a resumed run sees exactly the order an
// uninterrupted one would. Each pass (each call of begin()) is one epoch.
//
// Sharded (set_shard(rank, ranks), for data-parallel training), every rank computes the same
// epoch order and batch k of rank r is the r-th slice of the k-th global batch of
// batch_size * ranks images: together the ranks see exactly the images, and the global batches, of
// one process at batch_size * ranks. A last global batch of m < batch_size * ranks images is split
// as evenly as possible (slices differ by at most one image); if m < ranks it is dropped, so that
// every rank runs the same number of steps (no rank waits for a partner that has stopped).

#include "ardent/core/batch.hpp"
#include "ardent/core/check.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <utility>

namespace ardent::data {

class ShuffledBatches {
 public:
  /// Images, labels and each image's index in the data set.
  using Batch = ardent::Batch;

  ShuffledBatches(torch::Tensor images, torch::Tensor labels, int64_t batch_size, uint64_t seed, bool shuffle = true)
      : images_(std::move(images)),
        labels_(std::move(labels)),
        batch_size_(batch_size),
        seed_(seed),
        shuffle_(shuffle) {
    TORCH_CHECK(images_.defined() && labels_.defined() && images_.size(0) == labels_.size(0),
                "ardent::data::ShuffledBatches: argument 'labels' has ", labels_.defined() ? labels_.size(0) : 0,
                " entries, expected one per image (", images_.defined() ? images_.size(0) : 0, ")");
    if (batch_size_ < 1)
      fail_argument("ardent::data::ShuffledBatches", "batch_size", fmt::format("is {}, expected >= 1", batch_size_));
  }

  /// The epoch the next pass will be (set it to resume).
  void set_epoch(int64_t epoch) { epoch_ = epoch; }
  int64_t epoch() const { return epoch_; }
  int64_t size() const { return images_.size(0); }
  int64_t batches_per_epoch() const {
    const int64_t global = batch_size_ * ranks_;
    return size() / global + (size() % global >= ranks_ ? 1 : 0);
  }

  /// Makes this the `rank`-th of `ranks` disjoint shards (see above); (0, 1) is the whole set.
  void set_shard(int64_t rank, int64_t ranks) {
    if (ranks < 1)
      fail_argument("ardent::data::ShuffledBatches::set_shard", "ranks", fmt::format("is {}, expected >= 1", ranks));
    if (rank < 0 || rank >= ranks) {
      fail_argument("ardent::data::ShuffledBatches::set_shard", "rank",
                    fmt::format("is {}, expected in [0, {})", rank, ranks));
    }
    rank_ = rank;
    ranks_ = ranks;
  }
  int64_t shard_rank() const { return rank_; }
  int64_t shard_count() const { return ranks_; }
  int64_t batch_size() const { return batch_size_; }
  uint64_t seed() const { return seed_; }

  /// The positions in the epoch order of this shard's `batch`-th batch: [first, first + count).
  std::pair<int64_t, int64_t> slice_of(int64_t batch) const {
    const int64_t global = batch_size_ * ranks_;
    const int64_t start = batch * global;
    const int64_t m = std::min(global, size() - start);
    if (m == global) return {start + rank_ * batch_size_, batch_size_};
    const int64_t base = m / ranks_;
    const int64_t extra = m % ranks_;
    return {start + rank_ * base + std::min(rank_, extra), base + (rank_ < extra ? 1 : 0)};
  }

  class Iterator {
   public:
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    Iterator(const ShuffledBatches* owner, torch::Tensor order, int64_t batch)
        : owner_(owner), order_(std::move(order)), batch_(batch) {}
    Batch operator*() const {
      const auto [first, count] = owner_->slice_of(batch_);
      const auto index = order_.slice(0, first, first + count);
      return {owner_->images_.index_select(0, index), owner_->labels_.index_select(0, index), index};
    }
    Iterator& operator++() {
      ++batch_;
      return *this;
    }
    bool operator==(const Iterator& other) const { return batch_ == other.batch_; }

   private:
    const ShuffledBatches* owner_;
    torch::Tensor order_;
    int64_t batch_;
  };

  /// Starts the next epoch.
  Iterator begin() {
    torch::Tensor order;
    if (shuffle_) {
      auto generator = at::detail::createCPUGenerator(seed_ * 1000003ULL + static_cast<uint64_t>(epoch_));
      order = torch::randperm(size(), generator, torch::kLong);
    } else {
      order = torch::arange(size(), torch::kLong);
    }
    ++epoch_;
    return {this, order, 0};
  }
  Iterator end() const { return {this, torch::Tensor(), batches_per_epoch()}; }

 private:
  torch::Tensor images_;
  torch::Tensor labels_;
  int64_t batch_size_;
  uint64_t seed_;
  bool shuffle_;
  int64_t epoch_ = 0;
  int64_t rank_ = 0;
  int64_t ranks_ = 1;
};

}  // namespace ardent::data
