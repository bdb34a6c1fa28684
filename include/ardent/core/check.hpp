#pragma once
// Argument checking for ardent's public entry points (DESIGN.md section 4): every failure names
// the argument, the value it had and what was expected.

#include <torch/torch.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <string_view>

namespace ardent {

/// Throws c10::Error: "<function>: argument '<name>' <problem>".
[[noreturn]] inline void fail_argument(std::string_view function, std::string_view name, std::string_view problem) {
  TORCH_CHECK(false, fmt::format("{}: argument '{}' {}", function, name, problem));
}

/// A finite, non-negative real (epsilon, step size, ...).
inline void check_non_negative(std::string_view function, std::string_view name, double value) {
  if (!std::isfinite(value) || value < 0.0) {
    fail_argument(function, name, fmt::format("is {}, expected a finite value >= 0", value));
  }
}

/// A finite, strictly positive real (temperature, learning rate, ...).
inline void check_positive(std::string_view function, std::string_view name, double value) {
  if (!std::isfinite(value) || value <= 0.0) {
    fail_argument(function, name, fmt::format("is {}, expected a finite value > 0", value));
  }
}

/// A pixel box lo < hi.
inline void check_box(std::string_view function, double clip_min, double clip_max) {
  if (!std::isfinite(clip_min) || !std::isfinite(clip_max) || !(clip_min < clip_max)) {
    fail_argument(function, "clip_min/clip_max",
                  fmt::format("is [{}, {}], expected finite bounds with clip_min < clip_max", clip_min, clip_max));
  }
}

/// A batch of inputs: defined, floating point, batch-first, finite, and inside [clip_min, clip_max]
/// up to a tolerance of 1e-6.
inline void check_input_batch(std::string_view function, std::string_view name, const torch::Tensor& x,
                              double clip_min, double clip_max) {
  if (!x.defined()) fail_argument(function, name, "is an undefined tensor, expected a batch of inputs");
  if (!x.is_floating_point()) {
    fail_argument(function, name, fmt::format("has dtype {}, expected a floating-point tensor",
                                              std::string(c10::toString(x.scalar_type()))));
  }
  if (x.dim() < 1 || x.size(0) == 0) {
    fail_argument(function, name, fmt::format("has shape {}, expected a non-empty batch [B, ...]",
                                              fmt::join(x.sizes(), "x")));
  }
  if (!torch::isfinite(x).all().item<bool>()) fail_argument(function, name, "contains NaN or Inf");
  constexpr double tolerance = 1e-6;
  const double lo = x.min().item<double>();
  const double hi = x.max().item<double>();
  if (lo < clip_min - tolerance || hi > clip_max + tolerance) {
    fail_argument(function, name, fmt::format("has values in [{}, {}], expected them inside the pixel box [{}, {}]",
                                              lo, hi, clip_min, clip_max));
  }
}

/// Class indices for a batch of `batch` samples: int64, shape [batch]; when num_classes > 0 each
/// value must lie in [0, num_classes).
inline void check_labels(std::string_view function, std::string_view name, const torch::Tensor& labels,
                         int64_t batch, int64_t num_classes = 0) {
  if (!labels.defined()) fail_argument(function, name, "is an undefined tensor, expected int64 class indices");
  if (labels.scalar_type() != torch::kLong) {
    fail_argument(function, name, fmt::format("has dtype {}, expected int64 (torch::kLong) class indices",
                                              std::string(c10::toString(labels.scalar_type()))));
  }
  if (labels.dim() != 1 || labels.size(0) != batch) {
    fail_argument(function, name, fmt::format("has shape [{}], expected [{}] (one label per sample)",
                                              fmt::join(labels.sizes(), ", "), batch));
  }
  if (num_classes > 0 && labels.numel() > 0) {
    const int64_t lo = labels.min().item<int64_t>();
    const int64_t hi = labels.max().item<int64_t>();
    if (lo < 0 || hi >= num_classes) {
      fail_argument(function, name, fmt::format("has values in [{}, {}], expected class indices in [0, {})", lo,
                                                hi, num_classes));
    }
  }
}

/// Logits of shape [B, C] with C >= 2.
inline void check_logits(std::string_view function, std::string_view name, const torch::Tensor& logits) {
  if (!logits.defined() || logits.dim() != 2 || logits.size(1) < 2) {
    fail_argument(function, name,
                  fmt::format("has shape [{}], expected logits [B, C] with C >= 2",
                              logits.defined() ? fmt::format("{}", fmt::join(logits.sizes(), ", ")) : "undefined"));
  }
}

}  // namespace ardent
