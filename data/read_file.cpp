// data/read_file.cpp: see data/read_file.h.
#include "data/read_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "tensor/check.h"

namespace mg::data {

std::string read_regular_file(const std::string& path, const std::string& what, uint64_t max_bytes) {
    struct stat st = {};
    MG_CHECK(::stat(path.c_str(), &st) == 0, "{}: cannot read '{}': {}", what, path, std::strerror(errno));
    MG_CHECK(!S_ISDIR(st.st_mode), "{}: '{}' is a directory, expected a file", what, path);
    MG_CHECK(S_ISREG(st.st_mode), "{}: '{}' is not a regular file (a pipe, socket or device), expected a file", what,
             path);
    MG_CHECK(uint64_t(st.st_size) <= max_bytes, "{}: '{}' is {} bytes, more than the limit of {}", what, path,
             uint64_t(st.st_size), max_bytes);
    std::ifstream in(path, std::ios::binary);
    MG_CHECK(in.good(), "{}: cannot read '{}': {}", what, path, std::strerror(errno));
    std::string bytes(size_t(st.st_size), '\0');
    in.read(bytes.data(), std::streamsize(bytes.size()));
    MG_CHECK(in.gcount() == std::streamsize(bytes.size()), "{}: '{}' changed while it was read ({} of {} bytes)", what,
             path, in.gcount(), bytes.size());
    return bytes;
}

} // namespace mg::data
