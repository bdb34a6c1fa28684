#pragma once
// How much ardent's file readers may allocate for one file. A hostile file is small and claims
// much (a 20 KB zip whose pickle inflates to 20 MB of opcodes, a 1 MB gzip IDX file whose header
// promises 2 GB): each claim is compared with these limits before anything is allocated, so that
// memory stays proportional to the file's size. Real files sit far below them (a WideResNet-34-10
// state dict is 185 MB, stored uncompressed; Fashion-MNIST's gzip files inflate 1.8 times); a
// larger real model raises them, once, before reading:
//
//   ardent::io::read_limits().max_file_bytes(uint64_t{16} << 30);
//
// The limits belong to the program (they are the program's choice, as ulimit is); ardent never
// changes them itself. docs/reliability.md gives the memory each limit implies.

#include <torch/torch.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace ardent::io {

struct ReadLimits {
  /// The largest file any ardent reader accepts (state dicts, module archives, checkpoints, IDX and
  /// CIFAR files), in bytes on disk.
  TORCH_ARG(uint64_t, max_file_bytes) = uint64_t{4} << 30;
  /// How many times its compressed size a compressed input may inflate to: the zip records of one
  /// archive together, or one gzip data file (at least 1 MiB, as tiny files compress well).
  /// Deflate itself allows 1032.
  TORCH_ARG(uint64_t, max_inflation) = 64;
  /// How many values the pickle machine may create, hold on its stack, or keep in its memo, each
  /// (a state dict needs about 12 per tensor; 2^20 values take about 200 MB).
  TORCH_ARG(uint64_t, max_pickle_values) = uint64_t{1} << 20;
};

/// How deeply lists, tuples and dicts may nest in a pickle ardent reads. A state dict nests three
/// levels (a training checkpoint's dict, the state dict, a tensor's size tuple); 1,000 leaves room
/// for any checkpoint's extra entries.
inline constexpr std::size_t kMaxPickleDepth = 1000;

/// The limits every ardent reader applies; a program raises them here (see above).
inline ReadLimits& read_limits() {
  static ReadLimits limits;
  return limits;
}

/// What `compressed` bytes may inflate to: max_inflation times them, at least 1 MiB.
inline uint64_t inflation_bound(uint64_t compressed) {
  uint64_t bound = 0;
  if (__builtin_mul_overflow(compressed, read_limits().max_inflation(), &bound)) return UINT64_MAX;
  return std::max<uint64_t>(bound, uint64_t{1} << 20);
}

/// The message that tells a user which limit refused a file and how to raise it.
inline constexpr const char* kRaiseLimitHint =
    " (a limit of ardent::io::read_limits(); raise it if the file is genuine)";

}  // namespace ardent::io
