// tests/test_view.cpp: gradients of the views (reshape, permute, narrow, expand, squeeze,
// unsqueeze) on each device, and that every op in the op table has a case.
#include "ops/op_table.h"
#include "tests/helpers.h"

using namespace mg;

static const char* kOps[] = {"reshape", "permute", "narrow", "expand", "squeeze_unsqueeze"};
TEST_CASE("views: gradcheck on cpu", "[view][gradcheck]") {
    for (const char* op : kOps) mg::test::gradcheck_op(op, Device::cpu());
}
TEST_CASE("views: gradcheck on cuda", "[view][gradcheck][cuda]") {
    MG_REQUIRE_CUDA();
    for (const char* op : kOps) mg::test::gradcheck_op(op, Device::cuda(0));
}
TEST_CASE("views: cuda matches cpu in f32", "[view][parity][cuda]") {
    MG_REQUIRE_CUDA();
    for (const char* op : kOps) mg::test::parity_op(op);
}

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
