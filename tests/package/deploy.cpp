// The deploy component, found with find_package(ardent COMPONENTS deploy): a user's model quantized
// on the installed package's headers and ONNX's protobuf classes, saved, loaded and exported.
#include <ardent/ardent.hpp>
#include <ardent/deploy.hpp>

#include <filesystem>
#include <iostream>

int main() {
  torch::manual_seed(0);
  torch::nn::Sequential model(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3).padding(1)),
                              torch::nn::BatchNorm2d(4), torch::nn::ReLU(), torch::nn::MaxPool2d(2),
                              torch::nn::Flatten(), torch::nn::Linear(4 * 4 * 4, 3));
  model->eval();
  const auto images = torch::rand({16, 1, 8, 8});
  auto int8 = ardent::deploy::quantize(model, images);
  const auto dir = std::filesystem::temp_directory_path() / "ardent_consumer_deploy";
  std::filesystem::create_directories(dir);
  ardent::deploy::save_int8(int8, dir / "model.int8.pt");
  auto loaded = ardent::deploy::load_int8(dir / "model.int8.pt");
  ardent::deploy::export_onnx(loaded, images.slice(0, 0, 1), (dir / "model.int8.onnx").string());
  torch::NoGradGuard no_grad;
  const bool same = torch::equal(ardent::forward(loaded, images), ardent::forward(int8, images));
  const bool exported = std::filesystem::file_size(dir / "model.int8.onnx") > 0;
  std::filesystem::remove_all(dir);
  if (!same || !exported) {
    std::cerr << "consumer_deploy: the loaded int8 model differs or nothing was exported\n";
    return 1;
  }
  std::cout << "consumer_deploy: ok\n";
  return 0;
}
