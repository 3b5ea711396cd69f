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
    // forward(x) cut along the last dim into contiguous pieces of these widths (ops/linear.h's
    // linear_split: no strided pieces to copy)
    std::vector<Tensor> forward_split(const Tensor& x, const std::vector<int64_t>& sizes) const;

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

// y = (x - mean) / sqrt(var + eps) * weight + bias over the last dim (ops/layernorm.h).
// x (..., D); weight (D) init 1, bias (D) init 0 (PyTorch nn.LayerNorm).
class LayerNorm : public Module {
public:
    LayerNorm(int64_t dim, double eps, Options o);
    Tensor forward(const Tensor& x) const;

    int64_t dim;
    double eps;
    Tensor weight, bias;
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
// (ops/fft_conv.h causal_conv); both compute the same function.
class Conv1d : public Module {
public:
    Conv1d(int64_t channels, int64_t kernel_size, bool bias, Options o, Generator& gen,
           CausalConvMode mode = CausalConvMode::direct);
    Tensor forward(const Tensor& x, bool silu = false) const;
    // One token: x_t (B, D) -> (B, D). state (B, D, K-1) holds the last K-1 inputs (oldest
    // first) and is updated in place. No autograd (generation).
    Tensor step(const Tensor& state, const Tensor& x_t, bool silu = false) const;
    // weight viewed as the ops' (D, K).
    Tensor kernel() const;

    int64_t channels, kernel_size;
    CausalConvMode mode;
    Tensor weight, bias;
};

// The global-selection branch of a Mamba layer (SPEC §2): g = conv(x) over (B, L, D), whose gate
// f(g) scales Δ. Its two kinds are LongConv and FlashLongConv; a mixer holds one, whichever the
// kind (MambaMixer::long_conv), and calls it through this interface.
class GlobalSelectionConv {
public:
    virtual ~GlobalSelectionConv() = default;
    virtual Tensor branch(const Tensor& x) const = 0; // (B, L, D) -> (B, L, D)
    // One token: x_t (B, D) -> (B, D); state (B, D, kernel_length() - 1) holds the last inputs
    // (oldest first) and is updated in place. No autograd (generation).
    virtual Tensor branch_step(const Tensor& state, const Tensor& x_t) const = 0;
    virtual int64_t kernel_length() const = 0;
    virtual Module& module() = 0;                   // for registration under "long_conv"
    virtual void set_dropout_generator(Generator*) {} // FlashLongConv's dropout; others have none
};

// Global selection's long conv (SPEC §2): an explicit per-channel causal kernel of length K_long
// with bias, the same layer as Conv1d, computed by direct conv or FFT as `mode` says (automatic:
// by size). D (K_long + 1) parameters.
class LongConv : public Conv1d, public GlobalSelectionConv {
public:
    LongConv(int64_t channels, int64_t k_long, Options o, Generator& gen,
             CausalConvMode mode = CausalConvMode::automatic)
        : Conv1d(channels, k_long, true, o, gen, mode) {}
    Tensor branch(const Tensor& x) const override { return forward(x); }
    Tensor branch_step(const Tensor& state, const Tensor& x_t) const override { return step(state, x_t); }
    int64_t kernel_length() const override { return kernel_size; }
    Module& module() override { return *this; }
};

// Global selection's heavier variant, the authors' FlashLongconv (models/modules/flashconv.py,
// paper-code.md §4; `global_selection.kind = flashlongconv`), used for their largest models.
// u (B, L, D) channels-last -> (B, L, D):
//   k   = softshrink(kernel, 0.003)            = relu(|kernel| - 0.003) sign(kernel): the squash
//   y   = causal_conv(u, k) + u * D            y[b,t,d] = sum_{j <= t, j < K} k[0,d,j] u[b,t-j,d]
//                                                          + D[0,d] u[b,t,d]
//   y   = dropout(gelu(y))                     exact GELU; p 0.2, training() only; one mask per
//                                              (b, d) shared by every t (their DropoutNd, tie=True)
//   out = a * sigmoid(b),  (a | b) = output_linear(y)     D -> 2D with bias, then GLU
// kernel (1, D, K) with k[0,d,j] the weight of the input j steps back (their lag order, K =
// k_long), D (1, D), output_linear (2D, D) + (2D): D K + D + 2D^2 + 2D parameters. Registered in
// their order (D, kernel, output_linear); the authors' state dict calls output_linear's tensors
// output_linear.0.{weight, bias} (an nn.Sequential) and their bias shape (2D, 1), ours (2D).
// Init as theirs: D ~ N(0, 1), kernel ~ N(0, 1) * 0.002, output_linear PyTorch's default
// U(±1/sqrt(D)), drawn in that order.
//
// Kernel length. The conv is the true causal linear convolution for any K: taps with j >= L
// touch no output and are skipped (the kernel is narrowed to min(K, L) taps before the conv), a
// kernel shorter than L acts as if zero-padded. The authors take rfft(k, n = 2L), which
// truncates k to 2L taps and wraps taps L+1 .. 2L-1 around onto earlier outputs (inputs from the
// future leak in when K > L + 1); we do not reproduce that. The conv runs through causal_conv
// (direct or FFT, `mode`), on the kernel flipped into the conv weight's orientation.
//
// Dropout masks come from `gen` when set (a trainer that checkpoints its generator resumes
// exactly), else from default_generator().
class FlashLongConv : public Module, public GlobalSelectionConv {
public:
    static constexpr double kSquash = 0.003; // the soft threshold (their kernel_lam)
    FlashLongConv(int64_t channels, int64_t k_long, Options o, Generator& gen,
                  CausalConvMode mode = CausalConvMode::automatic, double dropout = 0.2);
    Tensor forward(const Tensor& u) const;
    // One token: u_t (B, D) -> (B, D); state (B, D, K-1) holds the last K-1 inputs (oldest
    // first) and is updated in place. No autograd, no dropout (generation).
    Tensor step(const Tensor& state, const Tensor& u_t) const;
    // The squashed kernel's first `taps` lags, flipped into the conv weight's (D, taps) order.
    Tensor conv_weight(int64_t taps) const;
    Tensor branch(const Tensor& x) const override { return forward(x); }
    Tensor branch_step(const Tensor& state, const Tensor& x_t) const override { return step(state, x_t); }
    int64_t kernel_length() const override { return kernel_size; }
    Module& module() override { return *this; }
    void set_dropout_generator(Generator* g) override { gen = g; }

    int64_t channels, kernel_size;
    CausalConvMode mode;
    double dropout_p;
    Generator* gen = nullptr; // dropout's generator; null: default_generator()
    Tensor D, kernel;         // (1, D), (1, D, K)
    Linear output_linear;     // D -> 2D, with bias

private:
    Tensor glu_out(const Tensor& y) const; // output_linear, then GLU
};

} // namespace mg::nn
