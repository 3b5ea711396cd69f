// train/build_info.h: which source the program was built from, for result rows and `info`.
#pragma once
#include <string>

namespace mg::train {

// The git commit the build compiled (short hash), with "+dirty" when tracked files differed from
// it, or "unknown" outside a git checkout. The Makefile passes it (MG_COMMIT) to
// train/build_info.cpp alone, so a new commit recompiles one file.
std::string build_commit();

} // namespace mg::train
