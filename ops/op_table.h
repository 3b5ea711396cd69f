// ops/op_table.h: the one table of differentiable ops.
//
// Every op has at least one case here: a function of its inputs and a factory of fresh random
// inputs at awkward sizes (broadcast dims, odd sizes, non-contiguous views, size-1 dims). The
// test suite runs gradcheck on every case on every device and CUDA-vs-CPU parity on every case;
// `mambagrad gradcheck --op NAME` runs them from the command line. A test fails if an op listed
// in kOpNames has no case, so a new op cannot land without its checks.
#pragma once
#include <array>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/tensor.h"

namespace mg {

inline constexpr std::array<std::string_view, 40> kOpNames = {
    // foundation (ops/op_table.cpp)
    "add", "sub", "mul", "div", "neg", "exp", "log", "sqrt", "rsqrt", "pow", "softshrink",
    "sum", "mean", "max", "matmul", "cat", "split", "flip",
    "reshape", "permute", "narrow", "expand", "squeeze_unsqueeze",
    // activations and layers (ops/op_table_nn.cpp)
    "silu", "softplus", "sigmoid", "gelu", "dropout",
    "embedding", "linear", "rmsnorm", "cross_entropy", "cross_entropy_indexed",
    // convolutions (ops/op_table_conv.cpp)
    "conv1d", "fft_conv",
    // the selective scan (ops/op_table_scan.cpp)
    "selective_scan",
    // the Transformer (ops/op_table_transformer.cpp)
    "layernorm", "softmax", "rope", "attention"};

struct OpCase {
    std::string op;    // one of kOpNames
    std::string label; // shapes and options, e.g. "a (3,1,5) + b (4,5)"
    // Fresh random inputs with the given dtype/device (no requires_grad set).
    std::function<std::vector<Tensor>(Options, Generator&)> inputs;
    std::function<Tensor(const std::vector<Tensor>&)> fn;
};

const std::vector<OpCase>& op_cases();

// Each op family appends its cases here (one function per family, in ops/op_table_<family>.cpp).
void add_nn_cases(std::vector<OpCase>& cases);
void add_conv_cases(std::vector<OpCase>& cases);
void add_scan_cases(std::vector<OpCase>& cases);
void add_transformer_cases(std::vector<OpCase>& cases);
std::vector<const OpCase*> op_cases_for(std::string_view op); // throws naming the known ops

} // namespace mg
