// fuzz/fuzz_input.h: what every libFuzzer target here shares (README "Reliability"; `make fuzz`).
//
// The readers under test take paths (they stat, bound and read the file themselves), so each input
// is written to an in-memory file (memfd_create) and handed over as /proc/self/fd/N: no disk
// traffic, and the regular-file checks see a regular file.
//
// The promise being fuzzed: bad input gets an mg::Error whose message is one short printable
// line; nothing else. So a target catches mg::Error only and checks its message; any other
// exception (a std::bad_alloc, nlohmann's type errors, std::out_of_range) escapes and libFuzzer
// reports it as a finding, as it does a crash, a hang, a leak or a sanitizer report.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tensor/error.h"
#include "tensor/json.h"

namespace mg::fuzz {

// One in-memory file per process, rewritten for each input.
inline const std::string& input_file(const uint8_t* data, size_t size) {
    static const int fd = [] {
        const int f = memfd_create("mambagrad-fuzz", 0);
        if (f < 0) std::perror("memfd_create"), std::abort();
        return f;
    }();
    static const std::string path = "/proc/self/fd/" + std::to_string(fd);
    if (ftruncate(fd, 0) != 0 || (size > 0 && pwrite(fd, data, size, 0) != ssize_t(size))) std::abort();
    return path;
}

// Runs f; an mg::Error is the expected answer to a bad input, but its message must be one
// printable line (well-formed UTF-8, no control characters) of at most 4096 bytes, and must not
// show nlohmann's internal tags unless the input itself held that text (a message may quote it).
template <typename F> void expect_clean(std::string_view input, F&& f) {
    try {
        f();
    } catch (const mg::Error& e) {
        const std::string_view m = e.what();
        bool ok = !m.empty() && m.size() <= 4096 && utf8_invalid_at(m) == std::string_view::npos && !has_control_char(m);
        if (m.find("[json.exception.") != std::string_view::npos && input.find("json.exception") == std::string_view::npos)
            ok = false;
        if (!ok) {
            std::fprintf(stderr, "fuzz: a bad error message (%zu bytes):\n%s\n", m.size(), text_excerpt(m, 8192).c_str());
            std::abort();
        }
    }
}

} // namespace mg::fuzz
