#pragma once
// ardent's data-parallel training across processes, on PyTorch's c10d (Gloo for CPU tensors): the
// component a program opts into. It needs Gloo's headers (Debian: libgloo-dev) and, with CMake,
// the ardent::distributed target (find_package(ardent COMPONENTS distributed)); <ardent/ardent.hpp>
// includes none of it.

#include "ardent/distributed/data_parallel.hpp"
#include "ardent/distributed/data_parallel_loop.hpp"
#include "ardent/distributed/merge_perturbations.hpp"
#include "ardent/distributed/process_group.hpp"
#include "ardent/distributed/sharding.hpp"
#include "ardent/distributed/sync_batch_norm.hpp"
