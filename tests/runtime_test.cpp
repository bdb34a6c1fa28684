// The runtime switches: the optimisations of the attack's passes (runtime/speedups.hpp, models/conv.hpp,
// models/conv_bn.hpp), each within 1e-5 of the plain computation relative to the largest value compared,
// and the attack-scoped memory reuse (runtime/memory.hpp).
#include "catch.hpp"
#include "helpers.hpp"

#include <ardent/attacks/pgd.hpp>
#include <ardent/models/conv.hpp>
#include <ardent/models/conv_bn.hpp>
#include <ardent/models/mobilenet_v2.hpp>
#include <ardent/models/resnet.hpp>
#include <ardent/models/small_cnn.hpp>
#include <ardent/models/wide_resnet.hpp>
#include <ardent/runtime/memory.hpp>
#include <ardent/runtime/speedups.hpp>

#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace {

namespace nn = torch::nn;
using ardent::runtime::Speedups;
using ardent::runtime::SpeedupsGuard;

/// max |a - b| / max |b|: 0 for identical tensors, whatever their scale.
double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  REQUIRE(a.sizes() == b.sizes());
  return (a - b).abs().max().item<double>() / b.abs().max().clamp_min(1e-30).item<double>();
}

/// Random running statistics and affine parameters, so that folding a BatchNorm is not the identity.
template <typename Module>
void randomise_batch_norms(Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& m : model->modules(/*include_self=*/false)) {
    if (auto* bn = m->template as<nn::BatchNorm2d>()) {
      bn->running_mean.uniform_(-0.5, 0.5);
      bn->running_var.uniform_(0.5, 2.0);
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.uniform_(-0.5, 0.5);
    }
  }
}

/// The cross-entropy gradient with respect to the input, as PGD computes it.
template <typename Module>
torch::Tensor input_gradient(Module& model, const torch::Tensor& x, const torch::Tensor& y) {
  return ardent::attacks::loss_and_gradient(model, x, ardent::objectives::CrossEntropy{y}).gradient;
}

std::string node_name(const torch::Tensor& y) { return y.grad_fn() ? y.grad_fn()->name() : std::string("none"); }

}  // namespace

TEST_CASE("Speedups: every switch is on by default, and SpeedupsGuard restores them", "[speedups]") {
  const Speedups& s = ardent::runtime::speedups();
  CHECK(
      (s.freeze_parameters && s.fold_batch_norm && s.depthwise_input_gradient && s.channels_last && s.fused_linf_step));
  {
    SpeedupsGuard plain(ardent::runtime::no_speedups);
    CHECK_FALSE((s.freeze_parameters || s.fold_batch_norm || s.depthwise_input_gradient || s.channels_last ||
                 s.fused_linf_step));
  }
  CHECK((s.freeze_parameters && s.fold_batch_norm && s.channels_last));
}

TEST_CASE("the switches are per thread: a guard on one thread leaves another's as they are", "[speedups]") {
  SpeedupsGuard plain(ardent::runtime::no_speedups);
  bool other_thread_on = false;
  std::thread other([&other_thread_on] {
    const Speedups& s = ardent::runtime::speedups();
    other_thread_on = s.freeze_parameters && s.fold_batch_norm && s.depthwise_input_gradient && s.channels_last &&
                      s.fused_linf_step;
  });
  other.join();
  CHECK(other_thread_on);
  CHECK_FALSE(ardent::runtime::speedups().channels_last);
}

// glibc's malloc only: AddressSanitizer (scripts/sanitize.sh) replaces it, and mallinfo2 and mallopt
// then describe nothing.
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
TEST_CASE("an attack leaves the host's allocator as it is: keep_freed_memory is an explicit opt-in", "[speedups]") {
  // mallinfo2's mmap count of a fresh large block: with mmap allowed, a 64 MiB block is served by mmap.
  ardent::models::SmallCNN model;
  const auto x = torch::rand({2, 1, 28, 28});
  const auto y = torch::tensor({0, 1}, torch::kLong);
  ardent::attacks::PGD(ardent::attacks::PGDOptions(0.1).steps(1)).perturb(model, x, y);
  const auto before = mallinfo2().hblks;
  void* volatile block = std::malloc(64U << 20U);  // volatile: the allocation may not be elided
  const auto during = mallinfo2().hblks;
  std::free(block);
  CHECK(during == before + 1);
}
#endif

TEST_CASE("keep_freed_memory configures glibc's malloc", "[speedups]") {
#if defined(__SANITIZE_ADDRESS__)
  CHECK_NOTHROW(ardent::runtime::keep_freed_memory());  // no glibc malloc to configure; harmless
#elif defined(__GLIBC__)
  CHECK(ardent::runtime::keep_freed_memory());
#else
  CHECK_FALSE(ardent::runtime::keep_freed_memory());
#endif
}

