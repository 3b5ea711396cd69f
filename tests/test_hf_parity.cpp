// tests/test_hf_parity.cpp: our models against implementations we did not write. The fixtures
// (tests/fixtures/hf_*.safetensors, made by tools/make_hf_fixtures.py with the torch and
// transformers versions recorded in their metadata) hold a tiny random GPTNeoXForCausalLM and
// MambaForCausalLM in float64: weights under transformers' names, a batch of ids, the logits,
// the next-token loss and every parameter's gradient. Here, on the CPU and with no Python, our
// TransformerLM and MambaLM load those weights (the Mamba's names mapped by
// nn::from_transformers_mamba) and must reproduce the logits and the loss to 1e-5 relative and
// the gradients to 1e-4, on every device (each relative to the tensor's largest element). Not tighter: even in a
// float64 model transformers computes GPT-NeoX's rotary cos/sin and Mamba's RMSNorm in float32.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include "data/tokenizer.h"
#include "nn/hf_names.h"
#include "nn/mamba.h"
#include "nn/transformer.h"
#include "tests/helpers.h"
#include "train/checkpoint.h"
#include "train/evaluate.h"
#include "train/generate.h"
#include "train/pretrained.h"
#include "train/trainer.h"

using namespace mg;
using namespace mg::nn;

namespace {

Tensor abs_of(const Tensor& t) { return sqrt(t * t); }

const std::string kDir = "tests/fixtures/";

struct Fixture {
    StateDict weights, grads;
    Tensor ids, logits, loss;
};

Fixture load_fixture(const std::string& file) {
    Fixture f;
    for (auto& [name, t] : train::load_safetensors(kDir + file).tensors) {
        if (name == "fixture.input_ids") f.ids = t;
        else if (name == "fixture.logits") f.logits = t;
        else if (name == "fixture.loss") f.loss = t;
        else if (name.rfind("grad.", 0) == 0) f.grads[name.substr(5)] = t;
        else f.weights[name] = t;
    }
    REQUIRE(f.ids.defined());
    REQUIRE(f.logits.defined());
    REQUIRE(f.loss.defined());
    return f;
}

// Next-token loss as the fixture computed it: cross-entropy of logits[:, :-1] against ids[:, 1:].
Tensor next_token_loss(const Tensor& logits, const Tensor& ids) {
    const int64_t B = ids.size(0), L = ids.size(1);
    return cross_entropy(logits.narrow(1, 0, L - 1), ids.narrow(1, 1, L - 1).contiguous().reshape({B, L - 1}));
}

// The largest |x|: tolerances are relative to a tensor's scale (a logit or a gradient element
// near 0 has no meaningful relative error).
double scale_of(const Tensor& t) { return max(abs_of(t)).item(); }

// Logits and loss within `rel` of their scale, gradients within 10 rel of each tensor's scale.
void check_model(Module& model, const std::function<Tensor(const Tensor&)>& forward, const Fixture& f, double rel,
                 const std::function<std::string(const std::string&)>& our_name) {
    const Tensor ids = f.ids.to(model.parameters().front().device());
    Tensor logits = forward(ids);
    // our padded vocabulary may be wider than theirs: compare their columns
    Tensor ours = logits.narrow(2, 0, f.logits.size(2));
    mg::test::require_close(ours, f.logits, 0, rel * scale_of(f.logits), "logits");
    Tensor loss = next_token_loss(ours, ids);
    mg::test::require_close(loss.reshape({1}), f.loss, rel, 0, "loss");
    loss.backward();
    auto params = model.named_parameters();
    std::map<std::string, Tensor> mine(params.begin(), params.end());
    REQUIRE(f.grads.size() == params.size());
    for (const auto& [theirs, g] : f.grads) {
        INFO("parameter " << theirs);
        REQUIRE(mine.count(our_name(theirs)) == 1);
        mg::test::require_close(mine[our_name(theirs)].grad(), g, 0, 10 * rel * scale_of(g), "gradient of " + theirs);
    }
}

} // namespace

