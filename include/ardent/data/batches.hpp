#pragma once
// ShuffledBatches: mini-batches of an in-memory data set (images and labels as tensors), in a
// seeded order that depends only on (seed, epoch), so that a resumed run sees exactly the order an
// uninterrupted one would. Each pass (each call of begin()) is one epoch.

#include "ardent/core/check.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <utility>

namespace ardent::data {

class ShuffledBatches {
 public:
  using Batch = std::pair<torch::Tensor, torch::Tensor>;

  ShuffledBatches(torch::Tensor images, torch::Tensor labels, int64_t batch_size, uint64_t seed, bool shuffle = true)
      : images_(std::move(images)), labels_(std::move(labels)), batch_size_(batch_size), seed_(seed), shuffle_(shuffle) {
    TORCH_CHECK(images_.defined() && labels_.defined() && images_.size(0) == labels_.size(0),
                "ardent::data::ShuffledBatches: argument 'labels' has ", labels_.defined() ? labels_.size(0) : 0,
                " entries, expected one per image (", images_.defined() ? images_.size(0) : 0, ")");
    if (batch_size_ < 1) fail_argument("ardent::data::ShuffledBatches", "batch_size", fmt::format("is {}, expected >= 1", batch_size_));
  }

  /// The epoch the next pass will be (set it to resume).
  void set_epoch(int64_t epoch) { epoch_ = epoch; }
  int64_t epoch() const { return epoch_; }
  int64_t size() const { return images_.size(0); }
  int64_t batches_per_epoch() const { return (size() + batch_size_ - 1) / batch_size_; }

  class Iterator {
   public:
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    Iterator(const ShuffledBatches* owner, torch::Tensor order, int64_t first)
        : owner_(owner), order_(std::move(order)), first_(first) {}
    Batch operator*() const {
      const auto index = order_.slice(0, first_, std::min(first_ + owner_->batch_size_, owner_->size()));
      return {owner_->images_.index_select(0, index), owner_->labels_.index_select(0, index)};
    }
    Iterator& operator++() {
      first_ += owner_->batch_size_;
      return *this;
    }
    bool operator==(const Iterator& other) const { return std::min(first_, owner_->size()) == std::min(other.first_, owner_->size()); }

   private:
    const ShuffledBatches* owner_;
    torch::Tensor order_;
    int64_t first_;
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
  Iterator end() const { return {this, torch::Tensor(), size()}; }

 private:
  torch::Tensor images_;
  torch::Tensor labels_;
  int64_t batch_size_;
  uint64_t seed_;
  bool shuffle_;
  int64_t epoch_ = 0;
};

}  // namespace ardent::data
