// tests/test_bf16.cpp: DType::bf16 as a storage type (tensor/dtype.h, common/bf16.h): the
// float <-> bf16 conversion against a naive rounding reference and every one of the 65,536 bit
// patterns, Tensor::to on both devices (bit-identical), factories and printing, and the refusals
// (not differentiable; ops other than copies and matmul_bf16 name bf16). matmul_bf16 is tested in
// test_matmul.cpp, BF16 safetensors in test_checkpoint.cpp.
#include <cmath>
#include <cstring>
#include <limits>

#include "nn/layers.h"
#include "ops/dispatch.h"
#include "tests/helpers.h"
#include "tests/train_helpers.h"

using namespace mg;
using mg::test::devices;

namespace {

float from_bits(uint32_t u) { return float_from_bits(u); }
uint16_t to_bf16(float f) { return float_to_bf16_bits(f); }

// The reference: the two bf16 neighbours of f (its bits truncated, and one ulp up), the nearer
// one in exact double arithmetic, a tie going to the even one. Finite non-NaN f only; a value
// past the largest bf16 is compared with 2^128 (where the next exponent would be), as IEEE
// round-to-nearest decides overflow.
uint16_t bf16_ref(float f) {
    const uint32_t u = float_bits(f);
    const uint16_t sign = uint16_t((u >> 16) & 0x8000u), lo = uint16_t((u >> 16) & 0x7FFFu);
    const uint16_t hi = uint16_t(lo + 1);
    const double x = std::fabs(double(f));
    const double vlo = double(bf16_bits_to_float(lo));
    const double vhi = hi == 0x7F80 ? std::ldexp(1.0, 128) : double(bf16_bits_to_float(hi));
    const double dlo = x - vlo, dhi = vhi - x;
    const uint16_t mag = dlo < dhi ? lo : dhi < dlo ? hi : (lo % 2 == 0 ? lo : hi);
    return uint16_t(sign | mag);
}

Tensor bf16_of_bits(const std::vector<uint16_t>& bits, const Shape& shape, Device d = Device::cpu()) {
    std::vector<bf16> v(bits.size());
    for (size_t i = 0; i < bits.size(); ++i) v[i] = bf16::from_bits(bits[i]);
    return Tensor::from_vector(v, shape, {DType::bf16, d});
}
std::vector<uint16_t> bits_of(const Tensor& t) {
    std::vector<uint16_t> out;
    for (bf16 b : t.to(Device::cpu()).to_vector<bf16>()) out.push_back(b.bits);
    return out;
}

// Floats that exercise every branch of the rounding: specials, ties, near-ties, the overflow
// boundary, subnormals; then random bit patterns (NaNs included) and ordinary values.
std::vector<float> awkward_floats(size_t random_count) {
    std::vector<uint32_t> bits = {
        0x00000000, 0x80000000, 0x7F800000, 0xFF800000,       // ±0, ±Inf
        0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFA00000,       // NaNs: quiet, negative, signalling
        0x3F808000, 0x3F818000, 0xBF808000,                   // ties: 1 + 2^-8 (to even: 1), 1 + 3 2^-8 (up)
        0x3F807FFF, 0x3F808001, 0x3F80FFFF,                   // just below / above a tie
        0x7F7F7FFF, 0x7F7F8000, 0x7F7FFFFF, 0xFF7FFFFF,       // overflow boundary: stays, ties to Inf, FLT_MAX
        0x00000001, 0x00008000, 0x00018000, 0x00008001,       // subnormals: ties to even, just above
        0x007FFFFF, 0x807FFFFF, 0x00800000, 0x80000001,       // rounding into the smallest normal; -0
    };
    std::vector<float> out;
    for (uint32_t b : bits) out.push_back(from_bits(b));
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < random_count; ++i) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        const uint32_t r = uint32_t(s >> 32);
        out.push_back(i % 2 ? from_bits(r) : float(int32_t(r)) * 1e-9f); // any pattern; ordinary values
    }
    return out;
}

} // namespace