TEST_CASE("hf parity: TransformerLM reproduces transformers' GPTNeoXForCausalLM", "[transformer][parity]") {
    Fixture f = load_fixture("hf_gpt_neox.safetensors");
    TransformerConfig cfg;
    cfg.d_model = 32, cfg.n_layer = 2, cfg.n_head = 4, cfg.d_ff = 64, cfg.vocab_size = 64, cfg.rotary_pct = 0.25;
    for (Device dev : mg::test::devices()) {
        SECTION(dev.str()) {
            TransformerLM model(cfg, {DType::f64, dev});
            model.load_state_dict(from_transformers_gpt_neox(f.weights)); // transformers' names (lm_head: embed_out)
            // transformers computes the rotary angles, cos and sin in float32 even in a float64
            // model (measured: logits within 2e-7 of their scale)
            check_model(model, [&](const Tensor& ids) { return model.forward(ids); }, f, 1e-5,
                        [](const std::string& n) { return gpt_neox_name_from_transformers(n); });
        }
    }
}

TEST_CASE("hf parity: MambaLM reproduces transformers' MambaForCausalLM", "[nn][parity]") {
    Fixture f = load_fixture("hf_mamba.safetensors");
    MambaConfig cfg;
    cfg.d_model = 16, cfg.n_layer = 2, cfg.vocab_size = 64, cfg.d_state = 4, cfg.d_conv = 4, cfg.expand = 2;
    cfg.dt_rank = 2;
    for (Device dev : mg::test::devices()) {
        SECTION(dev.str()) {
            MambaLM model(cfg, {DType::f64, dev});
            model.load_state_dict(from_transformers_mamba(f.weights));
            // transformers' MambaRMSNorm rounds through float32 even in a float64 model: agreement
            // to float32's precision
            check_model(model, [&](const Tensor& ids) { return model.forward(ids); }, f, 1e-5,
                        [](const std::string& n) { return mamba_name_from_transformers(n); });
        }
    }
}

// ---- model folders (train/pretrained.h) ------------------------------------------------------
// tests/fixtures/hf_mamba_folder/ and hf_mamba_sharded/ are what MambaForCausalLM.save_pretrained
// wrote (float32, vocab 801 = the BPE fixture's tokenizer, which each folder holds as
// tokenizer.json); hf_mamba_folder.expected.safetensors what transformers computed with them.

namespace {

const std::string kFolder = kDir + "hf_mamba_folder";
const std::string kSharded = kDir + "hf_mamba_sharded";

std::vector<int32_t> ids_of(const Tensor& t) { return t.to(Device::cpu()).to_vector<int32_t>(); }

// A copy of the fixture folder in `dir` with config.json edited by `edit` and the weights
// (transformers' names) by `edit_weights`.
std::string edited_folder(const mg::test::TempDir& dir, const std::string& name,
                          const std::function<void(nlohmann::json&)>& edit,
                          const std::function<void(std::map<std::string, Tensor>&)>& edit_weights = {}) {
    namespace fs = std::filesystem;
    const std::string out = dir.file(name);
    fs::create_directories(out);
    nlohmann::json config = nlohmann::json::parse(std::ifstream(kFolder + "/config.json"));
    if (edit) edit(config);
    std::ofstream(out + "/config.json") << config.dump(2);
    std::map<std::string, Tensor> w = train::load_safetensors(kFolder + "/model.safetensors").by_name();
    if (edit_weights) edit_weights(w);
    train::save_safetensors(out + "/model.safetensors", train::NamedTensors(w.begin(), w.end()), {{"format", "pt"}});
    return out;
}

} // namespace

