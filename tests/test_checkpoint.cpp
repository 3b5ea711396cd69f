// tests/test_checkpoint.cpp: safetensors files and checkpoints (train/checkpoint.h): round trip,
// corrupt files, atomic writes, exact resume, Python safetensors compatibility.
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "tests/helpers.h"
#include "tests/train_helpers.h"
#include "train/checkpoint.h"
#include "train/clip.h"
#include "train/guard.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "train/schedule.h"

using namespace mg;
using namespace mg::train;
using namespace mg::test;
namespace fs = std::filesystem;

// ==== safetensors and checkpoints =============================================================

TEST_CASE("safetensors: round trip is bit-exact for f32, f64, i32, scalars, empty and strided", "[train]") {
    TempDir dir("st_roundtrip");
    Generator gen(21);
    Tensor f = Tensor::randn({3, 5}, {}, gen);
    Tensor d = Tensor::randn({2, 1, 3}, {DType::f64}, gen);
    Tensor i = Tensor::from_vector(std::vector<int32_t>{-7, 0, 2147483647, -2147483647 - 1}, {4});
    Tensor s = Tensor::scalar(-0.0, {DType::f64});
    Tensor e = Tensor::zeros({0, 4});
    Tensor special = Tensor::from_vector(std::vector<float>{NAN, INFINITY, -INFINITY, 1e-45f}, {4});
    Tensor strided = f.transpose(0, 1); // written as its row-major (5,3) contents
    NamedTensors ts = {{"f", f}, {"d", d}, {"i", i}, {"s", s}, {"e", e}, {"special", special}, {"strided", strided}};
    Metadata meta = {{"format", "pt"}, {"quote\"key", "line\nbreak \u00e9 \\ {}"}, {"empty", ""}};
    const std::string path = dir.file("a.safetensors");
    save_safetensors(path, ts, meta);
    CHECK(dir.listing() == std::vector<std::string>{"a.safetensors"}); // no temp file left
    const std::string bytes = read_all(path);
    uint64_t n;
    std::memcpy(&n, bytes.data(), 8);
    CHECK((8 + n) % 8 == 0); // data section 8-byte aligned
    SafetensorsFile r = load_safetensors(path);
    Metadata with_sum = meta; // the writer adds the checksum of the tensor bytes
    REQUIRE(r.metadata.count(kChecksumKey));
    CHECK(r.metadata.at(kChecksumKey).starts_with("mg64:"));
    with_sum[kChecksumKey] = r.metadata.at(kChecksumKey);
    CHECK(r.metadata == with_sum);
    REQUIRE(r.tensors.size() == ts.size());
    auto by = r.by_name();
    for (const auto& [name, t] : ts) {
        INFO(name);
        REQUIRE(by.count(name));
        CHECK(by[name].shape() == t.shape());
        CHECK(by[name].dtype() == t.dtype());
        CHECK(same_bits(by[name], t));
    }
    // no metadata of the caller's (only the checksum); and onto a GPU when there is one
    save_safetensors(path, {{"i", i}});
    CHECK(load_safetensors(path).metadata.size() == 1);
    if (cuda::available()) {
        SafetensorsFile g = load_safetensors(path, Device::cuda());
        CHECK(g.tensors[0].second.is_cuda());
        CHECK(same_bits(g.tensors[0].second, i));
    }
    REQUIRE_ERROR_WITH(save_safetensors(path, {{"a", f}, {"a", d}}), "save_safetensors", "'a' appears twice");
    REQUIRE_ERROR_WITH(save_safetensors(path, {{"__metadata__", f}}), "save_safetensors", "'__metadata__'");
    REQUIRE_ERROR_WITH(save_safetensors(path, {{"f", f}}, {{"bad", "\xff\xfe"}}), "save_safetensors", "a.safetensors",
                       "invalid UTF-8");
}

