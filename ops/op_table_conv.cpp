// ops/op_table_conv.cpp: op-table cases for causal depthwise conv1d and the FFT long convolution.
// Inputs are {x (B,L,D), weight (D,K)} or {x, weight, bias (D)}; sizes stay small because
// gradcheck runs two forward passes per input element.
#include "ops/conv1d.h"
#include "ops/fft_conv.h"
#include "ops/op_table.h"

namespace mg {

namespace {

using Inputs = std::vector<Tensor>;

// x (B,L,D), weight (D,K) [, bias (D)], all N(0,1).
auto conv_inputs(int64_t B, int64_t L, int64_t D, int64_t K, bool bias) {
    return [=](Options o, Generator& g) {
        Inputs v = {Tensor::randn({B, L, D}, o, g), Tensor::randn({D, K}, o, g)};
        if (bias) v.push_back(Tensor::randn({D}, o, g));
        return v;
    };
}
Tensor bias_of(const Inputs& x) { return x.size() > 2 ? x[2] : Tensor(); }

} // namespace

void add_conv_cases(std::vector<OpCase>& cases) {
    auto conv = [&](std::string label, int64_t B, int64_t L, int64_t D, int64_t K, bool bias, bool silu) {
        cases.push_back({"conv1d", std::move(label), conv_inputs(B, L, D, K, bias),
                         [silu](const Inputs& x) { return causal_conv1d(x[0], x[1], bias_of(x), silu); }});
    };
    conv("x (2,7,3) K=4 with bias", 2, 7, 3, 4, true, false);
    conv("x (2,7,3) K=4 no bias, silu", 2, 7, 3, 4, false, true);
    conv("x (1,1,5) L=1 K=4 bias, silu", 1, 1, 5, 4, true, true);
    conv("x (2,11,5) L prime, odd D, K=4 bias, silu", 2, 11, 5, 4, true, true);
    conv("x (1,3,3) K=6 > L with bias", 1, 3, 3, 6, true, false);
    conv("x (2,11,3) K=9 (unfused CUDA backward) bias, silu", 2, 11, 3, 9, true, true);
    conv("x (1,40,2) K=35 (two 32-tap chunks) no bias", 1, 40, 2, 35, false, false);
    cases.push_back({"conv1d", "x^T view of (2,3,7) -> (2,7,3), K=4 bias, silu",
                     [](Options o, Generator& g) {
                         return Inputs{Tensor::randn({2, 3, 7}, o, g), Tensor::randn({3, 4}, o, g),
                                       Tensor::randn({3}, o, g)};
                     },
                     [](const Inputs& x) { return causal_conv1d(x[0].transpose(1, 2), x[1], x[2], true); }});

    auto fft = [&](std::string label, int64_t B, int64_t L, int64_t D, int64_t K, bool bias, bool silu) {
        cases.push_back({"fft_conv", std::move(label), conv_inputs(B, L, D, K, bias),
                         [silu](const Inputs& x) { return fft_causal_conv(x[0], x[1], bias_of(x), silu); }});
    };
    fft("x (2,8,3) K=L=8 with bias", 2, 8, 3, 8, true, false);
    fft("x (2,13,3) K=5 < L, L not a power of two, no bias", 2, 13, 3, 5, false, false);
    fft("x (1,11,2) K=L=11, L not a power of two, bias, silu", 1, 11, 2, 11, true, true);
    fft("x (1,1,3) L=1 K=1 bias", 1, 1, 3, 1, true, false);
    fft("x (2,6,3) K=9 > L, bias, silu", 2, 6, 3, 9, true, true);
}

} // namespace mg