TEST_CASE("model folders: a transformers folder, one file or sharded, reproduces transformers' numbers", "[pretrained]") {
    Fixture f = load_fixture("hf_mamba_folder.expected.safetensors");
    for (const std::string& dir : {kFolder, kSharded}) {
        for (Device dev : mg::test::devices()) {
            SECTION(dir + " on " + dev.str()) {
                train::LoadedModel m = train::load_model(dir, dev.str());
                CHECK(m.config.task.is_lm());
                CHECK(m.config.model.padded_vocab() == 801); // transformers' rows: no padding
                CHECK(m.config.task.tokenizer.ends_with("tokenizer.json"));
                // float32 on both sides: logits to 1e-5 of their scale, gradients to 1e-4
                check_model(*m.model, [&](const Tensor& ids) { return m.model->forward(ids); }, f, 1e-5,
                            [](const std::string& n) { return mamba_name_from_transformers(n); });
            }
        }
    }
}

TEST_CASE("model folders: greedy generation through the folder's tokenizer is transformers' generate", "[pretrained]") {
    Fixture f = load_fixture("hf_mamba_folder.expected.safetensors");
    std::map<std::string, Tensor> rec = train::load_safetensors(kDir + "hf_mamba_folder.expected.safetensors").by_name();
    const train::Metadata meta = train::load_safetensors(kDir + "hf_mamba_folder.expected.safetensors").metadata;
    const std::vector<int32_t> expected = ids_of(rec.at("fixture.greedy_ids"));
    const std::string prompt = meta.at("prompt");
    for (Device dev : mg::test::devices()) {
        SECTION(dev.str()) {
            train::LoadedModel m = train::load_model(kFolder, dev.str());
            const auto tok = data::load_tokenizer(m.config.task.tokenizer);
            const std::vector<int32_t> prompt_ids = tok->encode(prompt);
            CHECK(prompt_ids == ids_of(rec.at("fixture.prompt_ids")));
            train::GenerateOptions greedy{.max_new_tokens = int64_t(expected.size()), .temperature = 0};
            CHECK(train::generate_ids(*m.model, *tok, prompt_ids, greedy) == expected);
        }
    }
    // the command prints the prompt, then the continuation's bytes
    const auto tok = data::load_tokenizer(kFolder + "/tokenizer.json");
    mg::test::Run r = mg::test::run_cli(fmt::format("generate --checkpoint {} --prompt '{}' --temperature 0 "
                                                    "--max_new_tokens {} --device cpu", kFolder, prompt, expected.size()));
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK(r.out == prompt + tok->decode(expected) + "\n");
}

