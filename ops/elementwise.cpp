// ops/elementwise.cpp: see ops/elementwise.h for shapes and derivatives.
#include "ops/elementwise.h"

#include "autograd/node.h"
#include "cuda/elementwise.h"
#include "cuda/runtime.h"
#include "ops/checks.h"
#include "ops/dispatch.h"
#include "ops/reduce.h"
#include "ops/strided.h"

namespace mg {

// ---- CPU kernels ----------------------------------------------------------------------------
template <typename T>
void binary_forward_cpu(T* out, const T* a, const StridedIndexer& ia, const T* b,
                        const StridedIndexer& ib, int64_t n, BinaryOp op) {
    // rows of the output (contiguous); each operand by its own row offset and inner stride, which
    // is 0 along a broadcast dim
    // (the op is a template argument so that the inner loops hold no switch and vectorise)
    const int64_t sa = ia.inner_stride(), sb = ib.inner_stride();
    auto run = [&]<BinaryOp OP>() {
        for_each_row(n, ia.row_length(), kParallelGrain, [&](int64_t first, int64_t len) {
            T* o = out + first;
            const T* x = a + ia.offset(first);
            const T* y = b + ib.offset(first);
            if (sa == 1 && sb == 1)
                for (int64_t j = 0; j < len; ++j) o[j] = binary_apply(OP, x[j], y[j]);
            else
                for (int64_t j = 0; j < len; ++j) o[j] = binary_apply(OP, x[j * sa], y[j * sb]);
        });
    };
    switch (op) {
    case BinaryOp::add: run.template operator()<BinaryOp::add>(); break;
    case BinaryOp::sub: run.template operator()<BinaryOp::sub>(); break;
    case BinaryOp::mul: run.template operator()<BinaryOp::mul>(); break;
    default: run.template operator()<BinaryOp::div>(); break;
    }
}

template <typename T> void unary_forward_cpu(T* out, const T* x, int64_t n, UnaryOp op, T p) {
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) out[i] = unary_apply(op, x[i], p);
}

template <typename T>
void unary_backward_cpu(T* dx, const T* dy, const T* x, const T* y, int64_t n, UnaryOp op, T p) {
#pragma omp parallel for if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) dx[i] = unary_grad(op, dy[i], x[i], y[i], p);
}

namespace {

const char* binary_name(BinaryOp op) {
    switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::sub: return "sub";
    case BinaryOp::mul: return "mul";
    default: return "div";
    }
}
const char* unary_name(UnaryOp op) {
    switch (op) {
    case UnaryOp::neg: return "neg";
    case UnaryOp::exp: return "exp";
    case UnaryOp::log: return "log";
    case UnaryOp::sqrt: return "sqrt";
    case UnaryOp::rsqrt: return "rsqrt";
    case UnaryOp::softshrink: return "softshrink";
    default: return "pow";
    }
}

// y = a op b (no graph recorded).
Tensor binary_raw(const Tensor& a, const Tensor& b, BinaryOp op) {
    const char* name = binary_name(op);
    check_float(name, "a", a);
    check_float(name, "b", b);
    check_same(name, "a", a, "b", b);
    Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
    Tensor out = Tensor::empty(shape, a.options());
    int64_t n = out.numel();
    if (n == 0) return out;
    [[maybe_unused]] bool contig = a.is_contiguous() && b.is_contiguous() && a.shape() == shape && b.shape() == shape;
    Shape walk = shape, sa = broadcast_strides(a.shape(), a.strides(), shape),
          sb = broadcast_strides(b.shape(), b.strides(), shape);
    coalesce_dims(walk, {&sa, &sb});
    StridedIndexer ia = make_indexer(walk, sa), ib = make_indexer(walk, sb);
    dispatch_float(a.dtype(), name, [&]<typename T>() {
        if (a.device().is_cpu()) {
            binary_forward_cpu<T>(out.data<T>(), a.data<T>(), ia, b.data<T>(), ib, n, op);
        } else {
            MG_CUDA_ONLY(cuda::DeviceGuard g(a.device().index);
                         cuda::binary_forward<T>(out.data<T>(), a.data<T>(), ia, b.data<T>(), ib, n, op, contig));
        }
    });
    return out;
}

struct BinaryBackward : autograd::Node {
    BinaryOp op;
    Tensor a, b; // saved (detached) only where the derivative needs them
    Shape a_shape, b_shape;
    bool need_a = false, need_b = false;
    std::string name() const override {
        static const char* names[] = {"AddBackward", "SubBackward", "MulBackward", "DivBackward"};
        return names[int(op)];
    }
    void release() override { a = Tensor(); b = Tensor(); }
    std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
        const Tensor& g = grads[0];
        Tensor da, db;
        switch (op) {
        case BinaryOp::add:
            if (need_a) da = sum_to(g, a_shape);
            if (need_b) db = sum_to(g, b_shape);
            break;
        case BinaryOp::sub:
            if (need_a) da = sum_to(g, a_shape);
            if (need_b) db = neg(sum_to(g, b_shape));
            break;
        case BinaryOp::mul:
            if (need_a) da = sum_to(g * b, a_shape);
            if (need_b) db = sum_to(g * a, b_shape);
            break;
        case BinaryOp::div:
            if (need_a) da = sum_to(g / b, a_shape);
            if (need_b) db = neg(sum_to(g * a / (b * b), b_shape));
            break;
        }
        return {da, db};
    }
};

