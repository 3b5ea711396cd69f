// tests/test_tensor.cpp: construction, views, copies across dtypes and devices, factories and the
// random stream, printing, the CUDA caching allocator, and bad calls at the tensor boundary.
#include <cmath>
#include <functional>

#include "ops/copy.h"
#include "ops/strided.h"
#include "tests/helpers.h"

using namespace mg;
using mg::test::devices;

TEST_CASE("tensor: from_vector / to_vector round trip on every device and dtype", "[tensor]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            std::vector<float> vf = {1.5f, -2.f, 3.25f, 0.f, 7.f, -1e-3f};
            Tensor t = Tensor::from_vector(vf, {2, 3}, {DType::f32, dev});
            CHECK(t.shape() == Shape{2, 3});
            CHECK(t.device() == dev);
            CHECK(t.to_vector<float>() == vf);
            std::vector<int32_t> vi = {3, -1, 2147483647};
            CHECK(Tensor::from_vector(vi, {3}, {DType::i32, dev}).to_vector<int32_t>() == vi);
            std::vector<double> vd = {1.0 / 3.0, 2.0};
            CHECK(Tensor::from_vector(vd, {2}, {DType::f64, dev}).to_vector<double>() == vd);
            CHECK(Tensor::from_vector(std::vector<double>{4.25}, {}, {DType::f64, dev}).item() == 4.25);
        }
    }
}

TEST_CASE("tensor: views share storage with their base", "[tensor]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Tensor x = Tensor::arange(24, {DType::f32, dev}).reshape({2, 3, 4});
            Tensor t = x.transpose(0, 2); // (4,3,2)
            CHECK(t.shape() == Shape{4, 3, 2});
            CHECK(!t.is_contiguous());
            CHECK(t.impl().storage == x.impl().storage);
            // t[i,j,k] = x[k,j,i] = 12k + 4j + i
            auto v = t.contiguous().to_vector<float>();
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 3; ++j)
                    for (int k = 0; k < 2; ++k) CHECK(v[size_t(i * 6 + j * 2 + k)] == float(12 * k + 4 * j + i));
            Tensor n = x.narrow(2, 1, 2); // (2,3,2), offset 1
            CHECK(n.offset() == 1);
            CHECK(n.impl().storage == x.impl().storage);
            CHECK(n.contiguous().to_vector<float>()[0] == 1.f);
            Tensor p = x.permute({1, 2, 0});
            CHECK(p.shape() == Shape{3, 4, 2});
            CHECK(p.contiguous().to_vector<float>()[1] == 12.f);
            Tensor e = Tensor::arange(3, {DType::f32, dev}).unsqueeze(0).expand({4, 3});
            CHECK(e.strides() == Shape{0, 1});
            CHECK(e.contiguous().to_vector<float>() == std::vector<float>{0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2});
            CHECK(x.slice(1, -2, 3).shape() == Shape{2, 2, 4});
            CHECK(x.reshape({6, -1}).shape() == Shape{6, 4});
            CHECK(x.narrow(0, 1, 1).squeeze(0).shape() == Shape{3, 4});
            // reshape of a non-contiguous view copies and keeps row-major order of the view
            CHECK(t.reshape({24}).to_vector<float>() == t.contiguous().to_vector<float>());
        }
    }
}

TEST_CASE("tensor: dtype conversion and device transfer", "[tensor]") {
    Tensor x = Tensor::from_vector(std::vector<double>{1.75, -2.5, 3.0}, {3}, {DType::f64});
    CHECK(x.to(DType::f32).to_vector<float>() == std::vector<float>{1.75f, -2.5f, 3.f});
    CHECK(x.to(DType::i32).to_vector<int32_t>() == std::vector<int32_t>{1, -2, 3});
    if (cuda::available()) {
        Tensor g = x.to(Device::cuda(0));
        CHECK(g.device() == Device::cuda(0));
        CHECK(g.to(DType::f32).to(Device::cpu()).to_vector<float>() == std::vector<float>{1.75f, -2.5f, 3.f});
        // a strided CUDA view copied to the host keeps its logical order
        Tensor m = Tensor::arange(6, {DType::f64, Device::cuda(0)}).reshape({2, 3}).transpose(0, 1);
        CHECK(m.to(Device::cpu()).to_vector<double>() == std::vector<double>{0, 3, 1, 4, 2, 5});
    }
}