TEST_CASE("model folders: export writes what save_pretrained wrote; convert round-trips", "[pretrained]") {
    mg::test::TempDir dir("export");
    train::LoadedModel m = train::load_model(kFolder, "cpu");
    const std::string out = dir.file("exported");
    train::save_model_folder(out, m.config.model, m.model->named_parameters(), m.config.task.tokenizer);
    // config.json: the same keys and values (but the writer's version)
    nlohmann::json theirs = nlohmann::json::parse(std::ifstream(kFolder + "/config.json"));
    nlohmann::json ours = nlohmann::json::parse(std::ifstream(out + "/config.json"));
    theirs.erase("transformers_version");
    CHECK(ours == theirs);
    // the tensors: the same names, dtypes, shapes and values
    const auto a = train::load_safetensors(kFolder + "/model.safetensors").by_name();
    const auto b = train::load_safetensors(out + "/model.safetensors").by_name();
    REQUIRE(a.size() == b.size());
    for (const auto& [name, t] : a) {
        INFO(name);
        REQUIRE(b.count(name) == 1);
        CHECK(b.at(name).dtype() == t.dtype());
        mg::test::require_close(b.at(name), t, 0, 0, name);
    }
    CHECK(std::filesystem::exists(out + "/tokenizer.json"));
    CHECK(std::filesystem::exists(out + "/generation_config.json"));
    // an existing, non-empty folder is never written into
    REQUIRE_ERROR_WITH(train::save_model_folder(out, m.config.model, m.model->named_parameters()), "export",
                       "exists and is not an empty folder");

    // the command line: folder -> checkpoint -> folder, and the checkpoint generates the same text
    const std::string ckpt = dir.file("imported.safetensors"), back = dir.file("back");
    mg::test::Run r = mg::test::run_cli(fmt::format("convert --from hf {} --out {}", kSharded, ckpt));
    INFO(r.out);
    REQUIRE(r.status == 0);
    r = mg::test::run_cli(fmt::format("convert --to hf {} --out {}", ckpt, back));
    REQUIRE(r.status == 0);
    const auto c = train::load_safetensors(back + "/model.safetensors").by_name();
    for (const auto& [name, t] : a) mg::test::require_close(c.at(name), t, 0, 0, name);
    r = mg::test::run_cli(fmt::format("probe --checkpoint {} --batch 2 --task.kind mqar --task.grid 16x2 "
                                      "--task.vocab_size 16 --device cpu", kFolder));
    INFO(r.out);
    CHECK(r.status == 0); // probe takes a folder as every command does
    r = mg::test::run_cli(fmt::format("info --checkpoint {}", kFolder));
    CHECK(r.status == 0);
    CHECK(r.out.find("MambaLM, d_model 16, n_layer 2") != std::string::npos);
    const std::string g1 = mg::test::run_cli(fmt::format("generate --checkpoint {} --prompt 'And God' --temperature 0 "
                                                          "--max_new_tokens 8 --device cpu", kFolder)).out;
    const std::string g2 = mg::test::run_cli(fmt::format("generate --checkpoint {} --prompt 'And God' --temperature 0 "
                                                          "--max_new_tokens 8 --device cpu", ckpt)).out;
    CHECK(g1 == g2);

    // a byte-level model: its start and end tokens are BOS 256 and EOS 257
    MambaConfig bytes_cfg = m.config.model;
    bytes_cfg.vocab_size = 258;
    bytes_cfg.pad_vocab_size_multiple = 8;
    MambaLM byte_model(bytes_cfg, {DType::f32, Device::cpu()});
    train::save_model_folder(dir.file("bytes"), bytes_cfg, byte_model.named_parameters());
    const nlohmann::json bc = nlohmann::json::parse(std::ifstream(dir.file("bytes") + "/config.json"));
    CHECK(bc["bos_token_id"] == 256);
    CHECK(bc["eos_token_id"] == 257);
    CHECK(bc["vocab_size"] == 264);
    CHECK_FALSE(std::filesystem::exists(dir.file("bytes") + "/tokenizer.json"));

    // a model with global selection is refused (transformers would compute another model)
    MambaConfig gs = m.config.model;
    gs.global_selection.enabled = true;
    gs.global_selection.k_long = 8;
    MambaLM gs_model(gs, {DType::f32, Device::cpu()});
    REQUIRE_ERROR_WITH(train::save_model_folder(dir.file("gs"), gs, gs_model.named_parameters()), "export",
                       "global selection", "MambaForCausalLM");
    CHECK_FALSE(std::filesystem::exists(dir.file("gs")));
    mg::test::require_one_error_line(mg::test::run_cli(fmt::format("convert --to xla {} --out {}", ckpt, dir.file("x"))),
                                     {"convert", "only format is hf"});
}

