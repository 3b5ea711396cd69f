// data/read_file.h: reading a whole file the user named (a corpus, a config) without trusting
// what the name points at: a directory, a pipe or a device (/dev/urandom never ends) is refused
// before any byte is read, and so is a file larger than the caller's limit, with one message that
// names the file and what was expected.
#pragma once
#include <cstdint>
#include <string>

namespace mg::data {

// The bytes of the regular file at `path`; `what` names it in errors ("text corpus", "train:
// --config"); at most max_bytes (the error gives the size and the limit).
std::string read_regular_file(const std::string& path, const std::string& what, uint64_t max_bytes);

} // namespace mg::data
