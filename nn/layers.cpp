// nn/layers.cpp: see layers.h.
#include "nn/layers.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "ops/activation.h"
#include "ops/cat.h"
#include "ops/conv1d.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/layernorm.h"
#include "ops/linear.h"
#include "ops/rmsnorm.h"
#include "tensor/check.h"

namespace mg::nn {

Tensor init_uniform(const Shape& shape, double bound, Options o, Generator& gen) {
    return Tensor::uniform(shape, -bound, bound, {o.dtype, o.device}, gen);
}

double default_bound(int64_t fan_in) { return fan_in > 0 ? 1.0 / std::sqrt(double(fan_in)) : 0.0; }

// ---- Linear -------------------------------------------------------------------------------------
Linear::Linear(int64_t in, int64_t out, bool has_bias, Options o, Generator& gen)
    : in_features(in), out_features(out) {
    MG_CHECK(in > 0 && out > 0, "Linear: in_features = {}, out_features = {}, expected both > 0", in, out);
    weight = init_uniform({out, in}, default_bound(in), o, gen);
    register_parameter("weight", weight);
    if (has_bias) {
        bias = init_uniform({out}, default_bound(in), o, gen);
        register_parameter("bias", bias);
    }
}

Tensor Linear::forward(const Tensor& x) const { return linear(x, weight, bias); }

std::vector<Tensor> Linear::forward_split(const Tensor& x, const std::vector<int64_t>& sizes) const {
    return linear_split(x, weight, sizes, bias);
}

// ---- Embedding ----------------------------------------------------------------------------------
Embedding::Embedding(int64_t n, int64_t d, double std, Options o, Generator& gen) : num_embeddings(n), dim(d) {
    MG_CHECK(n > 0 && d > 0, "Embedding: num_embeddings = {}, dim = {}, expected both > 0", n, d);
    NoGrad ng;
    weight = (Tensor::randn({n, d}, {o.dtype, o.device}, gen) * std).detach();
    register_parameter("weight", weight);
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(ids, weight); }

// ---- RMSNorm ------------------------------------------------------------------------------------
LayerNorm::LayerNorm(int64_t d, double e, Options o) : dim(d), eps(e) {
    MG_CHECK(d > 0 && e > 0, "LayerNorm: dim = {}, eps = {}, expected both > 0", d, e);
    weight = Tensor::ones({d}, {o.dtype, o.device});
    bias = Tensor::zeros({d}, {o.dtype, o.device});
    register_parameter("weight", weight);
    register_parameter("bias", bias);
}

Tensor LayerNorm::forward(const Tensor& x) const { return layer_norm(x, weight, bias, eps); }

RMSNorm::RMSNorm(int64_t d, double e, Options o) : dim(d), eps(e) {
    MG_CHECK(d > 0 && e > 0, "RMSNorm: dim = {}, eps = {}, expected both > 0", d, e);
    weight = Tensor::ones({d}, {o.dtype, o.device});
    register_parameter("weight", weight);
}

Tensor RMSNorm::forward(const Tensor& x) const { return rmsnorm(x, weight, eps); }

RMSNorm::Result RMSNorm::forward(const Tensor& x, const Tensor& residual) const {
    RmsNormResidual r = rmsnorm_residual(x, residual, weight, eps);
    return {r.normed, r.residual};
}

// ---- Conv1d / LongConv --------------------------------------------------------------------------
Conv1d::Conv1d(int64_t d, int64_t k, bool has_bias, Options o, Generator& gen, CausalConvMode m)
    : channels(d), kernel_size(k), mode(m) {
    MG_CHECK(d > 0 && k > 0, "Conv1d: channels = {}, kernel_size = {}, expected both > 0", d, k);
    weight = init_uniform({d, 1, k}, default_bound(k), o, gen);
    register_parameter("weight", weight);
    if (has_bias) {
        bias = init_uniform({d}, default_bound(k), o, gen);
        register_parameter("bias", bias);
    }
}

Tensor Conv1d::kernel() const { return weight.reshape({channels, kernel_size}); }

Tensor Conv1d::forward(const Tensor& x, bool silu) const { return causal_conv(x, kernel(), bias, mode, silu); }

Tensor Conv1d::step(const Tensor& state, const Tensor& x_t, bool silu) const {
    return causal_conv1d_update(state, x_t, kernel(), bias, silu);
}

// ---- FlashLongConv ------------------------------------------------------------------------------
FlashLongConv::FlashLongConv(int64_t d, int64_t k, Options o, Generator& g, CausalConvMode m, double p)
    : channels(d), kernel_size(k), mode(m), dropout_p(p),
      D(Tensor::randn({1, d}, {o.dtype, o.device}, g)),
      kernel(Tensor::randn({1, d, k}, {o.dtype, o.device}, g)),
      output_linear(d, 2 * d, true, o, g) {
    MG_CHECK(d > 0 && k > 0, "FlashLongConv: channels = {}, k_long = {}, expected both > 0", d, k);
    MG_CHECK(p >= 0 && p < 1, "FlashLongConv: dropout = {}, expected a probability in [0, 1)", p);
    {
        NoGrad ng;
        kernel = (kernel * 0.002).detach();
    }
    register_parameter("D", D);
    register_parameter("kernel", kernel);
    register_module("output_linear", output_linear);
}

Tensor FlashLongConv::conv_weight(int64_t taps) const {
    Tensor k = kernel.reshape({channels, kernel_size}).narrow(1, 0, taps); // lags 0 .. taps-1
    return flip(softshrink(k, kSquash), 1);                                // w[d, taps-1-j] = k[d, j]
}

Tensor FlashLongConv::glu_out(const Tensor& y) const {
    std::vector<Tensor> ab = split(output_linear.forward(y), {channels, channels}, -1);
    return ab[0] * sigmoid(ab[1]);
}

Tensor FlashLongConv::forward(const Tensor& u) const {
    MG_CHECK(u.dim() == 3 && u.size(2) == channels, "FlashLongConv: u is {}, expected (B, L, D) with D = {}",
             u.desc(), channels);
    const int64_t B = u.size(0), L = u.size(1);
    Tensor y = causal_conv(u, conv_weight(std::max<int64_t>(1, std::min(kernel_size, L))), Tensor(), mode) + u * D;
    y = gelu(y);
    if (is_training() && dropout_p > 0) // one mask per (b, d): dropout of ones is mask / (1 - p)
        y = y * dropout(Tensor::ones({B, 1, channels}, y.options()), dropout_p, gen ? *gen : default_generator());
    return glu_out(y);
}

Tensor FlashLongConv::step(const Tensor& state, const Tensor& u_t) const {
    NoGrad ng;
    Tensor y = causal_conv1d_update(state, u_t, conv_weight(kernel_size)) + u_t * D;
    return glu_out(gelu(y));
}

} // namespace mg::nn