TEST_CASE("model folders: a fine-tuning run starts from a folder's weights", "[pretrained][trainer]") {
    mg::test::TempDir dir("finetune");
    std::string text;
    for (int i = 0; i < 60; ++i) text += "And God said, Let there be light: and there was light. ";
    std::ofstream(dir.file("corpus.txt")) << text;
    const std::string run = dir.file("run");
    mg::test::Run r = mg::test::run_cli(fmt::format("train --init {} --task.corpus {} --task.seq_len 32 --batch_size 4 "
                                                    "--max_steps 3 --log_every 1 --device cpu --run_dir {}",
                                                    kFolder, dir.file("corpus.txt"), run));
    INFO(r.out);
    REQUIRE(r.status == 0);
    CHECK(r.out.find("bits/byte") != std::string::npos);
    // the run's config: the folder's model and tokenizer
    const train::TrainConfig cfg = train::TrainConfig::from_json(nlohmann::json::parse(std::ifstream(run + "/config.json")));
    CHECK(cfg.init == kFolder);
    CHECK(cfg.model.padded_vocab() == 801);
    CHECK(cfg.task.tokenizer.ends_with("hf_mamba_folder/tokenizer.json"));
    // and it did start from the folder: its first loss is the pretrained model's, not a fresh one's
    train::TrainConfig fresh = cfg;
    fresh.init.clear();
    fresh.run_dir.clear();
    fresh.max_steps = 1;
    train::TrainConfig init = fresh;
    init.init = kFolder;
    train::Trainer a(fresh), b(init);
    const auto pa = a.model().named_parameters(), pb = b.model().named_parameters();
    const auto folder = train::load_folder_weights(train::read_model_folder(kFolder));
    mg::test::require_close(pb[0].second, folder.at(pb[0].first), 0, 0, "initialised from the folder");
    CHECK(pa[0].second.to_vector<float>() != pb[0].second.to_vector<float>()); // a fresh init differs
    // a folder holds no trainer state: --resume refuses it, naming --init
    mg::test::require_one_error_line(mg::test::run_cli(fmt::format("train --resume {}", kFolder)),
                                     {"--resume", "model folder", "--init"});
}

