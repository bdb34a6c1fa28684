#pragma once
// Keeping freed memory in the process, so that an attack's fixed-shape passes reuse it.
//
// glibc's malloc serves every block above 32 MiB (ResNet18's and MobileNetV2's activations at
// batch 128 are 20-80 MiB) with a fresh mmap and unmaps it on free; the next allocation of the
// same block then takes a page fault on every 4 KiB page and the kernel zeroes each one. An
// attack allocates the same activations at every step, so on the CPU that costs as much as the
// arithmetic (2.25 million page faults in one MobileNetV2 PGD benchmark, docs/performance.md).
// With mmap off for large blocks and trimming above 2 GiB off, freed blocks stay in the heap and
// are reused. The process keeps its peak memory instead of returning it to the system.
//
// It changes the host program's allocator for good, so the library never calls it: a program
// opts in by calling ardent::keep_freed_memory() once at start-up (ardent's examples and
// benchmarks do).

#include <cstdlib>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <climits>

namespace ardent {

/// Makes glibc's malloc keep freed memory for reuse (process-wide, not undone); returns whether it
/// could. An explicit opt-in for programs; calling it again is harmless.
inline bool keep_freed_memory() {
#if defined(__GLIBC__)
  return mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
#else
  return false;
#endif
}

}  // namespace ardent
