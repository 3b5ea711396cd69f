// ops/causal_conv_op.h: the autograd op behind both causal depthwise convolutions, the direct one
// (ops/conv1d.cpp, causal_conv1d) and the FFT one (ops/fft_conv.cpp, fft_causal_conv). They take the
// same arguments, check them alike, save the same tensors and return the same gradients (the
// formulas in ops/conv1d.h); only the kernels differ. Internal to ops/: included by those two files.
//
// `Kernels` supplies, for T = float and double (pointers to contiguous data; bias and dbias null
// when there is no bias; every output written with =):
//   static constexpr const char* op;    // the op's name, in errors
//   static constexpr const char* node;  // the backward node's name, in autograd errors
//   template <typename T> static void forward(Device, T* y, const T* x, const T* w, const T* bias,
//                                             int64_t B, int64_t L, int64_t D, int64_t K, bool silu);
//   template <typename T> static void backward(Device, T* dx, T* dw, T* dbias, const T* dy, const T* x,
//                                              const T* w, const T* bias, int64_t B, int64_t L, int64_t D,
//                                              int64_t K, bool silu);
// Both are called with B·L·D > 0; on CUDA they make the device current (cuda::DeviceGuard) and
// allocate their own workspace.
#pragma once
#include <string>
#include <vector>

#include "autograd/node.h"
#include "ops/conv1d.h"
#include "ops/dispatch.h"

namespace mg::detail {

template <typename Kernels> struct CausalConvBackward : autograd::Node {
    Tensor x, weight, bias; // contiguous, detached; bias undefined when there is none
    bool silu = false;
    bool need_x = false, need_w = false, need_b = false;
    std::string name() const override { return Kernels::node; }
    void release() override { x = Tensor(); weight = Tensor(); bias = Tensor(); }
    std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
        Tensor dy = grads[0].contiguous();
        int64_t B = x.size(0), L = x.size(1), D = x.size(2), K = weight.size(1);
        Tensor dx = Tensor::empty(x.shape(), x.options());
        Tensor dw = Tensor::empty(weight.shape(), weight.options());
        Tensor db = bias.defined() ? Tensor::empty(bias.shape(), bias.options()) : Tensor();
        if (x.numel() == 0) { // no terms: the sums over (b, t) are empty
            dw = Tensor::zeros(weight.shape(), weight.options());
            if (db.defined()) db = Tensor::zeros(bias.shape(), bias.options());
        } else {
            dispatch_float(x.dtype(), Kernels::op, [&]<typename T>() {
                Kernels::template backward<T>(x.device(), dx.data<T>(), dw.data<T>(),
                                              db.defined() ? db.data<T>() : nullptr, dy.data<T>(), x.data<T>(),
                                              weight.data<T>(), bias.defined() ? bias.data<T>() : nullptr, B, L,
                                              D, K, silu);
            });
        }
        return {need_x ? dx : Tensor(), need_w ? dw : Tensor(), need_b ? db : Tensor()};
    }
};

template <typename Kernels>
Tensor causal_conv_op(const Tensor& x, const Tensor& weight, const Tensor& bias, bool silu) {
    check_causal_conv_args(Kernels::op, x, weight, bias);
    Tensor xc = x.detach().contiguous(), wc = weight.detach().contiguous();
    Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();
    int64_t B = xc.size(0), L = xc.size(1), D = xc.size(2), K = wc.size(1);
    Tensor y = Tensor::empty(xc.shape(), xc.options());
    if (y.numel() > 0) {
        dispatch_float(xc.dtype(), Kernels::op, [&]<typename T>() {
            Kernels::template forward<T>(xc.device(), y.data<T>(), xc.data<T>(), wc.data<T>(),
                                         bc.defined() ? bc.data<T>() : nullptr, B, L, D, K, silu);
        });
    }
    autograd::record<CausalConvBackward<Kernels>>({x, weight, bias}, {y}, [&](CausalConvBackward<Kernels>& n) {
        n.x = xc;
        n.weight = wc;
        n.bias = bc;
        n.silu = silu;
        n.need_x = x.requires_grad();
        n.need_w = weight.requires_grad();
        n.need_b = bias.defined() && bias.requires_grad();
    });
    return y;
}

} // namespace mg::detail
