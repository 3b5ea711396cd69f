// autograd/gradcheck.h: the public finite-difference gradient check.
//
//   auto r = mg::gradcheck([](const std::vector<Tensor>& x) { return my_op(x[0], x[1]); },
//                          {a, b});           // a, b: f64, requires_grad, any device
//   if (!r.ok) fmt::print("{}\n", r.message); // names the input, the element, both values
//
// Method. Let y = f(x) with any shape, and r a fixed random tensor of y's shape (uniform in
// [-1, 1], seeded). The scalar s = <r, y> has ds/dx = J^T r. The analytical side is one
// backward() with gradient r; the numerical side perturbs each element x_j by +-eps and takes the
// central difference (s(x + eps e_j) - s(x - eps e_j)) / 2 eps, whose error is O(eps^2). Each
// element of each input's gradient is compared on its own, so a wrong gradient anywhere in the
// Jacobian shows up (unless r happens to cancel it, which has probability zero). The inputs must
// be f64: in f32 the difference quotient has no digits left to compare.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace mg {

struct GradcheckOptions {
    double eps = 1e-6;  // perturbation
    double atol = 1e-5; // an element passes when |analytical - numerical| <= atol + rtol*|numerical|
    double rtol = 1e-3;
    uint64_t seed = 1234;            // for the projection r
    std::vector<std::string> names;  // optional input names for messages ("u", "delta", ...)
};

struct GradcheckResult {
    bool ok = true;
    std::string message;          // empty when ok
    int input = -1;               // the input holding the worst element
    std::vector<int64_t> index;   // its multi-index
    double analytical = 0, numerical = 0;
    double max_abs_error = 0;     // over every checked element
    int64_t num_checked = 0, num_failed = 0;
};

using GradcheckFn = std::function<Tensor(const std::vector<Tensor>&)>;

GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& opts = {});

} // namespace mg
