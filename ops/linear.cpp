// ops/linear.cpp: see ops/linear.h. Built on the GEMM of ops/matmul.h (gemm_tensors).
#include "ops/linear.h"

#include <limits>

#include "autograd/node.h"
#include "ops/dispatch.h"
#include "ops/matmul.h"
#include "ops/reduce.h"

namespace mg {

template <typename T>
void linear_ref(double* out, const T* x, const T* weight, const T* bias, int64_t M, int64_t Din, int64_t Dout) {
    for (int64_t m = 0; m < M; ++m)
        for (int64_t o = 0; o < Dout; ++o) {
            double acc = bias ? double(bias[o]) : 0.0;
            for (int64_t k = 0; k < Din; ++k) acc += double(x[m * Din + k]) * double(weight[o * Din + k]);
            out[m * Dout + o] = acc;
        }
}

namespace {

// Row-major GEMM geometry for C (M, N) = op(A) op(B) with A, B, C contiguous.
GemmArgs gemm_args(bool ta, bool tb, int64_t M, int64_t N, int64_t K) {
    GemmArgs g;
    g.ta = ta;
    g.tb = tb;
    g.M = M;
    g.N = N;
    g.K = K;
    g.lda = ta ? M : K;
    g.ldb = tb ? K : N;
    g.ldc = N;
    return g;
}

// out = op(A) op(B) (+ out when accumulate), skipping the GEMM for an empty product.
void gemm_into(const Tensor& out, bool ta, const Tensor& A, bool tb, const Tensor& B, int64_t M, int64_t N,
               int64_t K, bool accumulate) {
    if (M == 0 || N == 0) return;
    if (K == 0) { // an empty sum: out keeps its value (accumulate) or becomes 0
        if (!accumulate) copy_into(out, Tensor::zeros(out.shape(), out.options()));
        return;
    }
    gemm_tensors(gemm_args(ta, tb, M, N, K), 1.0, A, B, accumulate ? 1.0 : 0.0, out);
}

struct LinearBackward : autograd::Node {
    Tensor x2d, weight; // saved only where the other gradient needs them
    Shape x_shape;
    int64_t M = 0, Din = 0, Dout = 0;
    bool need_x = false, need_w = false, need_b = false;
    std::string name() const override { return "LinearBackward"; }
    void release() override { x2d = Tensor(); weight = Tensor(); }
    std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
        Tensor g = grads[0].contiguous().reshape({M, Dout});
        Tensor dx, dw, db;
        if (need_x) { // dx (M, Din) = g (M, Dout) @ weight (Dout, Din)
            dx = Tensor::empty({M, Din}, g.options());
            gemm_into(dx, false, g, false, weight, M, Din, Dout, false);
            dx = dx.reshape(x_shape);
        }
        if (need_w) { // dweight (Dout, Din) = g^T (Dout, M) @ x (M, Din)
            dw = Tensor::empty({Dout, Din}, g.options());
            gemm_into(dw, true, g, false, x2d, Dout, Din, M, false);
        }
        if (need_b) db = sum(g, {0}); // (Dout)
        return {dx, dw, db};
    }
};

} // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
    check_float("linear", "x", x);
    check_float("linear", "weight", weight);
    check_same("linear", "x", x, "weight", weight);
    MG_CHECK(weight.dim() == 2, "linear: weight is {}, expected a 2-D (Dout, Din) matrix (x is {})", weight.desc(),
             x.desc());
    MG_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: x is {} and weight is {}; expected x (..., Din) "
             "with Din = {} (weight's second dim)", x.desc(), weight.desc(), weight.size(1));
    Shape out_shape(x.shape().begin(), x.shape().end() - 1);
    int64_t Dout = weight.size(0), Din = weight.size(1), M = numel_of(out_shape);
    if (bias.defined()) {
        check_same("linear", "x", x, "bias", bias);
        MG_CHECK(bias.dim() == 1 && bias.size(0) == Dout, "linear: bias is {}, expected (Dout) = ({}) to match "
                 "weight {}", bias.desc(), Dout, weight.desc());
    }
    MG_CHECK(std::max({M, Din, Dout}) <= std::numeric_limits<int>::max(), "linear: x {} and weight {} exceed the "
             "2^31 GEMM limit", x.desc(), weight.desc());
    Tensor x2d = x.detach().contiguous().reshape({M, Din});
    Tensor w = weight.detach().contiguous();
    out_shape.push_back(Dout);
    Tensor out = Tensor::empty(out_shape, x.options());
    Tensor out2d = out.view({M, Dout});
    bool has_bias = bias.defined();
    if (has_bias && M > 0) copy_into(out2d, bias.detach().expand({M, Dout}));
    // out (M, Dout) = x (M, Din) @ weight^T (+ out, holding the bias)
    gemm_into(out2d, false, x2d, true, w, M, Dout, Din, has_bias);
    autograd::record<LinearBackward>({x, weight, bias}, {out}, [&](LinearBackward& n) {
        n.need_x = x.requires_grad();
        n.need_w = weight.requires_grad();
        n.need_b = has_bias && bias.requires_grad();
        n.x_shape = x.shape();
        n.M = M;
        n.Din = Din;
        n.Dout = Dout;
        if (n.need_w) n.x2d = x2d;
        if (n.need_x) n.weight = w;
    });
    return out;
}

#define MG_INST(T) \
    template void linear_ref<T>(double*, const T*, const T*, const T*, int64_t, int64_t, int64_t);
MG_INST(float)
MG_INST(double)

} // namespace mg
