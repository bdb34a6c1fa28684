// Writes the models that the ONNX checks (ctest -L onnx) run: the trained SmallCNN of
// tests/data/attack_vectors, a MobileNetV2 (width 0.25) and a WideResNet-10-1 (random weights and
// BatchNorm statistics; its pre-activation BatchNorms are layers of their own),
// each as a float export and an int8 (QDQ) export, with input images and ardent's logits for them,
// and manifest.json saying what each check compares.
//   ardent_onnx_export <data dir> <out dir>
#include <ardent/deploy.hpp>

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

namespace {

torch::Tensor read_bin(const std::filesystem::path& path, std::vector<int64_t> shape, torch::Dtype dtype) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in.good(), "cannot open ", path.string());
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto t = torch::empty(shape, dtype);
  TORCH_CHECK(bytes.size() == static_cast<std::size_t>(t.nbytes()), path.string(), " has the wrong size");
  std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

void write_bin(const std::filesystem::path& path, const torch::Tensor& t) {
  const auto c = t.contiguous().to(torch::kFloat32);
  std::ofstream(path, std::ios::binary)
      .write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
}

// Running statistics away from (0, 1), in eval mode: the folds and BatchNorm layers do something.
void randomise_batch_norm(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& m : model.modules()) {
    if (auto* bn = m->as<torch::nn::BatchNorm2dImpl>()) {
      bn->running_mean.uniform_(-0.1, 0.1);
      bn->running_var.uniform_(0.5, 1.5);
    }
  }
  model.eval();
}

template <typename M>
void export_pair(M& model, const std::string& name, const torch::Tensor& images, const std::filesystem::path& out,
                 nlohmann::json& manifest, double int8_agreement) {
  torch::NoGradGuard no_grad;
  const auto example = images.slice(0, 0, 1);
  auto q = ardent::deploy::quantize(model, images, ardent::deploy::QuantizeOptions().engine("onednn"));
  ardent::deploy::export_onnx(model, example, (out / (name + ".onnx")).string());
  ardent::deploy::export_onnx(q, example, (out / (name + ".int8.onnx")).string());
  write_bin(out / (name + ".images.bin"), images);
  write_bin(out / (name + ".float_logits.bin"), model->forward(images));
  write_bin(out / (name + ".int8_logits.bin"), ardent::forward(q, images));
  std::vector<int64_t> shape = images.sizes().vec();
  manifest.push_back({{"model", name + ".onnx"},
                      {"images", name + ".images.bin"},
                      {"shape", shape},
                      {"expected", name + ".float_logits.bin"},
                      {"max_abs_difference", 1e-4}});
  manifest.push_back({{"model", name + ".int8.onnx"},
                      {"images", name + ".images.bin"},
                      {"shape", shape},
                      {"expected", name + ".int8_logits.bin"},
                      {"min_argmax_agreement", int8_agreement}});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: ardent_onnx_export <tests/data dir> <out dir>\n";
    return 2;
  }
  const std::filesystem::path data = argv[1];
  const std::filesystem::path out = argv[2];
  std::filesystem::create_directories(out);
  torch::manual_seed(0);
  nlohmann::json manifest = nlohmann::json::array();

  auto script = torch::jit::load((data / "attack_vectors" / "smallcnn.pt").string());
  ardent::models::SmallCNN small(ardent::models::SmallCNNOptions(10).width(16));
  {
    torch::NoGradGuard no_grad;
    auto params = small->named_parameters();
    for (const auto& p : script.named_parameters(/*recurse=*/true)) params[p.name].copy_(p.value);
  }
  small->eval();
  const auto x = read_bin(data / "attack_vectors" / "x.bin", {64, 1, 28, 28}, torch::kFloat32);
  export_pair(small, "smallcnn", x, out, manifest, 0.99);

  // Random weights give logits close together: the int8 argmax is checked loosely, the logits exactly.
  ardent::models::MobileNetV2 mobilenet(ardent::models::MobileNetV2Options(10).width_multiplier(0.25));
  randomise_batch_norm(*mobilenet);
  export_pair(mobilenet, "mobilenetv2", torch::rand({32, 3, 32, 32}), out, manifest, 0.9);
  ardent::models::WideResNet wide(ardent::models::WideResNetOptions(10, 1));
  randomise_batch_norm(*wide);
  export_pair(wide, "wideresnet", torch::rand({32, 3, 32, 32}), out, manifest, 0.9);
  std::ofstream(out / "manifest.json") << manifest.dump(2);
  std::cout << "wrote " << manifest.size() << " ONNX checks to " << out.string() << "\n";
  return 0;
}
