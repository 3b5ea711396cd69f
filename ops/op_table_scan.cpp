// ops/op_table_scan.cpp: op-table cases for the selective scan.
#include "ops/op_table.h"
#include "ops/selective_scan.h"

namespace mg {

namespace {

// u, delta, A, B, C, D, z, delta_bias for (B, L, D, N): A negative as -exp(A_log) makes it,
// raw delta around 0 so softplus is exercised on both sides of its knee.
std::vector<Tensor> scan_inputs(Options o, Generator& g, int64_t B, int64_t L, int64_t D, int64_t N, bool optional) {
    std::vector<Tensor> v = {
        Tensor::randn({B, L, D}, o, g),
        Tensor::uniform({B, L, D}, -1.5, 1.0, o, g),
        Tensor::uniform({D, N}, -2.0, -0.3, o, g),
        Tensor::randn({B, L, N}, o, g),
        Tensor::randn({B, L, N}, o, g),
    };
    if (optional) {
        v.push_back(Tensor::randn({D}, o, g));
        v.push_back(Tensor::randn({B, L, D}, o, g));
        v.push_back(Tensor::uniform({D}, -0.5, 0.5, o, g));
    }
    return v;
}

} // namespace

void add_scan_cases(std::vector<OpCase>& cases) {
    auto full = [](const std::vector<Tensor>& x) {
        return selective_scan(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]).out;
    };
    auto bare = [](const std::vector<Tensor>& x) {
        return selective_scan(x[0], x[1], x[2], x[3], x[4], {}, {}, {}, {.delta_softplus = false}).out;
    };
    cases.push_back({"selective_scan", "B=2 L=5 D=3 N=4, D skip, z gate, delta bias, softplus",
                     [](Options o, Generator& g) { return scan_inputs(o, g, 2, 5, 3, 4, true); }, full});
    cases.push_back({"selective_scan", "B=1 L=1 D=2 N=3, no optional inputs, no softplus",
                     [](Options o, Generator& g) {
                         auto v = scan_inputs(o, g, 1, 1, 2, 3, false);
                         v[1] = Tensor::uniform({1, 1, 2}, 0.1, 1.0, o, g); // positive delta without softplus
                         return v;
                     }, bare});
    cases.push_back({"selective_scan", "B=1 L=37 D=3 N=17, crosses 16-step chunks and a 16-state group",
                     [](Options o, Generator& g) { return scan_inputs(o, g, 1, 37, 3, 17, true); }, full});
}

} // namespace mg
