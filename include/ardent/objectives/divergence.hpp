#pragma once
// The two divergences of distributions given as log-probabilities, per row (one per sample), the
// single definition every objective, loss and trainer uses:
//
//   kl_divergence(log p, log q)      = sum_c p_c (log p_c - log q_c)      KL(p || q)
//   soft_cross_entropy(log p, log q) = -sum_c p_c log q_c                 H(p, q) = KL(p || q) + H(p)

#include <torch/torch.h>

namespace ardent::objectives {

/// KL(p || q) per row of [B, C] log-probabilities; returns [B].
inline torch::Tensor kl_divergence(const torch::Tensor& log_p, const torch::Tensor& log_q) {
  return (log_p.exp() * (log_p - log_q)).sum(1);
}

/// The cross-entropy H(p, q) per row of [B, C] log-probabilities; returns [B].
inline torch::Tensor soft_cross_entropy(const torch::Tensor& log_p, const torch::Tensor& log_q) {
  return -(log_p.exp() * log_q).sum(1);
}

}  // namespace ardent::objectives
