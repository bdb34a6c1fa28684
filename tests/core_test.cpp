// The core contract: model adapters, the mode guard and argument checks.
#include "catch.hpp"
#include "helpers.hpp"

#include <ardent/ardent.hpp>

using namespace ardent;

TEST_CASE("ardent::Model accepts the three kinds of model", "[core][model]") {
  STATIC_REQUIRE(Model<models::SmallCNN>);
  STATIC_REQUIRE(Model<std::shared_ptr<models::SmallCNNImpl>>);
  STATIC_REQUIRE(Model<torch::jit::Module>);
  STATIC_REQUIRE(Model<torch::nn::Sequential>);
  STATIC_REQUIRE_FALSE(Model<torch::Tensor>);
  STATIC_REQUIRE_FALSE(Model<models::SmallCNNImpl>);  // a module by value is not shareable

  auto ref = ardent_test::load_reference();
  auto holder = ardent_test::small_cnn_copy(ref.model);
  std::shared_ptr<models::SmallCNNImpl> pointer = holder.ptr();
  torch::NoGradGuard no_grad;
  const auto expected = ardent::forward(ref.model, ref.x);
  CHECK(expected.sizes() == torch::IntArrayRef{64, 10});
  CHECK(torch::allclose(ardent::forward(holder, ref.x), expected, 1e-5, 1e-5));
  CHECK(torch::allclose(ardent::forward(pointer, ref.x), expected, 1e-5, 1e-5));
  CHECK(device_of(ref.model) == torch::Device(torch::kCPU));
  CHECK(ardent::parameters(ref.model).size() == 6);
}

TEST_CASE("ModeGuard sets eval mode and restores every submodule's own flag", "[core][mode]") {
  SECTION("C++ frontend modules") {
    models::SmallCNN model;
    model->train();
    auto children = model->children();
    children[1]->eval();  // c2 frozen
    {
      ModeGuard guard(model);
      for (const auto& m : model->modules()) CHECK_FALSE(m->is_training());
    }
    CHECK(model->is_training());
    CHECK(children[0]->is_training());
    CHECK_FALSE(children[1]->is_training());
    CHECK(children[2]->is_training());
    {
      ModeGuard keep(model, /*eval=*/false);
      CHECK(model->is_training());
      CHECK_FALSE(children[1]->is_training());
    }
  }
  SECTION("TorchScript modules") {
    auto script = ardent_test::load_reference().model;
    script.train();
    script.attr("c2").toModule().eval();
    {
      ModeGuard guard(script);
      for (const auto& m : script.modules()) CHECK_FALSE(m.is_training());
    }
    CHECK(script.is_training());
    CHECK(script.attr("c1").toModule().is_training());
    CHECK_FALSE(script.attr("c2").toModule().is_training());
    CHECK(script.attr("fc").toModule().is_training());
  }
}

TEST_CASE("argument checks name the argument, the value and the expectation", "[core][check]") {
  CHECK_THROWS_WITH(check_non_negative("f", "epsilon", -0.5),
                    ContainsSubstring("f: argument 'epsilon' is -0.5, expected a finite value >= 0"));
  CHECK_THROWS_WITH(check_positive("f", "temperature", 0.0), ContainsSubstring("'temperature' is 0"));
  CHECK_NOTHROW(check_non_negative("f", "epsilon", 0.0));
  CHECK_THROWS_WITH(check_input_batch("f", "x", torch::zeros({0, 3}), 0, 1), ContainsSubstring("non-empty"));
  CHECK_NOTHROW(check_input_batch("f", "x", torch::full({2, 3}, 1.0 + 5e-7), 0, 1));
}

TEST_CASE("ardent's models are Cloneable: clone() is a deep copy with the same outputs", "[core][model]") {
  torch::manual_seed(0);
  const auto check = [](auto model, const torch::Tensor& x) {
    model->eval();
    auto copy = std::dynamic_pointer_cast<typename decltype(model)::ContainedType>(model->clone());
    REQUIRE(copy);
    copy->eval();
    torch::NoGradGuard no_grad;
    CHECK(torch::allclose(model->forward(x), copy->forward(x)));
    const auto original = model->parameters();
    const auto cloned = copy->parameters();
    REQUIRE(original.size() == cloned.size());
    for (std::size_t i = 0; i < original.size(); ++i) {
      CHECK(original[i].data_ptr() != cloned[i].data_ptr());
    }
    for (auto& p : cloned) p.add_(1.0);  // changing the copy leaves the original as it was
    CHECK_FALSE(torch::allclose(model->forward(x), copy->forward(x)));
  };
  SECTION("SmallCNN") { check(models::SmallCNN(models::SmallCNNOptions(10).width(4)), torch::rand({2, 1, 28, 28})); }
  SECTION("ResNet18") { check(models::ResNet18(), torch::rand({2, 3, 32, 32})); }
  SECTION("MobileNetV2") { check(models::MobileNetV2(), torch::rand({2, 3, 32, 32})); }
  SECTION("WideResNet-10-1") {
    check(models::WideResNet(models::WideResNetOptions(10, 1)), torch::rand({2, 3, 32, 32}));
  }
}
