// nn/layers.h: the layers a Mamba model is built from. Each is a thin Module around one op of
// ops/, holding its parameters under PyTorch's names (weight, bias) and PyTorch's shapes.
//
// Glossary: B batch, L length, D channels, K kernel width, V vocab.
// Every constructor takes the parameters' dtype/device (Options; requires_grad is ignored:
// parameters always require grad) and a seeded Generator, and initialises like PyTorch's default
// for the layer; the model (nn/mamba.h) overrides where mamba_ssm does.
#pragma once
#include <cstdint>

#include "nn/module.h"
#include "ops/fft_conv.h"
#include "tensor/tensor.h"

namespace mg::nn {

// U(-bound, bound) with the given shape: the building block of PyTorch's default inits.
Tensor init_uniform(const Shape& shape, double bound, Options o, Generator& gen);
// PyTorch's kaiming_uniform_(a = sqrt 5) bound for a weight with fan_in inputs:
// gain sqrt(2 / (1 + 5)) * sqrt(3 / fan_in) = 1 / sqrt(fan_in). Also the default bias bound.
double default_bound(int64_t fan_in);

// y = x @ weight^T + bias.   x (..., in) -> (..., out); weight (out, in), bias (out) or none.
// Init: weight and bias U(±1/sqrt(in)) (PyTorch nn.Linear).
class Linear : public Module {
public:
    Linear(int64_t in_features, int64_t out_features, bool bias, Options o, Generator& gen);
    Tensor forward(const Tensor& x) const;

    int64_t in_features, out_features;
    Tensor weight, bias; // bias undefined when built without
};

// out = weight[ids].   ids i32 (...) -> (..., D); weight (V, D). Init: N(0, std^2).
class Embedding : public Module {
public:
    Embedding(int64_t num_embeddings, int64_t dim, double std, Options o, Generator& gen);
    Tensor forward(const Tensor& ids) const;

    int64_t num_embeddings, dim;
    Tensor weight;
};

// y = x / sqrt(mean(x^2) + eps) * weight.   x (..., D); weight (D), init 1.
class RMSNorm : public Module {
public:
    RMSNorm(int64_t dim, double eps, Options o);
    Tensor forward(const Tensor& x) const;
    // mamba_ssm's fused Add -> Norm: h = x + residual (x when residual is undefined);
    // returns {rmsnorm(h), h}.
    struct Result {
        Tensor normed, residual;
    };
    Result forward(const Tensor& x, const Tensor& residual) const;

    int64_t dim;
    double eps;
    Tensor weight;
};

// Causal depthwise conv over the sequence: x (B, L, D) channels-last -> (B, L, D),
//   y[b,t,d] = [silu](bias[d] + sum_k weight[d,0,k] x[b, t-(K-1)+k, d]).
// weight (D, 1, K) as PyTorch's depthwise nn.Conv1d stores it (weight[d,0,K-1] multiplies the
// current token), bias (D). Init: PyTorch's Conv1d default, weight and bias U(±1/sqrt(K))
// (fan_in = in_channels / groups * K = K). `mode` picks the direct or the FFT computation
// (ops/fft_conv.h long_conv); both compute the same function.
class Conv1d : public Module {
public:
    Conv1d(int64_t channels, int64_t kernel_size, bool bias, Options o, Generator& gen,
           LongConvMode mode = LongConvMode::direct);
    Tensor forward(const Tensor& x, bool silu = false) const;
    // One token: x_t (B, D) -> (B, D). state (B, D, K-1) holds the last K-1 inputs (oldest
    // first) and is updated in place. No autograd (generation).
    Tensor step(const Tensor& state, const Tensor& x_t, bool silu = false) const;
    // weight viewed as the ops' (D, K).
    Tensor kernel() const;

    int64_t channels, kernel_size;
    LongConvMode mode;
    Tensor weight, bias;
};

// Global selection's long conv (SPEC §2): an explicit per-channel causal kernel of length K_long
// with bias, the same layer as Conv1d, computed by direct conv or FFT as `mode` says (automatic:
// by size). D (K_long + 1) parameters.
class LongConv : public Conv1d {
public:
    LongConv(int64_t channels, int64_t k_long, Options o, Generator& gen,
             LongConvMode mode = LongConvMode::automatic)
        : Conv1d(channels, k_long, true, o, gen, mode) {}
};

} // namespace mg::nn
