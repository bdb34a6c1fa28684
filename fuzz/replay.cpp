// Replays fuzz inputs through a target: `ardent_fuzz_replay <target> <file or directory>...`.
// Built with AddressSanitizer and UndefinedBehaviorSanitizer in the sanitizer build
// (scripts/sanitize.sh), where ctest's `fuzz` label runs it over fuzz/corpus/<target>: the seeds and
// every crashing input ever found, kept as regression cases.
#include "targets.hpp"

#include <fmt/format.h>

#include <fstream>
#include <iterator>
#include <map>

int main(int argc, char** argv) {
  const std::map<std::string, void (*)(const uint8_t*, std::size_t)> targets{{"state_dict", ardent_fuzz::state_dict},
                                                                             {"idx", ardent_fuzz::idx},
                                                                             {"cifar", ardent_fuzz::cifar},
                                                                             {"checkpoint", ardent_fuzz::checkpoint},
                                                                             {"image", ardent_fuzz::image}};
  if (argc < 3 || targets.count(argv[1]) == 0) {
    fmt::print(stderr, "usage: {} state_dict|idx|cifar|checkpoint|image <file or directory>...\n", argv[0]);
    return 2;
  }
  torch::set_num_threads(1);
  const auto target = targets.at(argv[1]);
  int count = 0;
  auto run = [&](const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    target(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    ++count;
  };
  for (int i = 2; i < argc; ++i) {
    const std::filesystem::path arg = argv[i];
    if (std::filesystem::is_directory(arg)) {
      for (const auto& entry : std::filesystem::recursive_directory_iterator(arg)) {
        if (entry.is_regular_file() && entry.path().filename() != "README.md") run(entry.path());
      }
    } else {
      run(arg);
    }
  }
  fmt::print("{}: {} inputs replayed, none crashed\n", argv[1], count);
  return count > 0 ? 0 : 1;
}
