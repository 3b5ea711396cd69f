// tests/helpers.h: what every test file shares: the devices to run on, skipping CUDA cases
// without a GPU, closeness checks that say where they fail, gradcheck/parity drivers over the op
// table, a check that an error message names what it should, temporary directories and a way to
// run the `mambagrad` program.
#pragma once
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>
#include <string>
#include <vector>

#include "mambagrad.h"

namespace mg::test {

namespace detail {
std::string& skip_reason();
}

// Ends the current test case as SKIPPED (counted apart from passed) when no GPU is visible.
#define MG_REQUIRE_CUDA()                                                                     \
    do {                                                                                      \
        if (!::mg::cuda::available()) {                                                       \
            ::mg::test::detail::skip_reason() = "no CUDA device";                            \
            return;                                                                           \
        }                                                                                     \
    } while (0)

// cpu, plus cuda:0 when a GPU is present.
std::vector<Device> devices();

// Fails (with the worst element's index and both values) unless |a - b| <= atol + rtol |b|
// elementwise. a and b may be on any device/dtype; compared in double on the host.
void require_close(const Tensor& a, const Tensor& b, double rtol, double atol, const std::string& what);

// Runs gradcheck (f64) on every op-table case of `op` on `device`.
void gradcheck_op(const std::string& op, Device device);
// Runs every case of `op` in f32 on CPU and on CUDA from the same inputs and compares the
// outputs and every input's gradient.
void parity_op(const std::string& op);

// The call must throw mg::Error whose message contains every one of `parts`.
#define REQUIRE_ERROR_WITH(expr, ...)                                                        \
    do {                                                                                      \
        std::vector<std::string> parts_ = {__VA_ARGS__};                                      \
        try {                                                                                 \
            (void)(expr);                                                                     \
            FAIL("expected mg::Error from " #expr);                                          \
        } catch (const ::mg::Error& e_) {                                                     \
            std::string msg_ = e_.what();                                                     \
            INFO("message: " << msg_);                                                        \
            for (const auto& p_ : parts_) {                                                   \
                INFO("expected to contain: " << p_);                                         \
                CHECK(msg_.find(p_) != std::string::npos);                                   \
            }                                                                                 \
        }                                                                                     \
    } while (0)

// A fresh directory per test case, /tmp/mg_test_<tag>_<pid>, removed at the end of the case.
struct TempDir {
    std::filesystem::path path;
    explicit TempDir(const std::string& tag);
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string file(const std::string& name) const { return (path / name).string(); }
    std::vector<std::string> listing() const; // file names, sorted
};

// Runs the `mambagrad` program built beside the test binary with `args` (a shell command line).
struct Run {
    int status = -1;
    std::string out; // stdout and stderr together
};
Run run_cli(const std::string& args);
// The path of that program (for tests that start it themselves).
std::string cli_binary();
// The run failed the CLI's way: exit status 2 and exactly one line, "error: ...", that contains
// every one of `must_contain`.
void require_one_error_line(const Run& r, const std::vector<std::string>& must_contain);

} // namespace mg::test
