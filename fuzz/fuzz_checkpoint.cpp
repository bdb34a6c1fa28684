// AFL++ / libFuzzer entry point of the checkpoint target (see targets.hpp and scripts/fuzz.sh).
#include "targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  torch::set_num_threads(1);
  ardent_fuzz::checkpoint(data, size);
  return 0;
}
