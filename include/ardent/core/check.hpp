#pragma once
// Argument checking for ardent's public entry points: every failure names the function, the
// argument, the value it had and what was expected. Each public call checks its arguments once;
// inner loops (an attack's steps) run unchecked. A user's policy can call these helpers too
// (docs/attacks.md lists their signatures).

#include "ardent/core/model.hpp"

#include <torch/torch.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <optional>
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

/// "[8, 1, 28, 28]", or "undefined".
inline std::string shape_string(const torch::Tensor& t) {
  return t.defined() ? fmt::format("[{}]", fmt::join(t.sizes(), ", ")) : std::string("undefined");
}

namespace detail {
/// The input batch an enclosing public call has already checked on this thread (see CheckedInput).
struct CheckedInputRecord {
  const c10::TensorImpl* tensor = nullptr;
  int64_t version = 0;
  double clip_min = 0;
  double clip_max = 0;
};
inline CheckedInputRecord& checked_input() {
  thread_local CheckedInputRecord record;
  return record;
}
}  // namespace detail

/// Marks `x`, just checked against [clip_min, clip_max], as checked for a scope on this thread, so
/// that the calls it makes with the same, unmodified tensor (a Distiller's attack) skip the
/// second check_input_batch.
class CheckedInput {
 public:
  CheckedInput(const torch::Tensor& x, double clip_min, double clip_max) : saved_(detail::checked_input()) {
    detail::checked_input() = {x.unsafeGetTensorImpl(), x._version(), clip_min, clip_max};
  }
  CheckedInput(const CheckedInput&) = delete;
  CheckedInput& operator=(const CheckedInput&) = delete;
  CheckedInput(CheckedInput&&) = delete;
  CheckedInput& operator=(CheckedInput&&) = delete;
  ~CheckedInput() { detail::checked_input() = saved_; }

 private:
  detail::CheckedInputRecord saved_;
};

/// A batch of inputs: defined, floating point, batch-first, finite, and inside [clip_min, clip_max]
/// up to a tolerance of 1e-6. Skipped for a tensor an enclosing CheckedInput covers.
inline void check_input_batch(std::string_view function, std::string_view name, const torch::Tensor& x, double clip_min,
                              double clip_max) {
  if (const auto& r = detail::checked_input(); x.defined() && r.tensor == x.unsafeGetTensorImpl() &&
                                               r.version == x._version() && r.clip_min >= clip_min &&
                                               r.clip_max <= clip_max) {
    return;
  }
  if (!x.defined()) fail_argument(function, name, "is an undefined tensor, expected a batch of inputs");
  if (!x.is_floating_point()) {
    fail_argument(
        function, name,
        fmt::format("has dtype {}, expected a floating-point tensor", std::string(c10::toString(x.scalar_type()))));
  }
  if (x.dim() < 1 || x.size(0) == 0) {
    fail_argument(function, name,
                  fmt::format("has shape {}, expected a non-empty batch [B, ...]", fmt::join(x.sizes(), "x")));
  }
  if (!torch::isfinite(x).all().item<bool>()) fail_argument(function, name, "contains NaN or Inf");
  constexpr double tolerance = 1e-6;
  const double lo = x.min().item<double>();
  const double hi = x.max().item<double>();
  if (lo < clip_min - tolerance || hi > clip_max + tolerance) {
    fail_argument(
        function, name,
        fmt::format("has values in [{}, {}], expected them inside the pixel box [{}, {}]", lo, hi, clip_min, clip_max));
  }
}

/// Class indices for a batch of `batch` samples: int64, shape [batch]; when num_classes > 0 each
/// value must lie in [0, num_classes).
inline void check_labels(std::string_view function, std::string_view name, const torch::Tensor& labels, int64_t batch,
                         int64_t num_classes = 0) {
  if (!labels.defined()) fail_argument(function, name, "is an undefined tensor, expected int64 class indices");
  if (labels.scalar_type() != torch::kLong) {
    fail_argument(function, name,
                  fmt::format("has dtype {}, expected int64 (torch::kLong) class indices",
                              std::string(c10::toString(labels.scalar_type()))));
  }
  if (labels.dim() != 1 || labels.size(0) != batch) {
    fail_argument(
        function, name,
        fmt::format("has shape [{}], expected [{}] (one label per sample)", fmt::join(labels.sizes(), ", "), batch));
  }
  if (num_classes > 0 && labels.numel() > 0) {
    const int64_t lo = labels.min().item<int64_t>();
    const int64_t hi = labels.max().item<int64_t>();
    if (lo < 0 || hi >= num_classes) {
      fail_argument(function, name,
                    fmt::format("has values in [{}, {}], expected class indices in [0, {})", lo, hi, num_classes));
    }
  }
}

/// Logits of shape [B, C] with C >= 2.
inline void check_logits(std::string_view function, std::string_view name, const torch::Tensor& logits) {
  if (!logits.defined() || logits.dim() != 2 || logits.size(1) < 2) {
    fail_argument(function, name,
                  fmt::format("has shape {}, expected logits [B, C] with C >= 2", shape_string(logits)));
  }
}

/// What a model returned for a batch `x`: floating-point logits [B, C] with C >= 2 and B = x's
/// batch. `role` names the model ("model", "teacher", "student").
inline void check_model_output(std::string_view function, std::string_view role, const torch::Tensor& output,
                               const torch::Tensor& x) {
  if (!output.defined() || output.dim() != 2 || output.size(0) != x.size(0) || output.size(1) < 2 ||
      !output.is_floating_point()) {
    TORCH_CHECK(false, fmt::format("{}: the {} returned {} of shape {} for the input of shape {}, expected "
                                   "floating-point logits [{}, C] with C >= 2",
                                   function, role,
                                   output.defined() ? std::string(c10::toString(output.scalar_type()))
                                                    : std::string("a tensor"),
                                   shape_string(output), shape_string(x), x.size(0)));
  }
}

/// The input fits the model: on the model's device and of its parameters' floating-point dtype
/// (LibTorch's own errors for either name neither the argument nor the fix). `role` names the model.
template <Model M>
void check_model_input(std::string_view function, std::string_view role, M& model, const torch::Tensor& x) {
  if (!x.defined()) return;
  if (const auto device = device_of(model); device && *device != x.device()) {
    fail_argument(function, "x",
                  fmt::format("is on device {}, expected the {}'s device {}", x.device().str(), role, device->str()));
  }
  if (const auto dtype = dtype_of(model); dtype && x.is_floating_point() && *dtype != x.scalar_type()) {
    fail_argument(function, "x",
                  fmt::format("has dtype {}, expected the {}'s parameter dtype {} (convert with x.to({}))",
                              std::string(c10::toString(x.scalar_type())), role, std::string(c10::toString(*dtype)),
                              std::string(c10::toString(*dtype))));
  }
}

}  // namespace ardent