TEST_CASE("tensor: factories", "[tensor]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            CHECK(Tensor::zeros({2, 2}, {DType::f64, dev}).to_vector<double>() == std::vector<double>(4, 0.0));
            CHECK(Tensor::ones({3}, {DType::i32, dev}).to_vector<int32_t>() == std::vector<int32_t>(3, 1));
            CHECK(Tensor::full({2}, -0.5, {DType::f32, dev}).to_vector<float>() == std::vector<float>(2, -0.5f));
            CHECK(Tensor::arange(4, {DType::i32, dev}).to_vector<int32_t>() == std::vector<int32_t>{0, 1, 2, 3});
            CHECK(Tensor::empty({0, 3}, {DType::f32, dev}).numel() == 0);
            Generator g(5);
            auto u = Tensor::uniform({10000}, -2.0, 3.0, {DType::f64, dev}, g).to_vector<double>();
            double lo = 1e9, hi = -1e9, m = 0;
            for (double v : u) { lo = std::min(lo, v); hi = std::max(hi, v); m += v; }
            CHECK(lo >= -2.0);
            CHECK(hi < 3.0);
            CHECK(std::abs(m / 10000 - 0.5) < 0.05); // mean 0.5, sd of the mean 0.0144
            auto n = Tensor::randn({20000}, {DType::f64, dev}, g).to_vector<double>();
            double s = 0, s2 = 0;
            for (double v : n) { s += v; s2 += v * v; }
            CHECK(std::abs(s / 20000) < 0.03);          // sd of the mean 0.007
            CHECK(std::abs(s2 / 20000 - 1.0) < 0.05);   // sd of the variance 0.01
        }
    }
}

TEST_CASE("tensor: the random stream is seeded, advances, and is the same on CPU and CUDA", "[tensor]") {
    Generator a(42), b(42);
    Tensor x1 = Tensor::randn({257}, {DType::f64}, a);
    Tensor x2 = Tensor::randn({257}, {DType::f64}, a);
    CHECK(x1.to_vector<double>() != x2.to_vector<double>()); // the generator advanced
    CHECK(Tensor::randn({257}, {DType::f64}, b).to_vector<double>() == x1.to_vector<double>());
    if (cuda::available()) {
        Generator c(42), d(42);
        Tensor gpu = Tensor::randn({257}, {DType::f64, Device::cuda(0)}, c);
        // Box-Muller uses log and cos; CUDA's and glibc's double versions may differ by an ulp.
        mg::test::require_close(gpu, x1, 1e-14, 1e-14, "randn cuda vs cpu");
        Tensor ug = Tensor::uniform({1000}, 0, 1, {DType::f32, Device::cuda(0)}, d);
        Generator e(42);
        Tensor uc = Tensor::uniform({1000}, 0, 1, {DType::f32}, e);
        CHECK(ug.to_vector<float>() == uc.to_vector<float>()); // pure integer arithmetic: exact
    }
}

TEST_CASE("tensor: printing", "[tensor]") {
    Tensor x = Tensor::from_vector(std::vector<float>{1, -2.5, 3, 4}, {2, 2});
    CHECK(x.str() == "tensor([[ 1.0000, -2.5000],\n        [ 3.0000,  4.0000]])");
    CHECK(fmt::format("{}", Tensor::arange(3, {DType::i32})) == "tensor([0, 1, 2], dtype=i32)");
    Tensor big = Tensor::arange(5000, {DType::f64});
    std::string s = big.str();
    CHECK(s.find("...") != std::string::npos);
    CHECK(s.find("4999") != std::string::npos);
    CHECK(s.find("size=(5000)") != std::string::npos);
    CHECK(s.size() < 200);
    Tensor r = Tensor::ones({2}).set_requires_grad(true);
    CHECK(r.str().find("requires_grad=True") != std::string::npos);
    CHECK((r * 2.0).str().find("grad_fn=<MulBackward>") != std::string::npos);
    if (cuda::available()) CHECK(Tensor::ones({1}, {DType::f32, Device::cuda(0)}).str().find("device='cuda:0'") != std::string::npos);
}

TEST_CASE("tensor: the CUDA caching allocator reuses blocks and reports current and peak bytes", "[tensor][cuda]") {
    MG_REQUIRE_CUDA();
    cuda::empty_cache();
    auto s0 = cuda::memory_stats(0);
    {
        Tensor a = Tensor::empty({1 << 20}, {DType::f32, Device::cuda(0)}); // 4 MiB
        auto s1 = cuda::memory_stats(0);
        CHECK(s1.allocated - s0.allocated >= (4u << 20));
        CHECK(s1.peak_allocated >= s1.allocated);
    }
    auto s2 = cuda::memory_stats(0);
    CHECK(s2.allocated == s0.allocated);
    CHECK(s2.reserved > s0.reserved); // the block is cached, not returned to the driver
    uint64_t mallocs = s2.num_cuda_malloc;
    for (int i = 0; i < 50; ++i) {
        Tensor a = Tensor::ones({1 << 20}, {DType::f32, Device::cuda(0)});
        Tensor b = a * 2.0; // a temporary of the same size each step
    }
    CHECK(cuda::memory_stats(0).num_cuda_malloc - mallocs <= 2); // steady state: no cudaMalloc per op
    cuda::empty_cache();
    CHECK(cuda::memory_stats(0).reserved <= s2.reserved);
}

