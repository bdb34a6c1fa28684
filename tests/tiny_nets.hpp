#pragma once
// Small networks, a batch and an attack budget shared by the tests of the distiller, the soft
// targets and the training loop.

#include <ardent/attacks/pgd.hpp>

#include <torch/torch.h>

#include <map>
#include <string>

namespace ardent_test {

// A small classifier on [B, 1, 4, 4] inputs; counts its forward passes by batch size.
struct NetImpl : torch::nn::Module {
  NetImpl(int64_t classes = 3, bool batch_norm = false) {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3).padding(1)));
    if (batch_norm) norm = register_module("norm", torch::nn::BatchNorm2d(4));
    head = register_module("head", torch::nn::Linear(4 * 4 * 4, classes));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    ++forwards[x.size(0)];
    auto h = conv->forward(x);
    if (norm) h = norm->forward(h);
    return head->forward(torch::tanh(h).flatten(1));
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d norm{nullptr};
  torch::nn::Linear head{nullptr};
  std::map<int64_t, int> forwards;  // batch size -> number of forward passes
};
TORCH_MODULE(Net);

/// A teacher with BatchNorm, a student, and a batch of eight [1, 4, 4] inputs of three classes.
struct Setup {
  Net teacher{3, /*batch_norm=*/true};
  Net student{3};
  torch::Tensor x;
  torch::Tensor y;
  Setup() {
    torch::manual_seed(0);
    teacher = Net(3, true);
    student = Net(3);
    x = torch::rand({8, 1, 4, 4});
    y = torch::randint(3, {8}, torch::kLong);
    teacher->train();  // left in train mode by its user: the distiller must still not change it
  }
};

// A network with two feature stages of chosen widths.
struct StagesImpl : torch::nn::Module {
  StagesImpl(int64_t c1, int64_t c2) {
    a = register_module("a", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, c1, 3).padding(1)));
    b = register_module("b", torch::nn::Conv2d(torch::nn::Conv2dOptions(c1, c2, 3).stride(2).padding(1)));
    head = register_module("head", torch::nn::Linear(c2 * 2 * 2, 3));
  }
  std::map<std::string, torch::Tensor> features(const torch::Tensor& x) {
    auto s1 = torch::relu(a->forward(x));
    auto s2 = torch::relu(b->forward(s1));
    return {{"s1", s1}, {"s2", s2}};
  }
  torch::Tensor forward(const torch::Tensor& x) { return head->forward(features(x).at("s2").flatten(1)); }
  torch::nn::Conv2d a{nullptr}, b{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(Stages);

// The attack of the small tests: four Linf steps of 0.03 within 0.1 from x itself.
inline const auto kAttack = ardent::attacks::PGDOptions(0.1).step_size(0.03).steps(4).random_start(false);

}  // namespace ardent_test
