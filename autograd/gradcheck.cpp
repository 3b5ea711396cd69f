// autograd/gradcheck.cpp: see gradcheck.h for the method.
#include "autograd/gradcheck.h"

#include <cmath>
#include <cstring>

#include "autograd/grad_mode.h"
#include "tensor/check.h"
#include "tensor/runtime.h"

namespace mg {

namespace {

// Reads/writes one f64 element of x (logical row-major index) in place, on any device.
int64_t storage_offset(const Tensor& x, int64_t linear) {
    auto idx = unravel_index(linear, x.shape());
    int64_t off = 0;
    for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * x.strides()[d];
    return off;
}
double read_elem(const Tensor& x, int64_t linear) {
    const double* p = static_cast<const double*>(x.raw_data()) + storage_offset(x, linear);
    double v;
    read_device_bytes(&v, p, sizeof v, x.device());
    return v;
}
void write_elem(const Tensor& x, int64_t linear, double v) {
    double* p = static_cast<double*>(x.raw_data()) + storage_offset(x, linear);
    write_device_bytes(p, &v, sizeof v, x.device());
}

std::string input_label(const GradcheckOptions& o, size_t i) {
    if (i < o.names.size() && !o.names[i].empty()) return fmt::format("input {} ({})", i, o.names[i]);
    return fmt::format("input {}", i);
}

} // namespace

GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& opts) {
    bool any = false;
    for (size_t i = 0; i < inputs.size(); ++i) {
        const Tensor& x = inputs[i];
        MG_CHECK(x.defined(), "gradcheck: {} is undefined", input_label(opts, i));
        if (!x.requires_grad()) continue;
        any = true;
        MG_CHECK(x.dtype() == DType::f64, "gradcheck: {} is {}; finite differences need f64 inputs "
                 "(convert with .to(DType::f64) before set_requires_grad)", input_label(opts, i), x.desc());
        MG_CHECK(x.is_leaf(), "gradcheck: {} {} is not a leaf; pass leaves with requires_grad set",
                 input_label(opts, i), x.desc());
    }
    MG_CHECK(any, "gradcheck: no input requires grad; call set_requires_grad() on the inputs to check");

    for (const Tensor& x : inputs) if (x.requires_grad()) x.zero_grad();
    Tensor y = f(inputs);
    MG_CHECK(y.defined() && y.dtype() == DType::f64, "gradcheck: the function returned {}, expected "
             "an f64 tensor", y.desc());
    MG_CHECK(y.requires_grad(), "gradcheck: the function's output {} does not require grad: it does "
             "not depend differentiably on any input", y.desc());

    Generator gen(opts.seed);
    Tensor r = Tensor::uniform(y.shape(), -1.0, 1.0, {DType::f64, y.device()}, gen);
    std::vector<double> r_host = r.to_vector<double>();
    y.backward(r);

    auto project = [&]() {
        NoGrad ng;
        std::vector<double> v = f(inputs).to_vector<double>();
        MG_CHECK(v.size() == r_host.size(), "gradcheck: the function's output changed size between "
                 "calls ({} then {} elements)", r_host.size(), v.size());
        double s = 0;
        for (size_t k = 0; k < v.size(); ++k) s += v[k] * r_host[k];
        return s;
    };

    GradcheckResult res;
    double worst_excess = -INFINITY;
    for (size_t i = 0; i < inputs.size(); ++i) {
        const Tensor& x = inputs[i];
        if (!x.requires_grad()) continue;
        Tensor g = x.grad();
        std::vector<double> analytic = g.defined() ? g.to_vector<double>()
                                                   : std::vector<double>(size_t(x.numel()), 0.0);
        for (int64_t j = 0; j < x.numel(); ++j) {
            double x0 = read_elem(x, j);
            write_elem(x, j, x0 + opts.eps);
            double fp = project();
            write_elem(x, j, x0 - opts.eps);
            double fm = project();
            write_elem(x, j, x0);
            double num = (fp - fm) / (2 * opts.eps);
            double ana = analytic[size_t(j)];
            double err = std::abs(ana - num);
            double tol = opts.atol + opts.rtol * std::abs(num);
            bool bad = !(err <= tol); // NaN fails
            res.num_checked++;
            if (bad) res.num_failed++;
            res.max_abs_error = std::max(res.max_abs_error, err);
            double excess = std::isnan(err) ? INFINITY : err - tol;
            if (excess > worst_excess) {
                worst_excess = excess;
                res.input = int(i);
                res.index = unravel_index(j, x.shape());
                res.analytical = ana;
                res.numerical = num;
            }
        }
    }
    res.ok = res.num_failed == 0;
    if (!res.ok) {
        const Tensor& x = inputs[size_t(res.input)];
        res.message = fmt::format(
            "gradcheck failed: {} {} at index ({}): analytical {:.10g}, numerical {:.10g} "
            "(|diff| {:.3g} > atol {:g} + rtol {:g} * |numerical|); {} of {} elements out of "
            "tolerance", input_label(opts, size_t(res.input)), x.desc(), fmt::join(res.index, ","),
            res.analytical, res.numerical, std::abs(res.analytical - res.numerical), opts.atol,
            opts.rtol, res.num_failed, res.num_checked);
    }
    return res;
}

} // namespace mg
