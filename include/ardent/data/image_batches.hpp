#pragma once
// ImageFolderBatches: mini-batches of a data::ImageFolder for training, decoded ahead of use by
// background threads, in ShuffledBatches' order and sharding (data/batches.hpp): the order of an
// epoch depends only on (seed, epoch), rank r of N takes the r-th slice of every global batch, so
// the ranks see disjoint examples and together one process's global batches. Each batch carries
// the examples' indices in the folder (ardent::Batch::indices).
//
// The threads are the caller's request (`workers`, default 2; 0 decodes on the calling thread):
// while the trainer runs step k, they decode steps k+1 .. k+prefetch. They live for one epoch
// (one pass of begin()..end()) and are joined when it ends or the iteration is abandoned.
//
// A file that cannot be read or decoded throws, naming it, from the step that needs it; with
// skip_corrupt(true) it is left out of its batch instead, and counted (skipped()). Augmentation
// (random_crop_flip with `augment_padding` > 0) draws from a generator seeded by (seed, epoch,
// global batch), so a resumed run augments as an uninterrupted one, whatever the thread timing.

#include "ardent/data/augment.hpp"
#include "ardent/data/batches.hpp"
#include "ardent/data/image_folder.hpp"

#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace ardent::data {

/// A batch of images with their labels and their indices in the data set (int64): ardent::Batch,
/// as data::ShuffledBatches yields, so that fit, train_loop and warm starts take it as it is.
using ImageBatch = ardent::Batch;

struct ImageFolderBatchesOptions {
  /// Background decoding threads (0: decode on the calling thread, when the batch is used).
  TORCH_ARG(int64_t, workers) = 2;
  /// Batches decoded ahead of the one in use (at least 1).
  TORCH_ARG(int64_t, prefetch) = 4;
  /// random_crop_flip's padding (0: no augmentation).
  TORCH_ARG(int64_t, augment_padding) = 0;
  /// Shuffle each epoch (false: folder order).
  TORCH_ARG(bool, shuffle) = true;
  /// Leave out, and count, files that cannot be decoded instead of throwing.
  TORCH_ARG(bool, skip_corrupt) = false;
};

class ImageFolderBatches {
 public:
  using Batch = ImageBatch;

  /// `folder` must outlive this object and its iterators.
  ImageFolderBatches(const ImageFolder& folder, int64_t batch_size, uint64_t seed,
                     ImageFolderBatchesOptions options = {})
      : folder_(folder),
        order_(torch::arange(folder.size(), torch::kLong), folder.labels(), batch_size, seed, options.shuffle()),
        options_(options) {
    const char* where = "ardent::data::ImageFolderBatches";
    if (options_.workers() < 0)
      fail_argument(where, "options.workers", fmt::format("is {}, expected >= 0", options_.workers()));
    if (options_.prefetch() < 1)
      fail_argument(where, "options.prefetch", fmt::format("is {}, expected >= 1", options_.prefetch()));
    if (options_.augment_padding() < 0) {
      fail_argument(where, "options.augment_padding", fmt::format("is {}, expected >= 0", options_.augment_padding()));
    }
  }

  void set_epoch(int64_t epoch) { order_.set_epoch(epoch); }
  int64_t epoch() const { return order_.epoch(); }
  int64_t size() const { return order_.size(); }
  int64_t batches_per_epoch() const { return order_.batches_per_epoch(); }
  void set_shard(int64_t rank, int64_t ranks) { order_.set_shard(rank, ranks); }
  uint64_t seed() const { return order_.seed(); }
  /// The files left out so far (skip_corrupt), with the reason.
  std::vector<std::string> skipped() const {
    const std::lock_guard<std::mutex> lock(skipped_mutex_);
    return skipped_;
  }

 private:
  /// One epoch's decoding: the batches' indices, the decoded batches, the workers.
  class Epoch {
   public:
    Epoch(const ImageFolderBatches& owner, int64_t epoch) : owner_(owner), epoch_(epoch) {
      for (auto&& batch : owner.order_) batches_.push_back(batch.inputs);  // advances its epoch
      slots_.resize(batches_.size());
      for (int64_t w = 0; w < owner_.options_.workers(); ++w) workers_.emplace_back([this] { work(); });
    }
    Epoch(const Epoch&) = delete;
    Epoch& operator=(const Epoch&) = delete;
    ~Epoch() {
      {
        const std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
      }
      changed_.notify_all();
      for (auto& t : workers_) t.join();
    }

    int64_t batches() const { return static_cast<int64_t>(batches_.size()); }

