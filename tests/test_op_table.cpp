// tests/test_op_table.cpp: the checks every differentiable op gets, driven by the one op table
// (ops/op_table.h): fp64 gradcheck of every case on the CPU and on CUDA, and CUDA-vs-CPU parity
// of outputs and gradients in f32. Each op and case is its own SECTION, named by the op and its
// shapes (run one with: mg_tests "op table: gradcheck on cpu" -c "matmul: (3,4) @ (4,5) on cpu f64").
// A name in kOpNames without a case fails here, so a new op cannot land without its checks.
#include "ops/op_table.h"
#include "tests/helpers.h"

using namespace mg;

TEST_CASE("op table: every op has a gradcheck case, and unknown ops are named", "[optable]") {
    for (std::string_view op : kOpNames) {
        INFO(op);
        CHECK(!op_cases_for(op).empty());
    }
    for (const OpCase& c : op_cases()) {
        INFO(c.op);
        CHECK(std::find(kOpNames.begin(), kOpNames.end(), c.op) != kOpNames.end());
    }
    REQUIRE_ERROR_WITH(op_cases_for("conv9"), "unknown op 'conv9'", "matmul");
}

TEST_CASE("op table: gradcheck on cpu", "[optable][gradcheck]") {
    for (std::string_view op : kOpNames) mg::test::gradcheck_op(std::string(op), Device::cpu());
}

TEST_CASE("op table: gradcheck on cuda", "[optable][gradcheck][cuda]") {
    MG_REQUIRE_CUDA();
    for (std::string_view op : kOpNames) mg::test::gradcheck_op(std::string(op), Device::cuda(0));
}

TEST_CASE("op table: cuda matches cpu in f32", "[optable][parity][cuda]") {
    MG_REQUIRE_CUDA();
    for (std::string_view op : kOpNames) mg::test::parity_op(std::string(op));
}
