// The AFL++ / libFuzzer entry point of every fuzz target (see targets.hpp and scripts/fuzz.sh):
// one binary, the target chosen by the environment variable ARDENT_FUZZ_TARGET (state_dict, idx,
// cifar or checkpoint), so that the slow instrumented build of LibTorch's headers happens once.
#include "targets.hpp"

#include <cstdlib>
#include <cstring>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  static const auto target = [] {
    const char* name = std::getenv("ARDENT_FUZZ_TARGET");
    const std::string chosen = name != nullptr ? name : "";
    torch::set_num_threads(1);
    if (chosen == "state_dict") return &ardent_fuzz::state_dict;
    if (chosen == "idx") return &ardent_fuzz::idx;
    if (chosen == "cifar") return &ardent_fuzz::cifar;
    if (chosen == "checkpoint") return &ardent_fuzz::checkpoint;
    std::fprintf(stderr, "ARDENT_FUZZ_TARGET must be state_dict, idx, cifar or checkpoint\n");
    std::abort();
  }();
  target(data, size);
  return 0;
}