Tensor binary(const Tensor& a, const Tensor& b, BinaryOp op) {
    Tensor out = binary_raw(a, b, op);
    autograd::record<BinaryBackward>({a, b}, {out}, [&](BinaryBackward& n) {
        n.op = op;
        n.a_shape = a.shape();
        n.b_shape = b.shape();
        n.need_a = a.requires_grad();
        n.need_b = b.requires_grad();
        if (op == BinaryOp::mul) {
            if (n.need_b) n.a = a.detach();
            if (n.need_a) n.b = b.detach();
        } else if (op == BinaryOp::div) {
            n.b = b.detach();
            if (n.need_b) n.a = a.detach();
        }
    });
    return out;
}

struct UnaryBackward : autograd::Node {
    UnaryOp op;
    double p = 0;
    Tensor x, y;
    std::string name() const override {
        static const char* names[] = {"NegBackward", "ExpBackward", "LogBackward",
                                      "SqrtBackward", "RsqrtBackward", "PowBackward",
                                      "SoftshrinkBackward"};
        return names[int(op)];
    }
    void release() override { x = Tensor(); y = Tensor(); }
    std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
        Tensor dy = grads[0].contiguous();
        Tensor dx = Tensor::empty(x.shape(), x.options());
        int64_t n = dx.numel();
        dispatch_float(x.dtype(), unary_name(op), [&]<typename T>() {
            if (x.device().is_cpu()) {
                unary_backward_cpu<T>(dx.data<T>(), dy.data<T>(), x.data<T>(), y.data<T>(), n, op, T(p));
            } else {
                MG_CUDA_ONLY(cuda::DeviceGuard g(x.device().index);
                             cuda::unary_backward<T>(dx.data<T>(), dy.data<T>(), x.data<T>(), y.data<T>(), n, op, T(p)));
            }
        });
        return {dx};
    }
};

Tensor unary(const Tensor& x_in, UnaryOp op, double p = 0) {
    const char* name = unary_name(op);
    check_float(name, "x", x_in);
    Tensor x = x_in.detach().contiguous();
    Tensor out = Tensor::empty(x.shape(), x.options());
    int64_t n = out.numel();
    dispatch_float(x.dtype(), name, [&]<typename T>() {
        if (x.device().is_cpu()) {
            unary_forward_cpu<T>(out.data<T>(), x.data<T>(), n, op, T(p));
        } else {
            MG_CUDA_ONLY(cuda::DeviceGuard g(x.device().index);
                         cuda::unary_forward<T>(out.data<T>(), x.data<T>(), n, op, T(p)));
        }
    });
    autograd::record<UnaryBackward>({x_in}, {out}, [&](UnaryBackward& node) {
        node.op = op;
        node.p = p;
        node.x = x;
        node.y = out.detach();
    });
    return out;
}

} // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::add); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::sub); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::mul); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::div); }
Tensor neg(const Tensor& x) { return unary(x, UnaryOp::neg); }
Tensor exp(const Tensor& x) { return unary(x, UnaryOp::exp); }
Tensor log(const Tensor& x) { return unary(x, UnaryOp::log); }
Tensor sqrt(const Tensor& x) { return unary(x, UnaryOp::sqrt); }
Tensor rsqrt(const Tensor& x) { return unary(x, UnaryOp::rsqrt); }
Tensor pow(const Tensor& x, double p) { return unary(x, UnaryOp::pow, p); }
Tensor softshrink(const Tensor& x, double lambda) {
    MG_CHECK(lambda >= 0 && std::isfinite(lambda), "softshrink: lambda = {}, expected a finite value >= 0", lambda);
    return unary(x, UnaryOp::softshrink, lambda);
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator+(const Tensor& a, double s) { return add(a, Tensor::scalar(s, a.options())); }
Tensor operator-(const Tensor& a, double s) { return sub(a, Tensor::scalar(s, a.options())); }
Tensor operator*(const Tensor& a, double s) { return mul(a, Tensor::scalar(s, a.options())); }
Tensor operator/(const Tensor& a, double s) { return div(a, Tensor::scalar(s, a.options())); }
Tensor operator*(double s, const Tensor& a) { return a * s; }

#define MG_INST(T)                                                                                 \
    template void binary_forward_cpu<T>(T*, const T*, const StridedIndexer&, const T*,             \
                                        const StridedIndexer&, int64_t, BinaryOp);                 \
    template void unary_forward_cpu<T>(T*, const T*, int64_t, UnaryOp, T);                         \
    template void unary_backward_cpu<T>(T*, const T*, const T*, const T*, int64_t, UnaryOp, T);
MG_INST(float)
MG_INST(double)

} // namespace mg
