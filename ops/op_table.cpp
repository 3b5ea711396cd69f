// ops/op_table.cpp: see ops/op_table.h.
#include "ops/op_table.h"

#include "ops/cat.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "tensor/check.h"

namespace mg {

namespace {

using Inputs = std::vector<Tensor>;

// Input factories.
auto randn_of(std::vector<Shape> shapes) {
    return [shapes](Options o, Generator& g) {
        Inputs v;
        for (const Shape& s : shapes) v.push_back(Tensor::randn(s, o, g));
        return v;
    };
}
// Values in [0.5, 2]: away from the poles of log, sqrt, rsqrt, division.
auto positive_of(std::vector<Shape> shapes) {
    return [shapes](Options o, Generator& g) {
        Inputs v;
        for (const Shape& s : shapes) v.push_back(Tensor::uniform(s, 0.5, 2.0, o, g));
        return v;
    };
}

std::vector<OpCase> build() {
    std::vector<OpCase> c;
    auto add_case = [&](std::string op, std::string label, auto inputs, auto fn) {
        c.push_back({std::move(op), std::move(label), inputs, fn});
    };
    // elementwise binary, with broadcasting and a non-contiguous operand
    add_case("add", "a (3,1,5) + b (4,5)", randn_of({{3, 1, 5}, {4, 5}}), [](const Inputs& x) { return x[0] + x[1]; });
    add_case("add", "a (7) + scalar b ()", randn_of({{7}, {}}), [](const Inputs& x) { return x[0] + x[1]; });
    add_case("sub", "a (2,3) - b (5,1,3)", randn_of({{2, 3}, {5, 1, 3}}), [](const Inputs& x) { return x[0] - x[1]; });
    add_case("mul", "a (3,1,5) * b (4,5)", randn_of({{3, 1, 5}, {4, 5}}), [](const Inputs& x) { return x[0] * x[1]; });
    add_case("mul", "a^T (5,3) * b (5,3), a transposed view", randn_of({{3, 5}, {5, 3}}),
             [](const Inputs& x) { return x[0].transpose(0, 1) * x[1]; });
    add_case("mul", "x * x (same tensor twice)", randn_of({{4, 3}}), [](const Inputs& x) { return x[0] * x[0]; });
    add_case("div", "a (4,5) / b (5)", positive_of({{4, 5}, {5}}), [](const Inputs& x) { return x[0] / x[1]; });
    // elementwise unary
    add_case("neg", "-x (3,7)", randn_of({{3, 7}}), [](const Inputs& x) { return -x[0]; });
    add_case("exp", "exp x (2,3,5)", randn_of({{2, 3, 5}}), [](const Inputs& x) { return exp(x[0]); });
    add_case("log", "log x (11)", positive_of({{11}}), [](const Inputs& x) { return log(x[0]); });
    add_case("sqrt", "sqrt x (3,3)", positive_of({{3, 3}}), [](const Inputs& x) { return sqrt(x[0]); });
    add_case("rsqrt", "rsqrt x (5,1)", positive_of({{5, 1}}), [](const Inputs& x) { return rsqrt(x[0]); });
    add_case("pow", "x^3 (2,5), x of both signs", randn_of({{2, 5}}), [](const Inputs& x) { return pow(x[0], 3.0); });
    add_case("pow", "x^-1.5 (7)", positive_of({{7}}), [](const Inputs& x) { return pow(x[0], -1.5); });
    add_case("softshrink", "softshrink(x, 0.4) (3,7), x of both signs", randn_of({{3, 7}}),
             [](const Inputs& x) { return softshrink(x[0], 0.4); });
    // reductions
    add_case("sum", "sum x (3,4,5) over dim 1", randn_of({{3, 4, 5}}), [](const Inputs& x) { return sum(x[0], {1}); });
    add_case("sum", "sum x (3,4,5) over dims 0,2 keepdim", randn_of({{3, 4, 5}}), [](const Inputs& x) { return sum(x[0], {0, 2}, true); });
    add_case("sum", "sum x (2,3) over all", randn_of({{2, 3}}), [](const Inputs& x) { return sum(x[0]); });
    add_case("mean", "mean x (3,7) over dim -1", randn_of({{3, 7}}), [](const Inputs& x) { return mean(x[0], {-1}); });
    add_case("mean", "mean x (2,3,2) over all keepdim", randn_of({{2, 3, 2}}), [](const Inputs& x) { return mean(x[0], {}, true); });
    add_case("max", "max x (3,5,2) over dim 1", randn_of({{3, 5, 2}}), [](const Inputs& x) { return max(x[0], {1}); });
    add_case("max", "max x (13) over all", randn_of({{13}}), [](const Inputs& x) { return max(x[0]); });
    // matmul
    add_case("matmul", "(3,4) @ (4,5)", randn_of({{3, 4}, {4, 5}}), [](const Inputs& x) { return matmul(x[0], x[1]); });
    add_case("matmul", "(2,3,4) @ (4,5), shared b", randn_of({{2, 3, 4}, {4, 5}}), [](const Inputs& x) { return matmul(x[0], x[1]); });
    add_case("matmul", "(2,1,3,4) @ (5,4,2), broadcast batch", randn_of({{2, 1, 3, 4}, {5, 4, 2}}), [](const Inputs& x) { return matmul(x[0], x[1]); });
    add_case("matmul", "(3,4)^T @ (3,2), transposed view", randn_of({{3, 4}, {3, 2}}), [](const Inputs& x) { return matmul(x[0].transpose(0, 1), x[1]); });
    add_case("matmul", "(1,1) @ (1,1)", randn_of({{1, 1}, {1, 1}}), [](const Inputs& x) { return matmul(x[0], x[1]); });
    // cat / split
    add_case("cat", "cat (2,3),(2,1),(2,4) on dim 1", randn_of({{2, 3}, {2, 1}, {2, 4}}), [](const Inputs& x) { return cat(x, 1); });
    add_case("cat", "cat (1,3),(4,3) on dim 0", randn_of({{1, 3}, {4, 3}}), [](const Inputs& x) { return cat(x, 0); });
    add_case("split", "split (5,4) into 2,3 on dim 0, second piece", randn_of({{5, 4}}),
             [](const Inputs& x) { return split(x[0], std::vector<int64_t>{2, 3}, 0)[1]; });
    add_case("split", "split (3,7) by 3 on dim 1, pieces reordered", randn_of({{3, 7}}), [](const Inputs& x) {
        auto p = split(x[0], 3, 1);
        return cat({p[2], p[0], p[1] * p[1]}, 1);
    });
    add_case("flip", "flip (3,4,5)^T(0,2) on dim 1, transposed view", randn_of({{3, 4, 5}}),
             [](const Inputs& x) { return flip(x[0].transpose(0, 2), 1); });
    add_case("flip", "flip (7) on dim -1, then * itself", randn_of({{7}}),
             [](const Inputs& x) { return flip(x[0], -1) * x[0]; });
    // views
    add_case("reshape", "reshape (2,3,4) -> (4,-1)", randn_of({{2, 3, 4}}), [](const Inputs& x) { return x[0].reshape({4, -1}) * 1.0; });
    add_case("reshape", "reshape of a transposed view (3,4)^T -> (12)", randn_of({{3, 4}}),
             [](const Inputs& x) { return x[0].transpose(0, 1).reshape({12}); });
    add_case("permute", "permute (2,3,4) by (2,0,1)", randn_of({{2, 3, 4}}), [](const Inputs& x) { return x[0].permute({2, 0, 1}).contiguous(); });
    add_case("narrow", "narrow (5,3) dim 0 [1,4)", randn_of({{5, 3}}), [](const Inputs& x) { return x[0].narrow(0, 1, 3); });
    add_case("expand", "expand (3,1) -> (2,3,4)", randn_of({{3, 1}}), [](const Inputs& x) { return x[0].expand({2, 3, 4}) * 1.0; });
    add_case("squeeze_unsqueeze", "unsqueeze (3,4) at 1, squeeze dim 0 of (1,5)", randn_of({{3, 4}, {1, 5}}),
             [](const Inputs& x) { return sum(x[0].unsqueeze(1), {2}) + x[1].squeeze(0); });
    add_nn_cases(c);
    add_conv_cases(c);
    add_scan_cases(c);
    add_transformer_cases(c);
    return c;
}

} // namespace

const std::vector<OpCase>& op_cases() {
    static const std::vector<OpCase> cases = build();
    return cases;
}

std::vector<const OpCase*> op_cases_for(std::string_view op) {
    std::vector<const OpCase*> out;
    for (const OpCase& c : op_cases())
        if (c.op == op) out.push_back(&c);
    MG_CHECK(!out.empty(), "gradcheck: unknown op '{}'; known ops: {}", op, fmt::join(kOpNames, ", "));
    return out;
}

} // namespace mg
