#pragma once
// ardent's version, the one source of it: CMakeLists.txt reads these three numbers for the package
// version, so `find_package(ardent 0.2)` and `ARDENT_VERSION` always agree. Semantic versioning:
// a minor release may add to the public API (docs/design.md); only a major one may change it.

#define ARDENT_VERSION_MAJOR 0
#define ARDENT_VERSION_MINOR 2
#define ARDENT_VERSION_PATCH 0

/// One number for preprocessor comparisons: `#if ARDENT_VERSION >= 200` means 0.2.0 or later.
#define ARDENT_VERSION (ARDENT_VERSION_MAJOR * 10000 + ARDENT_VERSION_MINOR * 100 + ARDENT_VERSION_PATCH)

namespace ardent {

#define ARDENT_VERSION_TEXT_(major, minor, patch) #major "." #minor "." #patch
#define ARDENT_VERSION_TEXT(major, minor, patch) ARDENT_VERSION_TEXT_(major, minor, patch)

/// The version as text, "major.minor.patch".
inline constexpr const char* version_string = ARDENT_VERSION_TEXT(ARDENT_VERSION_MAJOR, ARDENT_VERSION_MINOR,
                                                                  ARDENT_VERSION_PATCH);

}  // namespace ardent
