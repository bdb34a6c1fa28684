#pragma once
// ardent::deploy: int8 students for devices without GPUs - post-training quantization
// (deploy::quantize -> Int8Model, run by LibTorch's quantized kernels), save_int8 / load_int8.
// Not part of <ardent/ardent.hpp>. docs/deploy.md shows the whole path.

#include "ardent/deploy/graph.hpp"
#include "ardent/deploy/int8_model.hpp"
#include "ardent/deploy/lower.hpp"
#include "ardent/deploy/observer.hpp"
#include "ardent/deploy/onnx.hpp"
#include "ardent/deploy/options.hpp"
#include "ardent/deploy/quantization_aware.hpp"
#include "ardent/deploy/quantize.hpp"
#include "ardent/deploy/serialize.hpp"