TEST_CASE("safetensors: corrupt files give errors naming the file and the tensor", "[train]") {
    TempDir dir("st_corrupt");
    const std::string good = dir.file("good.safetensors");
    save_safetensors(good, {{"w", Tensor::randn({4, 4})}, {"b", Tensor::randn({4})}}, {{"k", "v"}});
    const std::string bytes = read_all(good);
    const std::string p = dir.file("bad.safetensors");
    auto expect_error = [&](const std::string& content, std::vector<std::string> parts) {
        write_all(p, content);
        try {
            load_safetensors(p);
            FAIL("expected mg::Error for " << parts.back());
        } catch (const Error& e) {
            const std::string msg = e.what();
            INFO("message: " << msg);
            CHECK(msg.find("bad.safetensors") != std::string::npos);
            for (const auto& part : parts) {
                INFO("expected: " << part);
                CHECK(msg.find(part) != std::string::npos);
            }
        }
    };
    const std::string f32x4 = std::string(16, '\1');
    expect_error(bytes.substr(0, bytes.size() - 3), {"tensor 'b'", "truncated"});
    expect_error(bytes.substr(0, 5), {"too short"});
    expect_error(bytes.substr(0, 40), {"runs past the end", "truncated"});
    expect_error(raw_safetensors("{\"w\": {\"dtype\": \"F32\", ", f32x4), {"not valid JSON"});
    expect_error(raw_safetensors("[1, 2]", ""), {"expected an object"});
    expect_error(raw_safetensors(R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", std::string(2, '\0')),
                 {"tensor 'w'", "dtype 'F8_E4M3' is not supported", "BF16"});
    // BF16 is read (2 bytes an element): 4 bytes hold [2], not [3]
    expect_error(raw_safetensors(R"({"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,4]}})", std::string(4, '\0')),
                 {"tensor 'w'", "hold 4 bytes", "needs 6"});
    expect_error(raw_safetensors(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,32]}})", f32x4),
                 {"tensor 'w'", "end past the 16-byte data section"});
    expect_error(raw_safetensors(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", f32x4),
                 {"tensor 'w'", "hold 16 bytes", "needs 12"});
    expect_error(raw_safetensors(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", f32x4),
                 {"tensor 'w'", "begin > end"});
    expect_error(raw_safetensors(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", f32x4),
                 {"tensor 'w'", "negative"});
    expect_error(raw_safetensors(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}})",
                                 f32x4),
                 {"tensor 'w'", "more elements than"});
    expect_error(raw_safetensors(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
                                 R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                 f32x4),
                 {"tensor 'b'", "overlap tensor 'a'"});
    expect_error(raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", f32x4),
                 {"tensor 'a'", "hole"});
    expect_error(raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f32x4),
                 {"trailing bytes"});
    expect_error(raw_safetensors(R"({"__metadata__":{"k":1}})", ""), {"__metadata__ entry 'k'", "expected a string"});
    expect_error(raw_safetensors(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", f32x4.substr(0, 8)),
                 {"tensor 'w'", "dtype"});
    std::string huge(8, '\xff');
    expect_error(huge + "{}", {"over the"});
    REQUIRE_ERROR_WITH(load_safetensors(dir.file("missing.safetensors")), "cannot open", "missing.safetensors");
    // an empty header object is a valid, empty file
    write_all(p, raw_safetensors("{}      ", ""));
    CHECK(load_safetensors(p).tensors.empty());
}

TEST_CASE("safetensors: bf16 tensors are written as BF16 and read back bit for bit when asked; f32 by default",
          "[train][bf16]") {
    TempDir dir("st_bf16");
    // specials (NaN, ±Inf, -0, a subnormal) and ordinary values, beside an f32 tensor
    const std::vector<uint16_t> raw = {0x7FC0, 0xFF80, 0x7F80, 0x8000, 0x0001, 0x3F80, 0xBDCD, 0x4049};
    std::vector<bf16> vals;
    for (uint16_t r : raw) vals.push_back(bf16::from_bits(r));
    const Tensor b = Tensor::from_vector(vals, {2, 4});
    const Tensor f = Tensor::randn({3});
    const std::string path = dir.file("b.safetensors");
    save_safetensors(path, {{"b", b}, {"f", f}, {"bt", b.transpose(0, 1)}});
    const SafetensorsHeader h = read_safetensors_header(path);
    REQUIRE(h.entries.size() == 3);
    CHECK((h.entries[0].stored == "BF16" && h.entries[0].stored_size() == 2 && h.entries[0].end == 16));
    CHECK(h.entries[0].dtype == DType::f32); // the default reading
    // by default BF16 is widened to f32 exactly: what checkpoints and model folders expect
    auto wide = load_safetensors(path).by_name();
    CHECK(wide.at("b").dtype() == DType::f32);
    CHECK(same_bits(wide.at("b"), b.to(DType::f32)));
    // asked for, bf16 comes back as stored, NaN payloads included; f32 stays f32
    for (Device d : devices()) {
        INFO(d.str());
        auto kept = load_safetensors(path, d, HalfRead::keep_bf16).by_name();
        CHECK(kept.at("b").dtype() == DType::bf16);
        CHECK(kept.at("b").device() == d);
        CHECK(same_bits(kept.at("b"), b));
        CHECK(same_bits(kept.at("bt"), b.transpose(0, 1).contiguous()));
        CHECK(same_bits(kept.at("f"), f));
    }
    // the safety checks hold for the bf16 reading too: a wrong size, a flipped byte
    write_all(dir.file("short.safetensors"),
              raw_safetensors(R"({"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,4]}})", std::string(4, '\0')));
    REQUIRE_ERROR_WITH(load_safetensors(dir.file("short.safetensors"), Device::cpu(), HalfRead::keep_bf16), "tensor 'w'",
                       "hold 4 bytes", "needs 6");
    std::string bytes = read_all(path);
    bytes[bytes.size() - 13] ^= 0x01; // inside "bt"'s data
    write_all(path, bytes);
    REQUIRE_ERROR_WITH(load_safetensors(path, Device::cpu(), HalfRead::keep_bf16), "checksum", "damaged");
    // a checkpoint of bf16 tensors loads (as f32) and its NaN is found
    REQUIRE_ERROR_WITH(require_finite("x", {{"b", b}}), "tensor 'b'", "bf16");
}