    /// Batch k, waiting for a worker to finish it (or decoding it here without workers).
    ImageBatch take(int64_t k) {
      if (workers_.empty()) return owner_.decode(batches_[static_cast<std::size_t>(k)], epoch_, k);
      std::unique_lock<std::mutex> lock(mutex_);
      auto& slot = slots_[static_cast<std::size_t>(k)];
      changed_.wait(lock, [&] { return slot.done; });
      if (slot.error) std::rethrow_exception(slot.error);
      return *slot.batch;
    }
    /// Batch k is used: its memory goes, and a worker may start a batch further ahead.
    void release(int64_t k) {
      {
        const std::lock_guard<std::mutex> lock(mutex_);
        if (k < batches()) slots_[static_cast<std::size_t>(k)].batch.reset();
        consumed_ = std::max(consumed_, k + 1);
      }
      changed_.notify_all();
    }

   private:
    struct Slot {
      bool done = false;
      std::optional<ImageBatch> batch;
      std::exception_ptr error;
    };

    void work() {
      for (;;) {
        int64_t k = 0;
        {
          std::unique_lock<std::mutex> lock(mutex_);
          changed_.wait(
              lock, [&] { return stopping_ || (next_ < batches() && next_ < consumed_ + owner_.options_.prefetch()); });
          if (stopping_) return;
          k = next_++;
        }
        Slot done{true, std::nullopt, nullptr};
        try {
          done.batch = owner_.decode(batches_[static_cast<std::size_t>(k)], epoch_, k);
        } catch (...) {
          done.error = std::current_exception();
        }
        {
          const std::lock_guard<std::mutex> lock(mutex_);
          slots_[static_cast<std::size_t>(k)] = std::move(done);
        }
        changed_.notify_all();
      }
    }

    const ImageFolderBatches& owner_;
    int64_t epoch_;
    std::vector<torch::Tensor> batches_;
    std::vector<Slot> slots_;
    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable changed_;
    int64_t next_ = 0;
    int64_t consumed_ = 0;
    bool stopping_ = false;
  };

 public:
  class Iterator {
   public:
    using value_type = ImageBatch;
    using difference_type = std::ptrdiff_t;
    Iterator(std::shared_ptr<Epoch> epoch, int64_t batch) : epoch_(std::move(epoch)), batch_(batch) {}
    ImageBatch operator*() const { return epoch_->take(batch_); }
    Iterator& operator++() {
      epoch_->release(batch_);
      ++batch_;
      return *this;
    }
    bool operator==(const Iterator& other) const { return batch_ == other.batch_; }

   private:
    std::shared_ptr<Epoch> epoch_;
    int64_t batch_;
  };

  /// Starts the next epoch (and its workers).
  Iterator begin() {
    const int64_t epoch = order_.epoch();
    return {std::make_shared<Epoch>(*this, epoch), 0};
  }
  Iterator end() const { return {nullptr, batches_per_epoch()}; }

 private:
  /// Decodes the examples `indices` into one batch; global batch `k` of `epoch` seeds its augmentation.
  ImageBatch decode(const torch::Tensor& indices, int64_t epoch, int64_t k) const {
    std::vector<torch::Tensor> images;
    std::vector<int64_t> kept;
    const auto index = indices.accessor<int64_t, 1>();
    for (int64_t i = 0; i < index.size(0); ++i) {
      try {
        images.push_back(folder_.get(index[i]));
        kept.push_back(index[i]);
      } catch (const c10::Error& e) {
        if (!options_.skip_corrupt()) throw;
        const std::lock_guard<std::mutex> lock(skipped_mutex_);
        skipped_.push_back(e.what_without_backtrace());
      }
    }
    TORCH_CHECK(!images.empty(), "ardent::data::ImageFolderBatches: every image of batch ", k, " of epoch ", epoch,
                " was skipped as corrupt");
    auto kept_indices = torch::tensor(kept, torch::kLong);
    auto x = torch::stack(images);
    if (options_.augment_padding() > 0) {
      auto generator = at::detail::createCPUGenerator(
          order_.seed() * 1000003ULL + static_cast<uint64_t>(epoch) * 7919ULL + static_cast<uint64_t>(k) * 104729ULL +
          static_cast<uint64_t>(order_.shard_rank()));
      x = random_crop_flip(x, options_.augment_padding(), generator);
    }
    return {x, labels_.index_select(0, kept_indices), kept_indices};
  }

  const ImageFolder& folder_;
  torch::Tensor labels_ = folder_.labels();
  /// The order and the shards: ShuffledBatches over the indices 0 .. size - 1.
  mutable ShuffledBatches order_;
  ImageFolderBatchesOptions options_;
  mutable std::mutex skipped_mutex_;
  mutable std::vector<std::string> skipped_;
};

}  // namespace ardent::data
