// ops/op_table_nn.cpp: op-table cases for activations (silu, softplus, sigmoid, gelu, dropout)
// and layers (embedding, linear, rmsnorm, cross_entropy, cross_entropy_indexed).
//
// Integer inputs (ids, targets, positions) are returned by the factories as extra i32 tensors:
// gradcheck perturbs, and parity compares, only the floating ones.
#include <algorithm>

#include "ops/activation.h"
#include "ops/embedding.h"
#include "ops/cat.h"
#include "ops/cross_entropy.h"
#include "ops/linear.h"
#include "ops/rmsnorm.h"
#include "ops/op_table.h"

namespace mg {

namespace {

using Inputs = std::vector<Tensor>;

Tensor uniform_of(const Shape& s, double lo, double hi, Options o, Generator& g) {
    return Tensor::uniform(s, lo, hi, o, g);
}

// i32 indices in [0, n) drawn from g, on `device`; `fixed` overrides the first few.
Tensor index_of(const Shape& s, int64_t n, Device device, Generator& g, std::vector<int32_t> fixed = {}) {
    auto u = Tensor::uniform({numel_of(s)}, 0, double(n), {DType::f64}, g).to_vector<double>();
    std::vector<int32_t> v(u.size());
    for (size_t i = 0; i < v.size(); ++i) v[i] = i < fixed.size() ? fixed[i] : std::min(int32_t(n - 1), int32_t(u[i]));
    return Tensor::from_vector(v, s).to(device);
}

} // namespace

void add_nn_cases(std::vector<OpCase>& c) {
    auto add = [&](std::string op, std::string label, auto inputs, auto fn) {
        c.push_back({std::move(op), std::move(label), inputs, fn});
    };
    auto randn_of = [](Shape s, double scale = 1.0) {
        return [s, scale](Options o, Generator& g) { return Inputs{Tensor::randn(s, o, g) * scale}; };
    };

    // ---- activations ----
    add("silu", "silu x (3,7), |x| up to ~9", randn_of({3, 7}, 3.0), [](const Inputs& x) { return silu(x[0]); });
    add("silu", "silu of a transposed view (5,4)^T", randn_of({5, 4}),
        [](const Inputs& x) { return silu(x[0].transpose(0, 1)); });
    add("softplus", "softplus x (41) in [-30, 30]: both sides of the threshold 20 and very negative x",
        [](Options o, Generator& g) { return Inputs{uniform_of({41}, -30, 30, o, g)}; },
        [](const Inputs& x) { return softplus(x[0]); });
    add("softplus", "softplus x (1)", randn_of({1}), [](const Inputs& x) { return softplus(x[0]); });
    add("sigmoid", "sigmoid x (2,3,5) in [-40, 40]",
        [](Options o, Generator& g) { return Inputs{uniform_of({2, 3, 5}, -40, 40, o, g)}; },
        [](const Inputs& x) { return sigmoid(x[0]); });
    add("sigmoid", "sigmoid x (1,1)", randn_of({1, 1}), [](const Inputs& x) { return sigmoid(x[0]); });
    add("gelu", "gelu (erf) x (4,9)", randn_of({4, 9}, 2.0), [](const Inputs& x) { return gelu(x[0]); });
    add("gelu", "gelu (tanh approximation) x (4,9)", randn_of({4, 9}, 2.0),
        [](const Inputs& x) { return gelu(x[0], GeluApprox::tanh); });
    // The Generator is built inside fn, so every call (gradcheck's 2 per element) draws the
    // same mask.
    add("dropout", "dropout p=0.3 x (6,7), seed fixed", randn_of({6, 7}), [](const Inputs& x) {
        Generator gen(42);
        return dropout(x[0], 0.3, gen);
    });
    add("dropout", "dropout p=0.5 of a transposed view (3,11)^T", randn_of({3, 11}), [](const Inputs& x) {
        Generator gen(7);
        gen.take(5); // a non-zero offset
        return dropout(x[0].transpose(0, 1), 0.5, gen);
    });

    // ---- layers ----
    add("embedding", "ids (2,5) in [0,4) with repeats, weight (4,3)",
        [](Options o, Generator& g) { return Inputs{Tensor::randn({4, 3}, o, g), index_of({2, 5}, 4, o.device, g, {1, 1})}; },
        [](const Inputs& x) { return embedding(x[1], x[0]); });
    add("embedding", "ids (1,1), weight (3,1)",
        [](Options o, Generator& g) { return Inputs{Tensor::randn({3, 1}, o, g), index_of({1, 1}, 3, o.device, g)}; },
        [](const Inputs& x) { return embedding(x[1], x[0]); });
    add("linear", "x (2,3,5) @ weight (4,5)^T + bias (4)", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({2, 3, 5}, o, g), Tensor::randn({4, 5}, o, g), Tensor::randn({4}, o, g)};
    }, [](const Inputs& x) { return linear(x[0], x[1], x[2]); });
    add("linear", "x (7) 1-D @ weight (3,7)^T, no bias", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({7}, o, g), Tensor::randn({3, 7}, o, g)};
    }, [](const Inputs& x) { return linear(x[0], x[1]); });
    add("linear", "x (5,2)^T transposed view @ weight (1,5)^T + bias (1)", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({5, 2}, o, g), Tensor::randn({1, 5}, o, g), Tensor::randn({1}, o, g)};
    }, [](const Inputs& x) { return linear(x[0].transpose(0, 1), x[1], x[2]); });
    add("linear", "linear_split x (2,3,5) @ weight (9,5)^T + bias (9) into pieces of 4, 2, 3: all pieces",
        [](Options o, Generator& g) {
            return Inputs{Tensor::randn({2, 3, 5}, o, g), Tensor::randn({9, 5}, o, g), Tensor::randn({9}, o, g)};
        }, [](const Inputs& x) {
            auto p = linear_split(x[0], x[1], {4, 2, 3}, x[2]);
            return cat({p[0].reshape({-1}), (p[1] * p[1]).reshape({-1}), p[2].reshape({-1})}, 0);
        });
    add("linear", "linear_split x (4,3) @ weight (5,3)^T into pieces of 2, 3: only the second used",
        [](Options o, Generator& g) { return Inputs{Tensor::randn({4, 3}, o, g), Tensor::randn({5, 3}, o, g)}; },
        [](const Inputs& x) { return linear_split(x[0], x[1], {2, 3})[1]; });
    add("rmsnorm", "x (2,3,7), weight (7), eps 1e-5", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({2, 3, 7}, o, g), Tensor::randn({7}, o, g)};
    }, [](const Inputs& x) { return rmsnorm(x[0], x[1]); });
    add("rmsnorm", "x (1,1), weight (1), eps 0.1", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({1, 1}, o, g), Tensor::randn({1}, o, g)};
    }, [](const Inputs& x) { return rmsnorm(x[0], x[1], 0.1); });
    add("rmsnorm", "x (5,4)^T transposed view, weight (5)", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({5, 4}, o, g), Tensor::randn({5}, o, g)};
    }, [](const Inputs& x) { return rmsnorm(x[0].transpose(0, 1), x[1]); });
    add("rmsnorm", "rmsnorm_residual x (2,4,6) + residual (2,4,6), weight (6): both outputs", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({2, 4, 6}, o, g), Tensor::randn({2, 4, 6}, o, g), Tensor::randn({6}, o, g)};
    }, [](const Inputs& x) {
        auto r = rmsnorm_residual(x[0], x[1], x[2]);
        return cat({r.normed.reshape({-1}), (r.residual * r.residual).reshape({-1})}, 0);
    });
    add("cross_entropy", "logits (2,5,7), targets (2,5) with 2 ignored (-100)", [](Options o, Generator& g) {
        Tensor t = index_of({2, 5}, 7, Device::cpu(), g);
        t.data<int32_t>()[1] = kIgnoreIndex;
        t.data<int32_t>()[6] = kIgnoreIndex;
        return Inputs{Tensor::randn({2, 5, 7}, o, g) * 2.0, t.to(o.device)};
    }, [](const Inputs& x) { return cross_entropy(x[0], x[1]); });
    add("cross_entropy", "logits (1,3), one row", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({1, 3}, o, g), index_of({1}, 3, o.device, g)};
    }, [](const Inputs& x) { return cross_entropy(x[0], x[1]); });
    add("cross_entropy", "logits (3,4), every target ignored: loss 0, gradient 0", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({3, 4}, o, g), Tensor::full({3}, kIgnoreIndex, {DType::i32, o.device})};
    }, [](const Inputs& x) { return cross_entropy(x[0], x[1]); });
    add("cross_entropy_indexed", "hidden (2,6,5), head (9,5), positions (1,7,7,11) (7 twice), one target ignored",
        [](Options o, Generator& g) {
            Tensor pos = Tensor::from_vector(std::vector<int32_t>{1, 7, 7, 11}, {4}).to(o.device);
            Tensor tgt = index_of({4}, 9, o.device, g, {3, 0, 8, kIgnoreIndex});
            return Inputs{Tensor::randn({2, 6, 5}, o, g), Tensor::randn({9, 5}, o, g), pos, tgt};
        }, [](const Inputs& x) { return cross_entropy_indexed(x[0], x[1], x[2], x[3]); });
    add("cross_entropy_indexed", "hidden (1,1,3), head (2,3), positions (0)", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({1, 1, 3}, o, g), Tensor::randn({2, 3}, o, g),
                      Tensor::zeros({1}, {DType::i32, o.device}), index_of({1}, 2, o.device, g)};
    }, [](const Inputs& x) { return cross_entropy_indexed(x[0], x[1], x[2], x[3]); });
}

} // namespace mg