TEST_CASE("bf16: dtype size, name and parsing; floating but not differentiable", "[bf16]") {
    CHECK(dtype_size(DType::bf16) == 2);
    CHECK(dtype_name(DType::bf16) == "bf16");
    CHECK(parse_dtype("bf16") == DType::bf16);
    CHECK(parse_dtype("bfloat16") == DType::bf16);
    CHECK(is_floating(DType::bf16));
    CHECK(!is_differentiable(DType::bf16));
    CHECK((is_differentiable(DType::f32) && is_differentiable(DType::f64) && !is_differentiable(DType::i32)));
    // 2 bytes an element in storage and in views' offsets
    Tensor t = Tensor::zeros({4, 3}, {DType::bf16});
    CHECK(static_cast<char*>(t.narrow(0, 1, 2).raw_data()) - static_cast<char*>(t.raw_data()) == 6);
    CHECK(t.desc() == "(4,3) bf16 cpu");
}

TEST_CASE("bf16: every one of the 65,536 bit patterns survives bf16 -> float -> bf16 (NaNs stay NaN)", "[bf16]") {
    std::vector<uint16_t> all(65536);
    for (uint32_t b = 0; b < 65536; ++b) all[b] = uint16_t(b);
    auto check_all = [&](const std::vector<uint16_t>& back, const std::string& how) {
        INFO(how);
        int64_t bad = 0;
        for (uint32_t b = 0; b < 65536; ++b) {
            const float f = bf16_bits_to_float(uint16_t(b));
            if (std::isnan(f)) { // NaN: NaN again, sign kept, quiet
                const bool ok = std::isnan(bf16_bits_to_float(back[b])) && (back[b] & 0x8000) == (b & 0x8000) &&
                                (back[b] & 0x0040);
                if (!ok && bad++ < 5) FAIL_CHECK(fmt::format("NaN 0x{:04x} came back as 0x{:04x}", b, back[b]));
            } else if (back[b] != b && bad++ < 5) {
                FAIL_CHECK(fmt::format("0x{:04x} ({}) came back as 0x{:04x}", b, f, back[b]));
            }
        }
        CHECK(bad == 0);
    };
    std::vector<uint16_t> scalar(65536);
    for (uint32_t b = 0; b < 65536; ++b) scalar[b] = to_bf16(bf16_bits_to_float(uint16_t(b)));
    check_all(scalar, "scalar functions");
    for (Device d : devices()) {
        // and through tensors: bf16 -> f32 -> bf16, bf16 -> f64 -> bf16, on each device
        const Tensor t = bf16_of_bits(all, {256, 256}, d);
        const Tensor f32 = t.to(DType::f32);
        const std::vector<float> fv = f32.to(Device::cpu()).to_vector<float>();
        for (uint32_t b = 0; b < 65536; ++b) // widening is exact: the bits shifted up
            if (!std::isnan(fv[b])) REQUIRE(float_bits(fv[b]) == uint32_t(b) << 16);
        check_all(bits_of(f32.to(DType::bf16)), "via f32 on " + d.str());
        check_all(bits_of(t.to(DType::f64).to(DType::bf16)), "via f64 on " + d.str());
    }
}