TEST_CASE("safetensors: torch's bfloat16 bits are ours: its rounding of float32 and our reading of the file",
          "[train][bf16]") {
    // tools/make_hf_fixtures.py half_dtypes(): torch.tensor(vals, float32).to(torch.bfloat16)
    const std::vector<float> vals = {1.0f, -2.5f, 3.140625f, 0.1f, -0.0f, 65504.0f, 0x1p-24f, 0x1p-14f, 1e-3f,
                                     INFINITY, -INFINITY};
    auto t = load_safetensors("tests/fixtures/half_dtypes.safetensors", Device::cpu(), HalfRead::keep_bf16).by_name();
    REQUIRE(t.at("bf16").dtype() == DType::bf16);
    CHECK(t.at("f16").dtype() == DType::f32); // there is no f16 dtype: F16 is always widened
    const Tensor ours = Tensor::from_vector(vals, {int64_t(vals.size())}).to(DType::bf16);
    CHECK(same_bits(ours, t.at("bf16")));
    CHECK(same_bits(t.at("bf16").to(DType::f32), t.at("bf16_as_f32")));
}

TEST_CASE("safetensors: a failed write leaves the old file and no temp file", "[train]") {
    TempDir dir("st_atomic");
    Tensor w = Tensor::randn({8});
    // the directory does not exist: nothing is created anywhere
    REQUIRE_ERROR_WITH(save_safetensors(dir.file("no/such/dir/x.safetensors"), {{"w", w}}), "AtomicFile",
                       "x.safetensors");
    CHECK(dir.listing().empty());
    // the target is a directory: the temp file is written, the rename fails, the temp is removed
    fs::create_directories(dir.path / "ckpt.safetensors");
    REQUIRE_ERROR_WITH(save_safetensors(dir.file("ckpt.safetensors"), {{"w", w}}), "AtomicFile", "rename",
                       "ckpt.safetensors");
    CHECK(dir.listing() == std::vector<std::string>{"ckpt.safetensors"});
    // a failure before writing (bad input) leaves an existing checkpoint untouched
    const std::string path = dir.file("last.safetensors");
    save_safetensors(path, {{"w", w}});
    const std::string before = read_all(path);
    REQUIRE_ERROR_WITH(save_safetensors(path, {{"w", w}, {"w", w}}), "appears twice");
    CHECK(read_all(path) == before);
    CHECK(dir.listing() == std::vector<std::string>{"ckpt.safetensors", "last.safetensors"});
}

