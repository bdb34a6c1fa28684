#pragma once
// The ardent::Model concept: what the library can run as a network. Three kinds are accepted with
// no wrapper written by the user:
//   - torch::nn::ModuleHolder<Impl> (TORCH_MODULE types such as ardent's models),
//   - std::shared_ptr<Impl> of a torch::nn::Module with `Tensor forward(Tensor)`,
//   - torch::jit::Module (a TorchScript model loaded with torch::jit::load).
// ardent::forward(model, x) runs any of them; ardent::as_device(model) tells where it lives.

#include <torch/script.h>
#include <torch/torch.h>

#include <concepts>
#include <memory>
#include <optional>
#include <type_traits>

namespace ardent {

namespace detail {
template <typename T>
struct is_shared_ptr : std::false_type {};
template <typename T>
struct is_shared_ptr<std::shared_ptr<T>> : std::true_type {};

// A trait, not a concept conjunction: naming M::ContainedType inside a concept's normal form
// is a hard error for types without it.
template <typename M, typename = void>
struct is_module_holder : std::false_type {};
template <typename M>
struct is_module_holder<M, std::void_t<typename M::ContainedType>>
    : std::is_base_of<torch::nn::ModuleHolder<typename M::ContainedType>, M> {};
}  // namespace detail

/// A TORCH_MODULE type (torch::nn::ModuleHolder<Impl>).
template <typename M>
concept IsModuleHolder = detail::is_module_holder<M>::value;

/// A C++ frontend module reached through `->`: a ModuleHolder or a shared_ptr to a Module.
template <typename M>
concept ModulePointer = (IsModuleHolder<M> || detail::is_shared_ptr<M>::value) && requires(M& model) {
  requires std::derived_from<std::remove_cvref_t<decltype(*model)>, torch::nn::Module>;
};

/// ... whose forward maps one tensor to one tensor.
template <typename M>
concept ModuleWithTensorForward = ModulePointer<M> && requires(M& model, const torch::Tensor& x) {
  { model->forward(x) } -> std::convertible_to<torch::Tensor>;
};

/// A TorchScript module.
template <typename M>
concept ScriptModule = std::same_as<std::remove_cvref_t<M>, torch::jit::Module>;

/// Anything ardent can use as a network: logits = ardent::forward(model, x).
template <typename M>
concept Model = ModuleWithTensorForward<M> || ScriptModule<M>;

/// The shared_ptr<Impl> behind a C++ frontend model.
template <ModulePointer M>
auto module_pointer(M& model) {
  if constexpr (detail::is_shared_ptr<M>::value) {
    return model;
  } else {
    return model.ptr();
  }
}

/// Runs the model on a batch and returns its output (logits for a classifier).
template <Model M>
torch::Tensor forward(M& model, const torch::Tensor& x) {
  if constexpr (ScriptModule<M>) {
    return model.forward({x}).toTensor();
  } else {
    return model->forward(x);
  }
}

/// The parameters of a model (for a TorchScript module: of every submodule).
template <Model M>
std::vector<torch::Tensor> parameters(M& model) {
  if constexpr (ScriptModule<M>) {
    std::vector<torch::Tensor> result;
    for (const auto& p : model.parameters(/*recurse=*/true)) result.push_back(p);
    return result;
  } else {
    return model->parameters(/*recurse=*/true);
  }
}

/// The device of the model's first parameter, or none for a model without parameters.
template <Model M>
std::optional<torch::Device> device_of(M& model) {
  if constexpr (ScriptModule<M>) {
    for (const auto& p : model.parameters(/*recurse=*/true)) return p.device();
  } else {
    for (const auto& p : model->parameters(/*recurse=*/true)) return p.device();
  }
  return std::nullopt;
}

/// The dtype of the model's first floating-point parameter, or none for a model without one.
template <Model M>
std::optional<torch::ScalarType> dtype_of(M& model) {
  for (const auto& p : parameters(model)) {
    if (p.is_floating_point()) return p.scalar_type();
  }
  return std::nullopt;
}

}  // namespace ardent