TEST_CASE("bf16: float -> bf16 rounds to nearest even, overflows to Inf, keeps subnormals and NaN", "[bf16]") {
    // the named cases, by hand
    CHECK(to_bf16(1.0f + 0x1p-8f) == 0x3F80);                // halfway between 1 and 1 + 2^-7: to even (1)
    CHECK(to_bf16(1.0f + 3 * 0x1p-8f) == 0x3F82);            // halfway, odd below: up to even
    CHECK(to_bf16(-(1.0f + 0x1p-8f)) == 0xBF80);
    CHECK(to_bf16(from_bits(0x3F807FFF)) == 0x3F80);         // just below halfway: down
    CHECK(to_bf16(from_bits(0x3F808001)) == 0x3F81);         // just above halfway: up
    CHECK(to_bf16(std::numeric_limits<float>::max()) == 0x7F80);  // past the largest bf16: Inf
    CHECK(to_bf16(-std::numeric_limits<float>::max()) == 0xFF80);
    CHECK(to_bf16(from_bits(0x7F7F7FFF)) == 0x7F7F);         // below the overflow halfway point: stays finite
    CHECK(to_bf16(from_bits(0x7F7F8000)) == 0x7F80);         // at it: ties to even, which is Inf
    CHECK(to_bf16(INFINITY) == 0x7F80);
    CHECK(to_bf16(-INFINITY) == 0xFF80);
    CHECK(to_bf16(0.0f) == 0x0000);
    CHECK(to_bf16(-0.0f) == 0x8000);
    CHECK(to_bf16(from_bits(0x00008001)) == 0x0001);         // the smallest bf16 subnormal
    CHECK(to_bf16(from_bits(0x00008000)) == 0x0000);         // a subnormal tie: to even (+0)
    CHECK(to_bf16(from_bits(0x80000001)) == 0x8000);         // a tiny negative: -0
    CHECK(to_bf16(from_bits(0x007FFFFF)) == 0x0080);         // the largest subnormal rounds to 2^-126
    CHECK(to_bf16(from_bits(0x7FC00000)) == 0x7FC0);         // NaNs: quiet, sign and top payload kept
    CHECK(to_bf16(from_bits(0xFFC00000)) == 0xFFC0);
    CHECK(to_bf16(from_bits(0x7F800001)) == 0x7FC0);         // payload only in the dropped bits: still NaN
    CHECK(to_bf16(from_bits(0x7FA00000)) == 0x7FE0);         // signalling: quietened
    CHECK(bf16(0.1f).bits == 0x3DCD);
    CHECK(float(bf16::from_bits(0x3DCD)) == 0.10009765625f);
    // f64 rounds through f32 (as PyTorch does): 1 + 2^-8 + 2^-40 is first rounded to the float
    // 1 + 2^-8, a bf16 tie that goes to even; a single rounding would have gone up (0x3F81).
    CHECK(bf16(1.0 + 0x1p-8 + 0x1p-40).bits == 0x3F80);
    CHECK(bf16(1.0 + 0x1p-8 + 0x1p-20).bits == 0x3F81);      // far enough above to survive the first rounding
    // everything else against the reference
    int64_t bad = 0;
    for (float f : awkward_floats(1 << 20)) {
        if (std::isnan(f)) {
            const uint16_t b = to_bf16(f);
            if (!(std::isnan(bf16_bits_to_float(b)) && (b & 0x8000) == ((float_bits(f) >> 16) & 0x8000)) && bad++ < 5)
                FAIL_CHECK(fmt::format("NaN 0x{:08x} -> 0x{:04x}", float_bits(f), b));
            continue;
        }
        if (to_bf16(f) != bf16_ref(f) && bad++ < 5)
            FAIL_CHECK(fmt::format("0x{:08x} ({}) -> 0x{:04x}, reference 0x{:04x}", float_bits(f), f, to_bf16(f), bf16_ref(f)));
    }
    CHECK(bad == 0);
}