TEST_CASE("checkpoint: parameters, optimizer and trainer state resume bit-identically", "[train]") {
    TempDir dir("ckpt");
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator gen(31);
            auto make = [&](uint64_t seed) {
                Generator g(seed);
                return NamedTensors{{"backbone.embedding.weight", Tensor::randn({6, 4}, {DType::f32, dev}, g)},
                                    {"backbone.layers.0.mixer.A_log", Tensor::randn({4, 3}, {DType::f32, dev}, g)},
                                    {"backbone.layers.0.mixer.D", Tensor::randn({4}, {DType::f32, dev}, g)}};
            };
            NamedTensors params = make(1);
            AdamWOptions o;
            o.no_decay = mamba_ssm_no_decay;
            AdamW opt(params, o);
            std::vector<std::vector<Tensor>> grads;
            for (int s = 0; s < 5; ++s) {
                std::vector<Tensor> g;
                for (const auto& np : params) g.push_back(Tensor::randn(np.second.shape(), {DType::f32, dev}, gen));
                grads.push_back(g);
            }
            auto run_step = [&](const NamedTensors& ps, AdamW& op, int s) {
                for (size_t k = 0; k < ps.size(); ++k) set_grad(ps[k].second, grads[size_t(s)][k]);
                op.step();
            };
            for (int s = 0; s < 3; ++s) run_step(params, opt, s);
            TrainerState st{2, 3, 17, 0xDEADBEEFCAFEULL, 1ULL << 40, 0.0, 0, {}};
            const std::string config = R"({"model":{"d_model":4,"n_layer":1},"lr":0.001})";
            const std::string path = dir.file(fmt::format("step3_{}.safetensors", dev.kind));
            save_checkpoint(path, params, &opt, st, config, {{"note", "test"}});

            NamedTensors fresh = make(2);
            AdamW opt2(fresh, o);
            LoadedCheckpoint lc = load_checkpoint(path, fresh, &opt2);
            CHECK(lc.state == st);
            CHECK(lc.config_json == config);
            CHECK(lc.metadata.at("note") == "test");
            CHECK(lc.metadata.at("format") == "pt");
            for (int s = 3; s < 5; ++s) {
                run_step(params, opt, s);
                run_step(fresh, opt2, s);
            }
            for (size_t k = 0; k < params.size(); ++k) CHECK(same_bits(params[k].second, fresh[k].second));

            // the same file as a plain model file: optimizer tensors are ignored without an optimizer
            NamedTensors model_only = make(3);
            load_checkpoint(path, model_only, nullptr);
            // mismatches are refused before anything changes
            NamedTensors wrong = make(4);
            wrong[2].second = Tensor::randn({5}, {DType::f32, dev}, gen);
            Tensor keep = wrong[0].second.clone();
            REQUIRE_ERROR_WITH(load_checkpoint(path, wrong, nullptr), "load_checkpoint",
                               "'backbone.layers.0.mixer.D'", fmt::format("(4) f32 cpu"), "(5) f32");
            CHECK(same_bits(wrong[0].second, keep));
            NamedTensors fewer(params.begin(), params.begin() + 2);
            REQUIRE_ERROR_WITH(load_checkpoint(path, fewer, nullptr), "'backbone.layers.0.mixer.D'", "matches no parameter");
            load_checkpoint(path, fewer, nullptr, /*allow_unexpected=*/true);
            NamedTensors more = make(5);
            more.emplace_back("lm_head.weight", Tensor::randn({6, 4}, {DType::f32, dev}, gen));
            REQUIRE_ERROR_WITH(load_checkpoint(path, more, nullptr), "'lm_head.weight'", "not in the file");
            // a model-only file cannot restore an optimizer
            const std::string model_path = dir.file("model.safetensors");
            save_checkpoint(model_path, params, nullptr, st, config);
            AdamW opt3(make(6), o);
            REQUIRE_ERROR_WITH(load_checkpoint(model_path, opt3.params(), &opt3), "no optimizer state");
            REQUIRE_ERROR_WITH(save_checkpoint(model_path, params, nullptr, st, config, {{"format", "x"}}), "reserved");
        }
    }
}

TEST_CASE("safetensors: Python's safetensors reads our files and we read its files", "[train][python]") {
    // Runs when python3 with numpy and safetensors is installed (pip install safetensors numpy).
    const std::string script = "tests/safetensors_compat.py";
    if (!fs::exists(script)) {
        WARN("skipped: " << script << " not found (run the suite from the repository root)");
        return;
    }
    if (std::system("python3 -c 'import numpy, safetensors' >/dev/null 2>&1") != 0) {
        WARN("skipped: python3 with numpy and safetensors is not installed");
        return;
    }
    TempDir dir("st_python");
    const std::string ours = dir.file("ours.safetensors"), theirs = dir.file("theirs.safetensors");
    Tensor f = Tensor::from_vector(std::vector<float>{0.5f, -1.25f, 3.0f, 1e-30f, -0.0f, 7.0f}, {2, 3});
    Tensor d = Tensor::from_vector(std::vector<double>{1.0 / 3.0, -2.5e300}, {2, 1});
    Tensor i = Tensor::from_vector(std::vector<int32_t>{-1, 0, 1, 2147483647}, {4});
    save_checkpoint(ours, {{"model.f", f}, {"model.d", d}, {"model.i", i}}, nullptr, TrainerState{1, 2, 3, 4, 5, 0.0, 0, {}},
                    R"({"name":"py"})");
    const std::string cmd = fmt::format("python3 {} {} {}", script, ours, theirs);
    REQUIRE(std::system(cmd.c_str()) == 0);
    SafetensorsFile r = load_safetensors(theirs);
    auto by = r.by_name();
    REQUIRE(by.count("np.f32"));
    CHECK(by["np.f32"].shape() == Shape{2, 3});
    CHECK(by["np.f32"].to_vector<float>() == std::vector<float>{0, 1.5f, 3, 4.5f, 6, 7.5f});
    CHECK(by["np.f64"].shape() == Shape{3});
    CHECK(by["np.f64"].to_vector<double>() == std::vector<double>{0.1, 0.2, -1e-300});
    CHECK(by["np.i32"].to_vector<int32_t>() == std::vector<int32_t>{5, -6});
    CHECK(by["np.scalar"].shape() == Shape{});
    CHECK(by["np.scalar"].item() == 2.0);
    CHECK(r.metadata.at("from") == "python");
}