TEST_CASE("tensor: staged host-to-device copies and pending reads keep stream order", "[tensor][cuda]") {
    MG_REQUIRE_CUDA();
    Generator gen(41);
    // More small uploads than the staging ring has slots, each from a host buffer that dies at
    // once, each followed by a kernel that reads it: every value must arrive in order.
    std::vector<Tensor> up;
    std::vector<std::vector<float>> want;
    for (int i = 0; i < 40; ++i) {
        const int64_t n = 1 + 997 * i; // odd sizes, 4 B .. 156 KB
        std::vector<float> v = Tensor::uniform({n}, -1, 1, {}, gen).to_vector<float>();
        up.push_back(Tensor::from_vector(v, {n}).to(Device::cuda(0)) * 2.0);
        for (float& x : v) x *= 2;
        want.push_back(v);
    }
    // a large one takes the synchronous path
    const int64_t big = int64_t(cuda::kStagedCopyBytes / 4) + 3;
    std::vector<float> vb = Tensor::uniform({big}, -1, 1, {}, gen).to_vector<float>();
    CHECK(Tensor::from_vector(vb, {big}).to(Device::cuda(0)).to_vector<float>() == vb);
    for (size_t i = 0; i < up.size(); ++i) {
        INFO("upload " << i);
        CHECK(up[i].to_vector<float>() == want[i]);
    }

    // A pending read sees the value at its place in the stream, not later writes; wait() is
    // idempotent; a moved-from read is invalid.
    Tensor x = Tensor::full({3}, 1.5, {DType::f32, Device::cuda(0)});
    cuda::PendingRead r(x.raw_data(), 3 * sizeof(float), 0);
    copy_into(x, Tensor::full({3}, 6.0, {DType::f32, Device::cuda(0)})); // queued after the read
    cuda::PendingRead r2 = std::move(r);
    CHECK_FALSE(r.valid());
    REQUIRE(r2.valid());
    const float* h = static_cast<const float*>(r2.wait());
    CHECK(std::vector<float>(h, h + 3) == std::vector<float>{1.5f, 1.5f, 1.5f});
    CHECK(r2.wait() == h);
    CHECK(x.to_vector<float>() == std::vector<float>{6, 6, 6});
    REQUIRE_ERROR_WITH(r.wait(), "PendingRead::wait", "nothing was queued");
}

TEST_CASE("tensor: strided copies on cuda equal the cpu's: long rows, short rows, transposes, conversions", "[tensor][cuda]") {
    MG_REQUIRE_CUDA();
    Generator g(43);
    Tensor base = Tensor::randn({3, 37, 260}, {DType::f64}, g);
    // views of a (3, 37, 260) base: rows of >= 64 elements take the row kernel (same-dtype rows
    // of whole 4-element packs at aligned offsets its vector path), the rest the element kernel
    // (cuda/copy.cu)
    struct Case { const char* what; std::function<Tensor(const Tensor&)> view; };
    const Case cases[] = {
        {"narrow: rows of 130 at a stride of 260 (a split piece)", [](const Tensor& t) { return t.narrow(2, 130, 130); }},
        {"narrow: rows of 128 from offset 4 (whole packs: the vector path)", [](const Tensor& t) { return t.narrow(2, 4, 128); }},
        {"narrow: rows of 64 from offset 3", [](const Tensor& t) { return t.narrow(2, 3, 64); }},
        {"narrow: rows of 63", [](const Tensor& t) { return t.narrow(2, 5, 63); }},
        {"transpose: inner stride 260", [](const Tensor& t) { return t.narrow(2, 0, 100).transpose(1, 2); }},
        {"narrow in the middle dim: rows of 30 x 260", [](const Tensor& t) { return t.narrow(1, 1, 30); }},
        {"long rows: 3 of 9617 at a stride of 9620 (several warps per row)",
         [](const Tensor& t) { return t.view({3, 9620}).narrow(1, 1, 9617); }},
        {"long rows: 3 of 9612 from offset 4 (several warps per row, vector path)",
         [](const Tensor& t) { return t.view({3, 9620}).narrow(1, 4, 9612); }},
    };
    const Tensor base_g = base.to(Device::cuda(0));
    for (const Case& c : cases) {
        for (DType to : {DType::f64, DType::f32}) {
            std::string what = fmt::format("{} to {}", c.what, dtype_name(to));
            Tensor want = c.view(base).to(to).contiguous();
            Tensor got = c.view(base_g).to(to).contiguous();
            REQUIRE(got.shape() == want.shape());
            mg::test::require_close(got.to(Device::cpu()), want, 0, 0, what); // copies are exact
        }
        // into a strided destination: a NaN-poisoned (3, 37, 260) whose view receives the copy;
        // every element outside the view must stay NaN
        Tensor dst = Tensor::full({3, 37, 260}, NAN, {DType::f32, Device::cuda(0)});
        Tensor src = c.view(base).to(DType::f32).contiguous();
        copy_into(c.view(dst), src.to(Device::cuda(0)));
        Tensor back = dst.to(Device::cpu());
        mg::test::require_close(c.view(back).contiguous(), src, 0, 0, std::string(c.what) + " into a strided view");
        Tensor expect = Tensor::full({3, 37, 260}, NAN, {DType::f32});
        copy_into(c.view(expect), src);
        std::vector<float> b = back.to_vector<float>(), e = expect.to_vector<float>();
        size_t wrong = 0;
        for (size_t i = 0; i < b.size(); ++i) wrong += std::isnan(e[i]) != std::isnan(b[i]);
        INFO(c.what);
        CHECK(wrong == 0);
    }
}