TEST_CASE("conv2d: a stride-1 depthwise input gradient through the flipped kernel matches ATen's", "[speedups]") {
  torch::manual_seed(0);
  struct Case {
    int64_t kernel, padding, dilation;
    bool bias, channels_last;
  };
  for (const auto& c : {Case{3, 1, 1, false, false}, Case{3, 1, 1, true, true}, Case{5, 2, 1, true, false},
                        Case{3, 2, 2, false, true}, Case{3, 0, 1, true, false}}) {
    CAPTURE(c.kernel, c.padding, c.dilation, c.bias, c.channels_last);
    nn::Conv2d conv(nn::Conv2dOptions(6, 6, c.kernel).padding(c.padding).dilation(c.dilation).groups(6).bias(c.bias));
    for (auto& p : conv->parameters()) p.requires_grad_(false);
    auto x = torch::randn({4, 6, 11, 9});
    if (c.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    x.requires_grad_(true);
    const auto g = torch::randn_like(conv->forward(x));

    const auto y_fast = ardent::models::conv2d(conv, x);
    CHECK(node_name(y_fast).find("DepthwiseConv2dInputGradient") != std::string::npos);
    const auto grad_fast = torch::autograd::grad({y_fast}, {x}, {g})[0];
    const auto y_aten = conv->forward(x);
    const auto grad_aten = torch::autograd::grad({y_aten}, {x}, {g})[0];
    CHECK(relative_error(y_fast, y_aten) < 1e-6);
    CHECK(relative_error(grad_fast, grad_aten) < 1e-5);
  }
}

TEST_CASE("conv2d keeps ATen's path where the flipped kernel does not apply", "[speedups]") {
  auto x = torch::randn({2, 4, 8, 8}, torch::requires_grad());
  nn::Conv2d depthwise(nn::Conv2dOptions(4, 4, 3).padding(1).groups(4));
  // The weight wants a gradient (training): ATen computes both.
  CHECK(node_name(ardent::models::conv2d(depthwise, x)).find("Depthwise") == std::string::npos);
  for (auto& p : depthwise->parameters()) p.requires_grad_(false);
  {
    SpeedupsGuard off(Speedups{.depthwise_input_gradient = false});
    CHECK(node_name(ardent::models::conv2d(depthwise, x)).find("Depthwise") == std::string::npos);
  }
  nn::Conv2d strided(nn::Conv2dOptions(4, 4, 3).padding(1).stride(2).groups(4));
  nn::Conv2d dense(nn::Conv2dOptions(4, 4, 3).padding(1));
  nn::Conv2d reflect(nn::Conv2dOptions(4, 4, 3).padding(1).groups(4).padding_mode(torch::kReflect));
  for (auto* conv : {&strided, &dense, &reflect}) {
    for (auto& p : (*conv)->parameters()) p.requires_grad_(false);
    const auto y = ardent::models::conv2d(*conv, x);
    CHECK(node_name(y).find("Depthwise") == std::string::npos);
    CHECK(relative_error(y, (*conv)->forward(x)) == 0.0);
  }
}

TEST_CASE("conv_bn folds an eval-mode BatchNorm into the convolution, and only then", "[speedups]") {
  torch::manual_seed(1);
  for (const bool bias : {false, true}) {
    CAPTURE(bias);
    nn::Conv2d conv(nn::Conv2dOptions(3, 8, 3).padding(1).bias(bias));
    nn::BatchNorm2d bn(8);
    nn::Sequential holder(conv, bn);
    randomise_batch_norms(holder);
    holder->eval();
    const auto x = torch::randn({5, 3, 10, 10});
    const auto plain = bn->forward(conv->forward(x));

    torch::NoGradGuard no_grad;
    CHECK(ardent::models::folds_batch_norm(conv, bn));
    const auto folded = ardent::models::conv_bn(conv, bn, x);
    CHECK(relative_error(folded, plain) < 1e-5);
    const auto [weight, shift] = ardent::models::fold_batch_norm(*conv, *bn);
    CHECK(relative_error(torch::conv2d(x, weight, shift, 1, 1), plain) < 1e-5);
  }
  nn::Conv2d conv(nn::Conv2dOptions(3, 8, 3).padding(1));
  nn::BatchNorm2d bn(8);
  bn->eval();
  CHECK_FALSE(ardent::models::folds_batch_norm(conv, bn));  // autograd on, parameters want gradients
  {
    torch::NoGradGuard no_grad;
    SpeedupsGuard off(Speedups{.fold_batch_norm = false});
    CHECK_FALSE(ardent::models::folds_batch_norm(conv, bn));
  }
  bn->train();
  torch::NoGradGuard no_grad;
  CHECK_FALSE(ardent::models::folds_batch_norm(conv, bn));  // batch statistics
  nn::BatchNorm2d stateless(nn::BatchNorm2dOptions(8).track_running_stats(false));
  stateless->eval();
  CHECK_FALSE(ardent::models::folds_batch_norm(conv, stateless));
  CHECK_THROWS_WITH(ardent::models::fold_batch_norm(*conv, *stateless),
                    Catch::Contains("'bn' has no running statistics"));
}

// ReLU networks are piecewise linear: any change of rounding (a folded weight, another convolution
// algorithm, another thread count) can move a pre-activation lying within rounding of 0 across its
// kink and change the gradient there by far more than the rounding. So the input gradients are
// compared in float64, where the optimised and plain computations must agree to 1e-5 relative (a
// wrong formula would miss by far more); the logits, continuous in the weights, also in float32.
TEST_CASE(
    "Each speedup, and all together: the attack's input gradient and the inference logits agree with "
    "the plain computation",
    "[speedups]") {
  torch::manual_seed(2);
  const auto labels = torch::randint(0, 10, {2});
  const auto cifar = torch::rand({2, 3, 32, 32});
  const std::vector<std::pair<std::string, Speedups>> settings{
      {"freeze_parameters", Speedups{true, false, false, false, false}},
      // Folding and the depthwise gradient act where no parameter wants a gradient: with frozen parameters.
      {"fold_batch_norm", Speedups{true, true, false, false, false}},
      {"depthwise_input_gradient", Speedups{true, false, true, false, false}},
      {"channels_last", Speedups{false, false, false, true, false}},
      {"all", Speedups{}}};
  const auto check = [&](auto model, const torch::Tensor& x) {
    randomise_batch_norms(model);
    model->eval();
    const auto attack_gradient = [&](const Speedups& speedups, torch::Dtype dtype) {
      SpeedupsGuard guard(speedups);
      const ardent::attacks::AttackScope attack_scope(model, /*eval_mode=*/true);
      return input_gradient(model, x.to(dtype), labels);
    };
    const auto logits = [&](const Speedups& speedups) {
      SpeedupsGuard guard(speedups);
      torch::NoGradGuard no_grad;
      return model->forward(x);
    };
    const auto plain_logits = logits(ardent::runtime::no_speedups);
    for (const auto& [name, speedups] : settings) {
      CAPTURE(name);
      CHECK(relative_error(logits(speedups), plain_logits) < 1e-5);
    }
    model->to(torch::kDouble);
    const auto plain_gradient = attack_gradient(ardent::runtime::no_speedups, torch::kDouble);
    for (const auto& [name, speedups] : settings) {
      CAPTURE(name);
      CHECK(relative_error(attack_gradient(speedups, torch::kDouble), plain_gradient) < 1e-5);
    }
  };
  SECTION("ResNet18") { check(ardent::models::ResNet18(), cifar); }
  SECTION("MobileNetV2") { check(ardent::models::MobileNetV2(), cifar); }
  SECTION("WideResNet-16-2") {
    check(ardent::models::WideResNet(ardent::models::WideResNetOptions().depth(16).widen_factor(2)), cifar);
  }
  SECTION("SmallCNN") { check(ardent::models::SmallCNN(), torch::rand({2, 1, 28, 28})); }
}

TEST_CASE("The fused Linf step reaches the point of projection then box clamp", "[speedups]") {
  auto reference = ardent_test::load_reference();
  reference.model.to(torch::kDouble);  // a sign flip of a gradient component at a kink would be rounding, not error
  reference.x = reference.x.to(torch::kDouble);
  const auto attack = ardent::attacks::PGD(ardent::attacks::PGDOptions(0.1).step_size(0.02).steps(5));
  const auto run = [&](bool fused) {
    SpeedupsGuard guard(Speedups{.fused_linf_step = fused});
    torch::manual_seed(3);
    return attack.perturb(reference.model, reference.x, reference.y);
  };
  const auto plain = run(false);
  const auto fused = run(true);
  CHECK(relative_error(fused, plain) < 1e-5);
  CHECK(((fused - reference.x).abs().max().item<double>() <= 0.1 + 1e-6));
  CHECK((fused.min().item<double>() >= 0.0 && fused.max().item<double>() <= 1.0));
}

TEST_CASE("an attack reuses the large blocks it frees and returns them when it ends", "[runtime][memory]") {
  auto* const allocator = c10::GetCPUAllocator();
  {
    ardent::runtime::MemoryReuseScope scope;
    const void* first = nullptr;
    {
      const auto block = torch::empty({1 << 20});  // 4 MiB
      first = block.data_ptr();
    }
    CHECK(ardent::runtime::MemoryReuseScope::cached_bytes() == (std::size_t{4} << 20));
    const auto again = torch::empty({1 << 20});
    CHECK(again.data_ptr() == first);
    CHECK(ardent::runtime::MemoryReuseScope::cached_bytes() == 0);
    {
      ardent::runtime::MemoryReuseScope nested;
      const auto other = torch::empty({1 << 19});
    }
    CHECK(ardent::runtime::MemoryReuseScope::cached_bytes() ==
          (std::size_t{2} << 20));  // the outer scope still holds it
  }
  CHECK(ardent::runtime::MemoryReuseScope::cached_bytes() == 0);
  CHECK(c10::GetCPUAllocator() == allocator);
  SECTION("switched off, nothing is cached") {
    ardent::runtime::SpeedupsGuard off(ardent::runtime::Speedups{.reuse_memory = false});
    ardent::runtime::MemoryReuseScope scope;
    { const auto block = torch::empty({1 << 20}); }
    CHECK(ardent::runtime::MemoryReuseScope::cached_bytes() == 0);
  }
}