TEST_CASE("safetensors: a flipped data byte is caught by the checksum; files without one still load", "[train]") {
    TempDir dir("st_checksum");
    Generator gen(5);
    const std::string path = dir.file("a.safetensors");
    save_safetensors(path, {{"w", Tensor::randn({7, 3}, {}, gen)}, {"b", Tensor::randn({5}, {DType::f64}, gen)}},
                     {{"format", "pt"}});
    std::string bytes = read_all(path);
    uint64_t n;
    std::memcpy(&n, bytes.data(), 8);
    const size_t data = 8 + size_t(n);
    for (size_t at : {data, data + 40, bytes.size() - 1}) { // first, middle and last byte of the data
        std::string bad = bytes;
        bad[at] = char(bad[at] ^ 0x10);
        std::ofstream(dir.file("bad.safetensors"), std::ios::binary) << bad;
        REQUIRE_ERROR_WITH(load_safetensors(dir.file("bad.safetensors")), "load_safetensors", "bad.safetensors",
                           "does not match the file's checksum", "the file is damaged");
    }
    // the same bytes without the checksum key (as another writer would make them) load
    SafetensorsFile f = load_safetensors(path);
    const std::string sum = f.metadata.at(kChecksumKey);
    const size_t key = bytes.find(kChecksumKey);
    REQUIRE(key != std::string::npos);
    std::string renamed = bytes;
    renamed.replace(key, std::string(kChecksumKey).size(), std::string(std::string(kChecksumKey).size(), 'x'));
    renamed[data + 3] = char(renamed[data + 3] ^ 1); // unchecked now: loads with the changed byte
    std::ofstream(dir.file("nosum.safetensors"), std::ios::binary) << renamed;
    CHECK_FALSE(load_safetensors(dir.file("nosum.safetensors")).metadata.count(kChecksumKey));
    // the checksum covers the bytes in order and their count
    const char a[] = "abcdefghij";
    CHECK(data_checksum({{a, 10}}) == data_checksum({{a, 3}, {a + 3, 7}}));
    CHECK(data_checksum({{a, 10}}) != data_checksum({{a, 9}}));
    CHECK(data_checksum({}) != data_checksum({{a, 1}}));
    (void)sum;
}

TEST_CASE("checkpoint: NaN or Inf in a weight is refused on load with the tensor and the first index", "[train]") {
    TempDir dir("ckpt_nan");
    Generator gen(3);
    Tensor w = Tensor::randn({3, 4}, {}, gen), good = Tensor::randn({2}, {}, gen);
    std::vector<float> v = w.to_vector<float>();
    v[6] = NAN;
    v[9] = -INFINITY;
    Tensor bad = Tensor::from_vector(v, {3, 4});
    save_checkpoint(dir.file("c.safetensors"), {{"model.w", bad}, {"model.g", good}}, nullptr, TrainerState{}, "{}");
    Tensor into_w = Tensor::zeros({3, 4}), into_g = Tensor::zeros({2});
    REQUIRE_ERROR_WITH(load_checkpoint(dir.file("c.safetensors"), {{"model.w", into_w}, {"model.g", into_g}}, nullptr),
                       "load_checkpoint", "c.safetensors", "tensor 'model.w' ((3,4) f32 cpu)", "2 non-finite values",
                       "the first is nan at index (1,2)", "refusing");
    CHECK(into_w.to_vector<float>() == std::vector<float>(12, 0.f)); // nothing was copied
}
