// tests/test_cli.cpp: the `mambagrad` program (built beside the test binary): it works, and a bad
// call prints exactly one `error:` line and exits with status 2.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>

#include "tests/helpers.h"

namespace {

struct Run {
    int status = -1;
    std::string out; // stdout and stderr together
};

Run run_cli(const std::string& args) {
    std::string bin = (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "mambagrad").string();
    REQUIRE(std::filesystem::exists(bin));
    Run r;
    FILE* p = popen((bin + " " + args + " 2>&1").c_str(), "r");
    REQUIRE(p);
    std::array<char, 4096> buf;
    while (size_t n = fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
    int st = pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

void require_one_error_line(const Run& r, const std::string& must_contain) {
    INFO(r.out);
    CHECK(r.status == 2);
    CHECK(r.out.rfind("error: ", 0) == 0);
    CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1);
    CHECK(r.out.find(must_contain) != std::string::npos);
}

} // namespace

TEST_CASE("cli: info and gradcheck run", "[cli]") {
    Run info = run_cli("info");
    INFO(info.out);
    CHECK(info.status == 0);
    CHECK(info.out.find("CPU GEMM") != std::string::npos);
    Run gc = run_cli("gradcheck --op div --device cpu");
    INFO(gc.out);
    CHECK(gc.status == 0);
    CHECK(gc.out.find("ok    div") != std::string::npos);
    Run list = run_cli("gradcheck --list");
    CHECK(list.out.find("matmul") != std::string::npos);
}

TEST_CASE("cli: bad calls print one error line and exit 2", "[cli][errors]") {
    require_one_error_line(run_cli("gradcheck --op nosuchop"), "unknown op 'nosuchop'");
    require_one_error_line(run_cli("gradcheck --op add --device tpu"), "unknown device 'tpu'");
    require_one_error_line(run_cli("gradcheck --op add --device cuda:9"), "cuda:9");
    require_one_error_line(run_cli("gradcheck --bogus"), "--bogus");
    require_one_error_line(run_cli("frobnicate"), "frobnicate");
}
