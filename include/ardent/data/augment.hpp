#pragma once
// The standard CIFAR augmentation (He et al. 2016; used by ARD, RSLAD, AdaAD): each image is
// zero-padded by `padding` pixels, a random crop of the original size is taken, and the crop is
// flipped horizontally with probability 1/2. Random draws come from the generator passed in, so a
// seeded generator gives a reproducible sequence.

#include "ardent/core/check.hpp"

#include <ATen/CPUGeneratorImpl.h>

namespace ardent::data {

/// Augments a batch [B, C, H, W]; returns a new tensor.
inline torch::Tensor random_crop_flip(const torch::Tensor& images, int64_t padding, at::Generator generator) {
  TORCH_CHECK(images.dim() == 4, "ardent::data::random_crop_flip: argument 'images' has shape ", images.sizes(),
              ", expected [B, C, H, W]");
  if (padding < 0)
    fail_argument("ardent::data::random_crop_flip", "padding", fmt::format("is {}, expected >= 0", padding));
  const int64_t b = images.size(0);
  const int64_t h = images.size(2);
  const int64_t w = images.size(3);
  const auto padded = torch::constant_pad_nd(images, {padding, padding, padding, padding}, 0.0);
  const auto offsets = torch::randint(2 * padding + 1, {b, 2}, generator, torch::kLong);
  const auto flips = torch::randint(2, {b}, generator, torch::kLong);
  auto out = torch::empty_like(images);
  const auto offset = offsets.accessor<int64_t, 2>();
  const auto flip = flips.accessor<int64_t, 1>();
  for (int64_t i = 0; i < b; ++i) {
    auto crop = padded[i].slice(1, offset[i][0], offset[i][0] + h).slice(2, offset[i][1], offset[i][1] + w);
    out[i].copy_(flip[i] == 1 ? crop.flip({2}) : crop);
  }
  return out;
}

}  // namespace ardent::data
