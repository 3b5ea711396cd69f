// train/build_info.cpp: see train/build_info.h.
#include "train/build_info.h"

#ifndef MG_COMMIT
#define MG_COMMIT "unknown"
#endif

namespace mg::train {

std::string build_commit() { return MG_COMMIT; }

} // namespace mg::train
