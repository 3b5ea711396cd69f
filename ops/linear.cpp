// ops/linear.cpp: see ops/linear.h. Built on the GEMM of ops/matmul.h (gemm_tensors).
#include "ops/linear.h"

#include <limits>

#include "autograd/node.h"
#include "ops/checks.h"
#include "ops/copy.h"
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
    int64_t M = 0, Din = 0;
    std::vector<int64_t> sizes; // the output pieces' widths (one piece: plain linear)
    bool need_x = false, need_w = false, need_b = false;
    std::string name() const override { return "LinearBackward"; }
    void release() override { x2d = Tensor(); weight = Tensor(); }
    std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
        int64_t Dout = 0;
        for (int64_t w : sizes) Dout += w;
        const Options o = grads[0].options();
        Tensor dx = need_x ? Tensor::empty({M, Din}, o) : Tensor();
        Tensor dw = need_w ? Tensor::empty({Dout, Din}, o) : Tensor();
        Tensor db = need_b ? Tensor::empty({Dout}, o) : Tensor();
        int64_t row = 0;
        for (size_t i = 0; i < sizes.size(); ++i) {
            const int64_t w = sizes[i];
            Tensor g = grads[i].contiguous().reshape({M, w});
            // dx (M, Din) = sum over pieces of g_i (M, w_i) @ weight rows of piece i (w_i, Din)
            if (need_x) gemm_into(dx, false, g, false, weight.narrow(0, row, w), M, Din, w, /*accumulate=*/i > 0);
            // dweight rows of piece i (w_i, Din) = g_i^T (w_i, M) @ x (M, Din), written in place
            if (need_w) gemm_into(dw.narrow(0, row, w), true, g, false, x2d, w, Din, M, false);
            if (need_b) copy_into(db.narrow(0, row, w), sum(g, {0})); // (w_i)
            row += w;
        }
        if (need_x) dx = dx.reshape(x_shape);
        return {dx, dw, db};
    }
};

} // namespace

std::vector<Tensor> linear_split(const Tensor& x, const Tensor& weight, const std::vector<int64_t>& sizes,
                                 const Tensor& bias) {
    check_float("linear", "x", x);
    check_float("linear", "weight", weight);
    check_same("linear", "x", x, "weight", weight);
    MG_CHECK(weight.dim() == 2, "linear: weight is {}, expected a 2-D (Dout, Din) matrix (x is {})", weight.desc(),
             x.desc());
    MG_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: x is {} and weight is {}; expected x (..., Din) "
             "with Din = {} (weight's second dim)", x.desc(), weight.desc(), weight.size(1));
    Shape out_shape(x.shape().begin(), x.shape().end() - 1);
    int64_t Dout = weight.size(0), Din = weight.size(1), M = numel_of(out_shape);
    int64_t total = 0;
    bool valid = !sizes.empty();
    for (int64_t w : sizes) {
        valid = valid && w >= 0;
        total += w;
    }
    MG_CHECK(valid && total == Dout, "linear: output pieces [{}] for weight {}; expected widths >= 0 that sum "
             "to Dout = {}", fmt::join(sizes, ", "), weight.desc(), Dout);
    if (bias.defined()) {
        check_same("linear", "x", x, "bias", bias);
        MG_CHECK(bias.dim() == 1 && bias.size(0) == Dout, "linear: bias is {}, expected (Dout) = ({}) to match "
                 "weight {}", bias.desc(), Dout, weight.desc());
    }
    MG_CHECK(std::max({M, Din, Dout}) <= std::numeric_limits<int>::max(), "linear: x {} and weight {} exceed the "
             "2^31 GEMM limit", x.desc(), weight.desc());
    Tensor x2d = x.detach().contiguous().reshape({M, Din});
    Tensor w = weight.detach().contiguous();
    bool has_bias = bias.defined();
    std::vector<Tensor> outs;
    int64_t row = 0;
    for (int64_t wi : sizes) {
        Shape shape = out_shape;
        shape.push_back(wi);
        Tensor out = Tensor::empty(shape, x.options());
        Tensor out2d = out.view({M, wi});
        if (has_bias && M > 0) copy_into(out2d, bias.detach().narrow(0, row, wi).expand({M, wi}));
        // out_i (M, w_i) = x (M, Din) @ (weight rows of piece i)^T (+ out_i, holding the bias)
        gemm_into(out2d, false, x2d, true, w.narrow(0, row, wi), M, wi, Din, has_bias);
        outs.push_back(out);
        row += wi;
    }
    autograd::record<LinearBackward>({x, weight, bias}, outs, [&](LinearBackward& n) {
        n.need_x = x.requires_grad();
        n.need_w = weight.requires_grad();
        n.need_b = has_bias && bias.requires_grad();
        n.x_shape = x.shape();
        n.M = M;
        n.Din = Din;
        n.sizes = sizes;
        if (n.need_w) n.x2d = x2d;
        if (n.need_x) n.weight = w;
    });
    return outs;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
    // one piece of all Dout rows (a weight that is not a matrix fails linear_split's checks first)
    const int64_t Dout = weight.defined() && weight.dim() == 2 ? weight.size(0) : 0;
    return linear_split(x, weight, {Dout}, bias)[0];
}

#define MG_INST(T) \
    template void linear_ref<T>(double*, const T*, const T*, const T*, int64_t, int64_t, int64_t);
MG_INST(float)
MG_INST(double)

} // namespace mg