TEST_CASE("bf16: Tensor::to between f32, f64, i32 and bf16, strided too", "[bf16]") {
    for (Device d : devices()) {
        SECTION(d.str()) {
            const std::vector<float> v = {1.0f + 0x1p-8f, -3.0f, 0.1f, 65504.0f, -0.0f, 1e-40f, 3e38f, 7.0f};
            const Tensor x = Tensor::from_vector(v, {2, 4}, {DType::f32, d});
            const Tensor b = x.to(DType::bf16);
            REQUIRE(b.dtype() == DType::bf16);
            REQUIRE(b.device() == d);
            std::vector<uint16_t> want;
            for (float f : v) want.push_back(to_bf16(f));
            CHECK(bits_of(b) == want);
            CHECK(bits_of(x.to(DType::f64).to(DType::bf16)) == want);   // f64 -> bf16 (through f32)
            CHECK(bits_of(b.to(DType::f32).to(DType::bf16)) == want);   // back and forth is exact
            const std::vector<double> wide = b.to(DType::f64).to(Device::cpu()).to_vector<double>();
            for (size_t i = 0; i < v.size(); ++i) CHECK(wide[i] == double(bf16_bits_to_float(want[i])));
            // integers: i32 -> bf16 through float (16777217 -> 16777216 -> 0x4B80), bf16 -> i32 truncates
            const Tensor ints = Tensor::from_vector(std::vector<int32_t>{-5, 0, 257, 16777217}, {4}, {DType::i32, d});
            CHECK(bits_of(ints.to(DType::bf16)) == std::vector<uint16_t>{0xC0A0, 0x0000, 0x4380, 0x4B80});
            CHECK(Tensor::from_vector(std::vector<float>{-2.75f, 3.5f}, {2}, {DType::bf16, d}).to(DType::i32).to(Device::cpu())
                      .to_vector<int32_t>() == std::vector<int32_t>{-2, 3});
            // strided views: a transposed conversion, and a narrowed bf16 made contiguous
            Generator gen(7);
            const Tensor big = Tensor::randn({70, 130}, {DType::f32, d}, gen);
            const Tensor bt = big.transpose(0, 1).to(DType::bf16);
            CHECK(mg::test::same_bits(bt.to(DType::f32), big.transpose(0, 1).contiguous().to(DType::bf16).to(DType::f32)));
            const Tensor nb = big.to(DType::bf16).narrow(1, 1, 128);
            CHECK(bits_of(nb.contiguous()) == bits_of(big.narrow(1, 1, 128).contiguous().to(DType::bf16)));
            // from_vector with a bf16 target converts on the host
            CHECK(bits_of(Tensor::from_vector(v, {8}, {DType::bf16, d})) == want);
        }
    }
}

TEST_CASE("bf16: CPU and CUDA conversions give identical bits on random and special inputs", "[bf16][cuda]") {
    MG_REQUIRE_CUDA();
    const Device gpu = Device::cuda(0);
    const std::vector<float> v = awkward_floats(1 << 18);
    const Tensor x = Tensor::from_vector(v, {int64_t(v.size())}), xg = x.to(gpu);
    CHECK(mg::test::same_bits(x.to(DType::bf16), xg.to(DType::bf16)));
    // f64 sources; strided views converted on each device (the element kernel for the
    // transpose, the row kernel for rows of 600 at a stride of 1024)
    CHECK(mg::test::same_bits(x.to(DType::f64).to(DType::bf16), xg.to(DType::f64).to(DType::bf16)));
    auto transposed = [](const Tensor& t) { return t.narrow(0, 0, 512 * 64).reshape({64, 512}).transpose(0, 1); };
    CHECK(mg::test::same_bits(transposed(x).to(DType::bf16), transposed(xg).to(DType::bf16)));
    auto rows = [](const Tensor& t) { return t.narrow(0, 0, 1024 * 64).reshape({64, 1024}).narrow(1, 3, 600); };
    CHECK(mg::test::same_bits(rows(x).to(DType::bf16), rows(xg).to(DType::bf16)));
    CHECK(mg::test::same_bits(rows(x.to(DType::f64)).to(DType::bf16), rows(xg.to(DType::f64)).to(DType::bf16)));
    const Tensor ints = Tensor::arange(1 << 20, {DType::i32}); // past 2^8: rounded to 8 significant bits
    CHECK(mg::test::same_bits(ints.to(DType::bf16), ints.to(gpu).to(DType::bf16)));
    // and back: bf16 -> f32 / f64 of every pattern, and bf16 copies (the vectorised kernel)
    std::vector<uint16_t> all(65536);
    for (uint32_t b = 0; b < 65536; ++b) all[b] = uint16_t(b);
    const Tensor t = bf16_of_bits(all, {256, 256});
    CHECK(mg::test::same_bits(t.to(DType::f32), t.to(gpu).to(DType::f32)));
    CHECK(mg::test::same_bits(t.to(DType::f64), t.to(gpu).to(DType::f64)));
    CHECK(mg::test::same_bits(t.narrow(1, 4, 128).contiguous(), t.to(gpu).narrow(1, 4, 128).contiguous()));
    // fills (the uniform and normal streams are the f32 ones rounded: tested per device)
    CHECK(mg::test::same_bits(Tensor::full({33}, 0.1, {DType::bf16}), Tensor::full({33}, 0.1, {DType::bf16, gpu})));
}

