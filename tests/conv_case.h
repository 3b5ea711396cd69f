// tests/conv_case.h: one case of a causal depthwise convolution's kernel test, shared by the direct
// conv (tests/test_conv1d.cpp) and the FFT conv (tests/test_fft_conv.cpp), which compute the same
// function: fresh N(0,1) inputs from a seed, the double references (causal_conv1d_ref and its
// backward), copies of the inputs on the device under test, and outputs there poisoned with NaN so
// that an element a kernel never writes fails the comparison. The test runs its kernels on the
// device pointers, then calls check().
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "ops/conv1d.h"
#include "tests/helpers.h"

namespace mg::test {

struct ConvSize {
    int64_t B, L, D, K;
};

template <typename T> struct ConvCase {
    int64_t B, L, D, K;
    bool has_bias, silu;
    std::vector<double> y_ref, dx_ref, dw_ref, db_ref;
    Tensor x, w, bias, dy; // inputs, on the device under test
    Tensor y, dx, dw, db;  // outputs, on the device under test, NaN until the kernels write them

    ConvCase(const ConvSize& s, bool has_bias_, bool silu_, Device dev, uint64_t seed)
        : B(s.B), L(s.L), D(s.D), K(s.K), has_bias(has_bias_), silu(silu_) {
        const Options host{dtype_of<T>}, o{dtype_of<T>, dev};
        Generator gen(seed);
        Tensor xh = Tensor::randn({B, L, D}, host, gen), wh = Tensor::randn({D, K}, host, gen);
        Tensor bh = Tensor::randn({D}, host, gen), dyh = Tensor::randn({B, L, D}, host, gen);
        const T* pb = has_bias ? bh.data<T>() : nullptr;
        y_ref.resize(size_t(B * L * D));
        dx_ref.resize(size_t(B * L * D));
        dw_ref.resize(size_t(D * K));
        db_ref.resize(size_t(D));
        causal_conv1d_ref<T>(y_ref.data(), xh.data<T>(), wh.data<T>(), pb, B, L, D, K, silu);
        causal_conv1d_backward_ref<T>(dx_ref.data(), dw_ref.data(), has_bias ? db_ref.data() : nullptr,
                                      dyh.data<T>(), xh.data<T>(), wh.data<T>(), pb, B, L, D, K, silu);
        x = xh.to(dev), w = wh.to(dev), bias = bh.to(dev), dy = dyh.to(dev);
        y = Tensor::full({B, L, D}, NAN, o), dx = Tensor::full({B, L, D}, NAN, o);
        dw = Tensor::full({D, K}, NAN, o), db = Tensor::full({D}, NAN, o);
    }
    // The bias and dbias pointers the kernels take: null when the case has no bias.
    const T* pbias() const { return has_bias ? bias.data<T>() : nullptr; }
    T* pdbias() const { return has_bias ? db.data<T>() : nullptr; }

    // y and dx within tol_k of the reference, dweight and dbias within tol_bl (absolute and
    // relative), each failure naming `what` and the output.
    void check(const std::string& what, double tol_k, double tol_bl) const {
        require_close(y, Tensor::from_vector(y_ref, {B, L, D}), tol_k, tol_k, what + " forward y");
        require_close(dx, Tensor::from_vector(dx_ref, {B, L, D}), tol_k, tol_k, what + " dx");
        require_close(dw, Tensor::from_vector(dw_ref, {D, K}), tol_bl, tol_bl, what + " dweight");
        if (has_bias) require_close(db, Tensor::from_vector(db_ref, {D}), tol_bl, tol_bl, what + " dbias");
    }
};

} // namespace mg::test
