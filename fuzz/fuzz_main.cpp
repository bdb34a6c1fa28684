// The AFL++ / libFuzzer entry point of every fuzz target (see targets.hpp and scripts/fuzz.sh):
// one binary, the target chosen by the environment variable ARDENT_FUZZ_TARGET (state_dict, idx,
// cifar or checkpoint), so that the slow instrumented build of LibTorch's headers happens once.
//
// AFL++ runs it as `ardent_fuzz FILE` (afl-fuzz's @@): main reads the file and calls the target
// once. The fork server that afl-as puts into the instrumented code forks each run after LibTorch's
// start, so a run costs the parse alone. (Linking AFL++'s libAFLDriver and compiler runtime into an
// afl-as build adds a second fork server, and afl-fuzz then times out on every input.) Defining
// ARDENT_LIBFUZZER leaves main to libFuzzer.
#include "targets.hpp"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  static const auto target = [] {
    const char* name = std::getenv("ARDENT_FUZZ_TARGET");
    const std::string chosen = name != nullptr ? name : "";
    torch::set_num_threads(1);
    if (chosen == "state_dict") return &ardent_fuzz::state_dict;
    if (chosen == "idx") return &ardent_fuzz::idx;
    if (chosen == "cifar") return &ardent_fuzz::cifar;
    if (chosen == "checkpoint") return &ardent_fuzz::checkpoint;
    if (chosen == "image") return &ardent_fuzz::image;
    std::fprintf(stderr, "ARDENT_FUZZ_TARGET must be state_dict, idx, cifar, checkpoint or image\n");
    std::abort();
  }();
  target(data, size);
  return 0;
}

#ifndef ARDENT_LIBFUZZER
int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: ARDENT_FUZZ_TARGET=<target> %s FILE\n", argv[0]);
    return 2;
  }
  std::ifstream file(argv[1], std::ios::binary);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  return LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
}
#endif