TEST_CASE("model folders: bad folders are one error naming the folder, the key or the tensor", "[pretrained][errors]") {
    mg::test::TempDir dir("badfolder");
    namespace fs = std::filesystem;
    auto load = [](const std::string& d) { return train::load_model(d, "cpu"); };
    REQUIRE_ERROR_WITH(train::read_model_folder(dir.file("nowhere")), "not a directory");
    fs::create_directories(dir.file("empty"));
    REQUIRE_ERROR_WITH(load(dir.file("empty")), "has no config.json");
    // config fields: unknown, unsupported, inconsistent
    REQUIRE_ERROR_WITH(load(edited_folder(dir, "k1", [](auto& c) { c["use_foo"] = 1; })), "config.json", "use_foo",
                       "does not support");
    REQUIRE_ERROR_WITH(load(edited_folder(dir, "k2", [](auto& c) { c["use_bias"] = true; })), "use_bias = true",
                       "no bias");
    REQUIRE_ERROR_WITH(load(edited_folder(dir, "k3", [](auto& c) { c["hidden_act"] = "gelu"; })), "hidden_act");
    REQUIRE_ERROR_WITH(load(edited_folder(dir, "k4", [](auto& c) { c["tie_word_embeddings"] = false; })),
                       "tie_word_embeddings");
    REQUIRE_ERROR_WITH(load(edited_folder(dir, "k5", [](auto& c) { c["d_model"] = 32; })), "hidden_size = 16",
                       "d_model = 32", "disagree");
    REQUIRE_ERROR_WITH(load(edited_folder(dir, "k6", [](auto& c) { c["model_type"] = "mamba2"; })), "model_type");
    REQUIRE_ERROR_WITH(load(edited_folder(dir, "k7", [](auto& c) { c["intermediate_size"] = 48; })), "intermediate_size");
    REQUIRE_ERROR_WITH(load(edited_folder(dir, "k8", [](auto& c) { c["state_size"] = "big"; })), "state_size",
                       "positive integer");
    REQUIRE_ERROR_WITH(load(edited_folder(dir, "k9", [](auto& c) { c["num_hidden_layers"] = int64_t(1) << 40; })),
                       "num_hidden_layers", "at most");
    // the published state-spaces/mamba-*-hf configs also carry mamba_ssm's names and d_inner
    CHECK_NOTHROW(load(edited_folder(dir, "ok1", [](auto& c) {
        c["d_model"] = 16, c["n_layer"] = 2, c["d_inner"] = 32, c["fused_add_norm"] = true, c["rms_norm"] = true;
        c["ssm_cfg"] = nlohmann::json::object(), c["pad_vocab_size_multiple"] = 8;
    })));
    REQUIRE_ERROR_WITH(load(edited_folder(dir, "k10", [](auto& c) { c["d_inner"] = 48; })), "d_inner = 48");
    // a mambagrad run folder is not a model folder
    fs::create_directories(dir.file("run"));
    std::ofstream(dir.file("run") + "/config.json") << train::TrainConfig{}.to_json().dump();
    REQUIRE_ERROR_WITH(load(dir.file("run")), "run folder", "final.safetensors");
    // weights: missing, extra, mis-shaped, an untied head
    REQUIRE_ERROR_WITH(load(edited_folder(dir, "w1", {}, [](auto& w) { w.erase("backbone.layers.1.mixer.D"); })),
                       "backbone.layers.1.mixer.D", "in none of its files");
    REQUIRE_ERROR_WITH(load(edited_folder(dir, "w2", {}, [](auto& w) { w["extra.weight"] = Tensor::ones({2}); })),
                       "extra.weight", "not a parameter");
    REQUIRE_ERROR_WITH(load(edited_folder(dir, "w3", {}, [](auto& w) {
                           w["backbone.norm_f.weight"] = Tensor::ones({17}); })),
                       "backbone.norm_f.weight", "(17)", "(16)");
    REQUIRE_ERROR_WITH(load(edited_folder(dir, "w4", {}, [](auto& w) {
                           w["lm_head.weight"] = Tensor::ones(w.at("backbone.embeddings.weight").shape()); })),
                       "lm_head.weight", "ties");
    // a pickle only; an index naming a missing shard or a path outside the folder
    const std::string pk = edited_folder(dir, "p1", {});
    fs::rename(pk + "/model.safetensors", pk + "/pytorch_model.bin");
    REQUIRE_ERROR_WITH(load(pk), "pytorch_model.bin", "pickle", "safetensors");
    const std::string ix = edited_folder(dir, "i1", {});
    fs::remove(ix + "/model.safetensors"); // (read first when present, as transformers does)
    std::ofstream(ix + "/model.safetensors.index.json") << R"({"weight_map": {"backbone.norm_f.weight": "gone.safetensors"}})";
    REQUIRE_ERROR_WITH(load(ix), "gone.safetensors", "missing");
    std::ofstream(ix + "/model.safetensors.index.json") << R"({"weight_map": {"backbone.norm_f.weight": "../x.safetensors"}})";
    REQUIRE_ERROR_WITH(load(ix), "../x.safetensors", "not a file name inside the folder");
    // the index must say where each tensor is, and each of its names must be there
    const std::string ix2 = edited_folder(dir, "i2", {});
    fs::rename(ix2 + "/model.safetensors", ix2 + "/model-00001-of-00001.safetensors");
    nlohmann::json map = nlohmann::json::object();
    for (const auto& [name, t] : train::load_safetensors(kFolder + "/model.safetensors").by_name())
        map[name] = "model-00001-of-00001.safetensors";
    map["backbone.layers.9.mixer.D"] = "model-00001-of-00001.safetensors";
    std::ofstream(ix2 + "/model.safetensors.index.json") << nlohmann::json{{"weight_map", map}}.dump();
    REQUIRE_ERROR_WITH(load(ix2), "backbone.layers.9.mixer.D", "does not hold it");
    map.erase("backbone.layers.9.mixer.D");
    map.erase("backbone.norm_f.weight");
    std::ofstream(ix2 + "/model.safetensors.index.json") << nlohmann::json{{"weight_map", map}}.dump();
    REQUIRE_ERROR_WITH(load(ix2), "backbone.norm_f.weight", "does not list it");
    // a folder without tokenizer.json reads as byte-level: generation refuses the mismatch
    const std::string notok = edited_folder(dir, "notok", {});
    mg::test::require_one_error_line(mg::test::run_cli(fmt::format("generate --checkpoint {} --prompt a --device cpu",
                                                                   notok)), {"vocab_size is 801", "--tokenizer"});
    // the command line: one error line
    mg::test::require_one_error_line(mg::test::run_cli(fmt::format("generate --checkpoint {} --prompt a",
                                                                   dir.file("k2"))), {"use_bias"});
}

