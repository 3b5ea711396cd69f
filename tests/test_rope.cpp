// tests/test_rope.cpp: rotary position embedding as GPT-NeoX applies it. The kernels against the
// transformers-style double reference (q cos + rotate_half(q) sin) at awkward sizes, partial
// rotation, position offsets; a value worked by hand; norm preservation and the inverse
// rotation as the gradient; bad inputs.
#include <cmath>

#include "ops/rope.h"
#ifdef MG_CUDA
#include "cuda/rope.h"
#include "cuda/runtime.h"
#endif
#include "tests/helpers.h"

using namespace mg;
using mg::test::devices;

namespace {

struct Size { int64_t N, L, Dh, R, offset; };

} // namespace

TEST_CASE("rope: kernels against the reference at awkward sizes", "[rope]") {
    // R = Dh (all), R < Dh (Pythia's rotary_pct 0.25 of 64 is 16; 4 of 10), R = 0 (identity),
    // L = 1, offsets as with a KV cache
    const Size sizes[] = {{1, 1, 2, 2, 0}, {3, 7, 10, 4, 0}, {2, 33, 64, 16, 9}, {1, 5, 6, 0, 0}, {4, 130, 24, 24, 1000}};
    for (const Size& s : sizes) {
        Generator g(uint64_t(s.N * 100 + s.L + s.Dh + s.R));
        Tensor x = Tensor::randn({s.N, s.L, s.Dh}, {DType::f64}, g);
        std::vector<double> y(size_t(x.numel()));
        rope_ref<double>(y.data(), x.data<double>(), s.N, s.L, s.Dh, s.R, 10000.0, s.offset);
        Tensor ey = Tensor::from_vector(y, {s.N, s.L, s.Dh});
        const std::string what = fmt::format("rope(N={}, L={}, Dh={}, R={}, offset={})", s.N, s.L, s.Dh, s.R, s.offset);
        Tensor out = Tensor::full(x.shape(), NAN, {DType::f64});
        rope_cpu<double>(out.data<double>(), x.data<double>(), s.N, s.L, s.Dh, s.R, 10000.0, s.offset, 1.0);
        // the kernel forms the angle as t * base^(-2i/R), the reference as t / base^(2i/R): they
        // differ by rounding, about |a| 2^-53 with |a| up to offset + L radians
        const double tol64 = 1e-14 + 4e-16 * double(s.offset + s.L);
        mg::test::require_close(out, ey, tol64, tol64, what + " cpu kernel");
#ifdef MG_CUDA
        if (cuda::available()) {
            const Options o{DType::f64, Device::cuda(0)};
            Tensor xg = x.to(Device::cuda(0)), og = Tensor::full(x.shape(), NAN, o);
            cuda::rope<double>(og.data<double>(), xg.data<double>(), s.N, s.L, s.Dh, s.R, 10000.0, s.offset, 1.0);
            mg::test::require_close(og, ey, tol64, tol64, what + " cuda kernel");
        }
#endif
        for (Device dev : devices())
            for (DType dt : {DType::f64, DType::f32}) {
                Tensor xl = x.to(dt).to(dev).detach().set_requires_grad(true);
                Tensor yl = rope(xl, s.R, 10000.0, s.offset);
                const double tol = dt == DType::f32 ? 1e-6 : tol64;
                mg::test::require_close(yl, ey, tol, tol, fmt::format("{} {} {}", what, dev.str(), dtype_name(dt)));
                // a rotation: the backward applies the inverse rotation, so y's own value as the
                // incoming gradient comes back as x
                yl.backward(yl.detach());
                mg::test::require_close(xl.grad(), x, tol, tol, what + " R(-a) R(a) x = x through the backward");
            }
    }
}

TEST_CASE("rope: a value worked by hand, and offsets agree with positions", "[rope]") {
    for (Device dev : devices()) {
        // Dh = 4, R = 4, h = 2: theta_0 = 1, theta_1 = 10000^(-1/2) = 0.01; position 3:
        // (y0, y2) = rotation of (x0, x2) by 3 rad, (y1, y3) = rotation of (x1, x3) by 0.03 rad
        Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {1, 1, 4}).to(dev);
        Tensor y = rope(x, 4, 10000.0, 3).to(Device::cpu());
        const double c3 = std::cos(3.0), s3 = std::sin(3.0), c = std::cos(0.03), s = std::sin(0.03);
        Tensor e = Tensor::from_vector(std::vector<double>{1 * c3 - 3 * s3, 2 * c - 4 * s, 3 * c3 + 1 * s3, 4 * c + 2 * s},
                                       {1, 1, 4});
        mg::test::require_close(y, e, 1e-15, 1e-15, dev.str() + " hand value");
        // rope of positions 5.. with offset 5 is the tail of rope from 0
        Generator g(2);
        Tensor z = Tensor::randn({2, 3, 12, 8}, {DType::f64, dev}, g);
        mg::test::require_close(rope(z.narrow(2, 5, 7), 6, 10000.0, 5), rope(z, 6).narrow(2, 5, 7), 1e-15, 1e-15,
                                dev.str() + " offset");
    }
}

TEST_CASE("rope: bad inputs name the op, the shape and the argument", "[rope][errors]") {
    Tensor x = Tensor::zeros({2, 5, 8});
    REQUIRE_ERROR_WITH(rope(x, 3), "rope", "rotary_dims = 3", "(2,5,8) f32 cpu", "even");
    REQUIRE_ERROR_WITH(rope(x, 10), "rope", "rotary_dims = 10", "Dh = 8");
    REQUIRE_ERROR_WITH(rope(x, 8, 0.0), "rope", "base = 0", "(2,5,8) f32 cpu");
    REQUIRE_ERROR_WITH(rope(x, 8, 10000.0, -1), "rope", "pos_offset = -1");
    REQUIRE_ERROR_WITH(rope(Tensor::zeros({8}), 8), "rope", "(8) f32 cpu", "(..., L, Dh)");
    REQUIRE_ERROR_WITH(rope(Tensor::zeros({2, 8}, {DType::i32}), 8), "rope", "(2,8) i32 cpu");
}
