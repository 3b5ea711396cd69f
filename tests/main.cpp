// tests/main.cpp: the Catch2 runner. Counts test cases itself and ends with the line
// `N passed, N failed` that CI reads (plus a line naming the CUDA cases skipped on a machine
// without a GPU, before it).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "cuda/runtime.h"
#include "tests/helpers.h"

namespace {

int g_passed = 0, g_failed = 0, g_skipped = 0;

struct CountingListener : Catch::TestEventListenerBase {
    using TestEventListenerBase::TestEventListenerBase;
    void testCaseStarting(Catch::TestCaseInfo const&) override { mg::test::detail::skip_reason().clear(); }
    void testCaseEnded(Catch::TestCaseStats const& stats) override {
        const std::string& skip = mg::test::detail::skip_reason();
        if (stats.totals.assertions.failed > 0) ++g_failed;
        else if (!skip.empty()) {
            ++g_skipped;
            fmt::print("SKIPPED: {} ({})\n", stats.testInfo.name, skip);
        } else ++g_passed;
    }
};

} // namespace

CATCH_REGISTER_LISTENER(CountingListener)

int main(int argc, char** argv) {
    Catch::Session session;
    fmt::print("mambagrad tests: {} CUDA device(s){}\n", mg::cuda::device_count(),
               mg::cuda::built_with_cuda() ? "" : " (built with CUDA=0)");
    int rc = session.run(argc, argv);
    // the caching allocator's blocks back to the driver, so that compute-sanitizer's leak check
    // (tools/gpu_check.sh) reports only memory that something still holds
    if (mg::cuda::device_count() > 0) mg::cuda::empty_cache();
    if (g_skipped > 0) fmt::print("{} skipped (no CUDA device)\n", g_skipped);
    fmt::print("{} passed, {} failed\n", g_passed, g_failed);
    return rc;
}