TEST_CASE("model folders: mamba_ssm's layout (its names and config keys, a tied head) loads too", "[pretrained]") {
    mg::test::TempDir dir("mambassm");
    namespace fs = std::filesystem;
    const std::string d = dir.file("ssm");
    fs::create_directories(d);
    std::ofstream(d + "/config.json") << R"({"d_model": 16, "n_layer": 2, "vocab_size": 801, "pad_vocab_size_multiple": 1,
        "ssm_cfg": {"d_state": 4, "d_conv": 4, "expand": 2, "dt_rank": 2, "use_fast_path": true}, "rms_norm": true,
        "residual_in_fp32": true, "fused_add_norm": true, "tie_embeddings": true})";
    std::map<std::string, Tensor> w = train::load_safetensors(kFolder + "/model.safetensors").by_name();
    train::NamedTensors ours;
    for (const auto& [name, t] : w) ours.emplace_back(mamba_name_from_transformers(name), t);
    ours.emplace_back("lm_head.weight", w.at("backbone.embeddings.weight")); // mamba_ssm saves the tied head
    train::save_safetensors(d + "/model.safetensors", ours);
    train::LoadedModel a = train::load_model(d, "cpu"), b = train::load_model(kFolder, "cpu");
    CHECK(train::read_model_folder(d).layout == "mamba_ssm");
    const Tensor ids = Tensor::from_vector(std::vector<int32_t>{5, 17, 300, 2, 799}, {1, 5});
    mg::test::require_close(a.model->forward(ids), b.model->forward(ids), 0, 0, "logits");
    std::ofstream(d + "/config.json") << R"({"d_model": 16, "n_layer": 2, "vocab_size": 801, "ssm_cfg": {"layer": "Mamba2"}})";
    REQUIRE_ERROR_WITH(train::read_model_folder(d), "ssm_cfg.layer", "Mamba2");
}

TEST_CASE("model folders: BF16 and F16 tensors read exactly into f32; a bfloat16 folder loads", "[pretrained]") {
    // every value torch wrote, including the largest f16, its smallest subnormal, -0 and infinities
    const auto t = train::load_safetensors(kDir + "half_dtypes.safetensors").by_name();
    for (const char* name : {"bf16", "f16"}) {
        INFO(name);
        REQUIRE(t.at(name).dtype() == DType::f32);
        const std::vector<float> got = t.at(name).to_vector<float>(),
                                 want = t.at(std::string(name) + "_as_f32").to_vector<float>();
        REQUIRE(got.size() == want.size());
        for (size_t i = 0; i < got.size(); ++i) {
            CHECK(got[i] == want[i]);
            CHECK(std::signbit(got[i]) == std::signbit(want[i]));
        }
    }
    const train::SafetensorsHeader h = train::read_safetensors_header(kDir + "half_dtypes.safetensors");
    for (const auto& e : h.entries)
        if (e.name == "bf16") CHECK((e.stored == "BF16" && e.stored_size() == 2));
    // the fixture folder saved by transformers in bfloat16: its weights are the float32 folder's
    // rounded to bfloat16 (8 significant bits: within 2^-8 of each value)
    train::LoadedModel a = train::load_model(kDir + "hf_mamba_bf16", "cpu"), b = train::load_model(kFolder, "cpu");
    const auto pa = a.model->named_parameters(), pb = b.model->named_parameters();
    for (size_t i = 0; i < pa.size(); ++i) {
        const std::vector<float> x = pa[i].second.to_vector<float>(), y = pb[i].second.to_vector<float>();
        for (size_t k = 0; k < x.size(); ++k)
            if (std::abs(x[k] - y[k]) > std::ldexp(std::abs(y[k]), -8)) FAIL(pa[i].first << "[" << k << "]: " << x[k] << " vs " << y[k]);
    }
    mg::test::Run r = mg::test::run_cli(fmt::format("info --checkpoint {}", kDir + "hf_mamba_bf16"));
    CHECK(r.status == 0);
    CHECK(r.out.find("bf16") != std::string::npos);
}
