#pragma once
// Kept for existing includes: state dicts are read and written by ardent/io/state_dict.hpp
// (ardent::read_state_dict, write_state_dict, load_state_dict, save_state_dict).

#include "ardent/io/module_archive.hpp"
#include "ardent/io/state_dict.hpp"