TEST_CASE("bf16: factories, item and printing", "[bf16]") {
    for (Device d : devices()) {
        SECTION(d.str()) {
            CHECK(bits_of(Tensor::zeros({2}, {DType::bf16, d})) == std::vector<uint16_t>{0, 0});
            CHECK(bits_of(Tensor::ones({2}, {DType::bf16, d})) == std::vector<uint16_t>{0x3F80, 0x3F80});
            CHECK(bits_of(Tensor::full({1}, 0.1, {DType::bf16, d})) == std::vector<uint16_t>{0x3DCD});
            CHECK(bits_of(Tensor::arange(3, {DType::bf16, d})) == std::vector<uint16_t>{0x0000, 0x3F80, 0x4000});
            Generator g(3), h(3);
            // a random bf16 tensor is the f32 one rounded
            CHECK(bits_of(Tensor::randn({50}, {DType::bf16, d}, g)) == bits_of(Tensor::randn({50}, {DType::f32, d}, h).to(DType::bf16)));
            CHECK(Tensor::full({}, 0.1, {DType::bf16, d}).item() == 0.10009765625);
            const std::string s = Tensor::from_vector(std::vector<float>{1.5f, -0.1f}, {2}, {DType::bf16, d}).str();
            INFO(s);
            CHECK(s.find("1.5000") != std::string::npos);
            CHECK(s.find("-0.1001") != std::string::npos); // the bf16 value, not the float's -0.1000
            CHECK(s.find("dtype=bf16") != std::string::npos);
        }
    }
}

TEST_CASE("bf16: not differentiable yet, and ops other than copies and matmul_bf16 refuse it by name", "[bf16][errors]") {
    Tensor b = Tensor::ones({2, 3}, {DType::bf16});
    REQUIRE_ERROR_WITH(b.set_requires_grad(true), "set_requires_grad", "bf16", "only f32 and f64");
    REQUIRE_ERROR_WITH(Tensor::zeros({2}, {DType::bf16, Device::cpu(), true}), "set_requires_grad", "bf16");
    // converting a tensor that requires grad would drop its gradient: refused, unless asked for
    Tensor w = Tensor::ones({2, 3}).set_requires_grad(true);
    REQUIRE_ERROR_WITH(w.to(DType::bf16), "to:", "(2,3) f32 cpu", "requires grad", "bf16", "detach()");
    REQUIRE_ERROR_WITH((w * 2.0).to(DType::bf16), "requires grad", "bf16");
    CHECK(w.detach().to(DType::bf16).dtype() == DType::bf16);
    {
        NoGrad no_grad;
        CHECK(!w.to(DType::bf16).requires_grad());
    }
    // bf16 -> f32 is an ordinary leaf-less conversion: usable in a graph from there on
    Tensor f = b.to(DType::f32);
    CHECK((f.dtype() == DType::f32 && !f.requires_grad()));
    // every op's boundary: the op, the tensor (bf16) and the hint
    REQUIRE_ERROR_WITH(b + b, "bf16", "expected dtype f32 or f64", ".to(DType::f32)");
    REQUIRE_ERROR_WITH(sum(b), "sum", "(2,3) bf16 cpu");
    REQUIRE_ERROR_WITH(matmul(b, b.transpose(0, 1)), "matmul", "(2,3) bf16 cpu", "matmul_bf16");
    REQUIRE_ERROR_WITH(exp(b), "bf16");
    REQUIRE_ERROR_WITH(softmax(b), "softmax", "bf16");
    REQUIRE_ERROR_WITH(rmsnorm(b, Tensor::ones({3}, {DType::bf16}), 1e-5), "rmsnorm", "bf16");
    REQUIRE_ERROR_WITH(dispatch_float(DType::bf16, "my_op", [&]<typename T>() {}), "my_op", "dtype bf16 is not supported",
                       "f32 or f64");
    // modules: parameters stay f32/f64
    Generator g(1);
    nn::Linear lin(3, 2, true, {}, g);
    REQUIRE_ERROR_WITH(lin.to(DType::bf16), "Module::to", "bf16", "f32 or f64");
}
