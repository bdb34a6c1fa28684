// Filled in by its issue.
#include "catch.hpp"
