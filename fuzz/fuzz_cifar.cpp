// AFL++ / libFuzzer entry point of the cifar target (see targets.hpp and scripts/fuzz.sh).
#include "targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  torch::set_num_threads(1);
  ardent_fuzz::cifar(data, size);
  return 0;
}
