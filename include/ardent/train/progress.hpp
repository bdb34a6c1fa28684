#pragma once
// A fit() callback that reports progress: on a terminal, a bar redrawn in place with the rate,
// the running loss and the time left; otherwise (a log file, CI), a plain line every `every`
// batches and at each epoch's end.

#include "ardent/train/fit.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

namespace ardent::train {

class Progress {
 public:
  /// batches_per_epoch: for the bar and the ETA; every: batches between plain lines.
  explicit Progress(int64_t batches_per_epoch, int64_t epochs, int64_t every = 50, std::FILE* out = stderr)
      : batches_per_epoch_(batches_per_epoch),
        epochs_(epochs),
        every_(every),
        out_(out),
        terminal_(isatty(fileno(out)) != 0) {}

  template <typename Trainer>
  void on_epoch_begin(Trainer& /*trainer*/, int64_t epoch) {
    epoch_ = epoch;
    start_ = Clock::now();
    loss_sum_ = 0;
    samples_ = 0;
  }

  template <typename Trainer>
  void on_batch_end(Trainer& /*trainer*/, int64_t batch, const StepResult& r) {
    loss_sum_ += r.loss * static_cast<double>(r.batch_size);
    samples_ += r.batch_size;
    const int64_t done = batch + 1;
    if (!terminal_ && done % every_ != 0) return;
    const double elapsed = seconds();
    const double rate = static_cast<double>(samples_) / std::max(elapsed, 1e-9);
    const double eta = elapsed / static_cast<double>(done) * static_cast<double>(batches_per_epoch_ - done);
    if (terminal_) {
      constexpr int width = 30;
      const auto filled = static_cast<int>(width * done / std::max<int64_t>(batches_per_epoch_, 1));
      fmt::print(out_, "\repoch {}/{} [{:<{}}] {}/{} | {:.0f} img/s | loss {:.4f} | ETA {:.0f} s   ", epoch_ + 1,
                 epochs_, std::string(static_cast<std::size_t>(filled), '='), width, done, batches_per_epoch_, rate,
                 mean_loss(), eta);
    } else {
      fmt::print(out_, "epoch {}/{} batch {}/{} | {:.0f} img/s | loss {:.4f} | ETA {:.0f} s\n", epoch_ + 1, epochs_,
                 done, batches_per_epoch_, rate, mean_loss(), eta);
    }
    std::fflush(out_);
  }

  template <typename Trainer>
  void on_epoch_end(Trainer& /*trainer*/, int64_t epoch, const EpochSummary& summary) {
    fmt::print(out_, "{}epoch {}/{} done: loss {:.4f}, {} images in {:.1f} s\n", terminal_ ? "\n" : "", epoch + 1,
               epochs_, summary.mean_loss, summary.samples, seconds());
    std::fflush(out_);
  }

 private:
  using Clock = std::chrono::steady_clock;
  double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  double mean_loss() const { return samples_ > 0 ? loss_sum_ / static_cast<double>(samples_) : 0.0; }

  int64_t batches_per_epoch_;
  int64_t epochs_;
  int64_t every_;
  std::FILE* out_;
  bool terminal_;
  int64_t epoch_ = 0;
  Clock::time_point start_ = Clock::now();
  double loss_sum_ = 0;
  int64_t samples_ = 0;
};

}  // namespace ardent::train
