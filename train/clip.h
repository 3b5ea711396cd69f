// train/clip.h: gradient clipping, in place, over a list of gradients (any shapes; f32/f64; one
// device). Undefined tensors in the list are skipped.
//
//   by value (SPEC §5, the paper: 1.0):  g = clamp(g, -c, c)          (NaN stays NaN)
//   by global norm:  n = sqrt(sum over tensors and elements of g^2);
//                    if n > max_norm: g *= max_norm / (n + 1e-6)      (torch.nn.utils.clip_grad_norm_)
#pragma once
#include <vector>

#include "tensor/tensor.h"
#include "train/optim.h"

namespace mg::train {

// The defined gradients of the parameters, in order.
std::vector<Tensor> grads_of(const NamedTensors& params);

void clip_grad_value(const std::vector<Tensor>& grads, double clip);
// Returns the global norm before clipping (in double; per-tensor sums of squares are computed on
// the tensors' device and combined there, then one value is read back). An empty list gives 0.
double clip_grad_norm(const std::vector<Tensor>& grads, double max_norm);
// The global norm alone (no clipping).
double global_norm(const std::vector<Tensor>& grads);
// Each defined tensor's L2 norm, in list order (undefined tensors give 0), with one read back;
// the global norm is the square root of the sum of their squares.
std::vector<double> tensor_norms(const std::vector<Tensor>& grads);

} // namespace mg::train