TEST_CASE("tensor: coalesce_dims merges only what every operand allows", "[tensor]") {
    // a narrow along the last dim of a contiguous (4, 5, 8) into a contiguous (4, 5, 3): the
    // first two dims merge for both, the last stays
    Shape shape{4, 5, 3}, dst{40, 8, 1}, src{15, 3, 1};
    coalesce_dims(shape, {&dst, &src});
    CHECK(shape == Shape{20, 3});
    CHECK(dst == Shape{8, 1});
    CHECK(src == Shape{3, 1});
    // both contiguous: one dim; size-1 dims vanish; a broadcast (stride 0) dim merges only with
    // another broadcast dim
    Shape s2{2, 1, 3, 4}, a{12, 12, 4, 1}, b{0, 0, 0, 1};
    coalesce_dims(s2, {&a, &b});
    CHECK(s2 == Shape{6, 4});
    CHECK(a == Shape{4, 1});
    CHECK(b == Shape{0, 1});
    // a transpose does not merge; all size-1 gives a 0-dim walk
    Shape s3{3, 2}, t{1, 3};
    coalesce_dims(s3, {&t});
    CHECK(s3 == Shape{3, 2});
    Shape s4{1, 1}, u{1, 1};
    coalesce_dims(s4, {&u});
    CHECK(s4.empty());
    CHECK(u.empty());
}

TEST_CASE("tensor: bad calls name the op, the tensor and what was expected", "[tensor][errors]") {
    Tensor x = Tensor::zeros({2, 3});
    REQUIRE_ERROR_WITH(x.reshape({4, 2}), "reshape", "(2,3)", "(4,2)");
    REQUIRE_ERROR_WITH(x.reshape({-1, -1}), "reshape", "more than one -1");
    REQUIRE_ERROR_WITH(x.transpose(0, 1).view({6}), "view", "not contiguous", "reshape()");
    REQUIRE_ERROR_WITH(x.narrow(1, 2, 2), "narrow", "[2, 4)", "size 3", "(2,3) f32 cpu");
    REQUIRE_ERROR_WITH(x.transpose(0, 2), "transpose", "dim 2 out of range");
    REQUIRE_ERROR_WITH(x.squeeze(0), "squeeze", "size 2, expected 1");
    REQUIRE_ERROR_WITH(x.expand({4, 3}), "expand", "(2,3)", "(4,3)");
    REQUIRE_ERROR_WITH(x.permute({0, 0}), "permute", "repeats");
    REQUIRE_ERROR_WITH(x.item(), "item", "6 elements");
    REQUIRE_ERROR_WITH(x.to_vector<double>(), "to_vector", "f32", "f64");
    REQUIRE_ERROR_WITH(Tensor::from_vector(std::vector<float>{1, 2}, {3}), "from_vector", "2 values", "(3)");
    REQUIRE_ERROR_WITH(Tensor::zeros({2, -1}), "negative size");
    REQUIRE_ERROR_WITH(Tensor::zeros({1, 1, 1, 1, 1, 1, 1, 1, 1}), "9 dims", "at most 8");
    REQUIRE_ERROR_WITH(Tensor::arange(3, {DType::i32}).set_requires_grad(true), "set_requires_grad", "i32");
    REQUIRE_ERROR_WITH(Tensor::randn({2}, {DType::i32}), "randn", "i32");
    REQUIRE_ERROR_WITH(Device::parse("gpu"), "unknown device 'gpu'", "cuda:N");
    REQUIRE_ERROR_WITH(parse_dtype("f16"), "unknown dtype 'f16'", "f32, f64, i32");
    REQUIRE_ERROR_WITH(Tensor().shape(), "undefined tensor");
    // a CUDA device that is not there
    REQUIRE_ERROR_WITH(Tensor::zeros({2}, {DType::f32, Device::cuda(7)}), "cuda:7", "CUDA device(s) are visible");
}
