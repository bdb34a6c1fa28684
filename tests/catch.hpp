#pragma once
// Catch2 v2 or v3, behind one include.
#include "test_config.hpp"
#ifdef ARDENT_CATCH3
#include <catch2/catch_all.hpp>
using Catch::Matchers::ContainsSubstring;
#else
#include <catch2/catch.hpp>
inline auto ContainsSubstring(const std::string& s) { return Catch::Matchers::Contains(s); }
#endif
