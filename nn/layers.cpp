// nn/layers.cpp: see layers.h.
#include "nn/layers.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "ops/conv1d.h"
#include "ops/embedding.h"
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

// ---- Embedding ----------------------------------------------------------------------------------
Embedding::Embedding(int64_t n, int64_t d, double std, Options o, Generator& gen) : num_embeddings(n), dim(d) {
    MG_CHECK(n > 0 && d > 0, "Embedding: num_embeddings = {}, dim = {}, expected both > 0", n, d);
    NoGrad ng;
    weight = (Tensor::randn({n, d}, {o.dtype, o.device}, gen) * std).detach();
    register_parameter("weight", weight);
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(ids, weight); }

// ---- RMSNorm ------------------------------------------------------------------------------------
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
Conv1d::Conv1d(int64_t d, int64_t k, bool has_bias, Options o, Generator& gen, LongConvMode m)
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

Tensor Conv1d::forward(const Tensor& x, bool silu) const { return long_conv(x, kernel(), bias, mode, silu); }

Tensor Conv1d::step(const Tensor& state, const Tensor& x_t, bool silu) const {
    return causal_conv1d_update(state, x_t, kernel(), bias, silu);
}

} // namespace mg::nn
