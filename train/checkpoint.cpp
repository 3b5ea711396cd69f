// train/checkpoint.cpp: see train/checkpoint.h.
#include "train/checkpoint.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

#include "autograd/grad_mode.h"
#include "data/atomic_file.h"
#include "ops/copy.h"
#include "ops/multi_tensor.h"
#include "tensor/check.h"
#include "tensor/json.h"

namespace mg::train {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this writer copies host memory as is");

namespace {

constexpr uint64_t kMaxHeader = 100ull << 20; // the reference implementation's limit
constexpr const char* kMetadataKey = "__metadata__";

std::string_view st_dtype(DType t) {
    switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::i32: return "I32";
    case DType::bf16: return "BF16";
    }
    return "?";
}

} // namespace

std::map<std::string, Tensor> SafetensorsFile::by_name() const {
    return std::map<std::string, Tensor>(tensors.begin(), tensors.end());
}

// ---- writer ---------------------------------------------------------------------------------

std::string data_checksum(const std::vector<std::pair<const void*, size_t>>& pieces) {
    uint64_t h = 0xcbf29ce484222325ull, word = 0, total = 0;
    int filled = 0; // bytes in `word` so far (pieces need not end on 8-byte boundaries)
    auto mix = [&](uint64_t w) {
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    };
    for (const auto& [ptr, n] : pieces) {
        const auto* b = static_cast<const unsigned char*>(ptr);
        size_t i = 0;
        for (; i < n && filled > 0; ++i) { // finish a word begun by the previous piece
            word |= uint64_t(b[i]) << (8 * filled);
            if (++filled == 8) mix(word), word = 0, filled = 0;
        }
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            std::memcpy(&w, b + i, 8); // little-endian host (static_assert above)
            mix(w);
        }
        for (; i < n; ++i) word |= uint64_t(b[i]) << (8 * filled++);
        total += n;
    }
    if (filled > 0) mix(word);
    mix(total);
    return fmt::format("mg64:{:016x}", h);
}

void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata) {
    autograd::NoGrad no_grad;
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    std::set<std::string> seen;
    std::vector<Tensor> host;
    uint64_t offset = 0;
    nlohmann::ordered_json entries = nlohmann::ordered_json::object();
    for (const auto& [name, t] : tensors) {
        MG_CHECK(!name.empty() && name != kMetadataKey, "save_safetensors: '{}': tensor name '{}' is not allowed", path,
                 name);
        MG_CHECK(seen.insert(name).second, "save_safetensors: '{}': tensor name '{}' appears twice", path, name);
        MG_CHECK(t.defined(), "save_safetensors: '{}': tensor '{}' is undefined", path, name);
        Tensor h = t.detach().to(Device::cpu()).contiguous();
        const uint64_t nbytes = uint64_t(h.numel()) * dtype_size(h.dtype());
        entries[name] = {{"dtype", st_dtype(h.dtype())}, {"shape", h.shape()}, {"data_offsets", {offset, offset + nbytes}}};
        offset += nbytes;
        host.push_back(std::move(h));
    }
    std::vector<std::pair<const void*, size_t>> pieces;
    for (const Tensor& h : host) pieces.emplace_back(h.raw_data(), size_t(h.numel()) * dtype_size(h.dtype()));
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata)
        if (k != kChecksumKey) m[k] = v; // a copied file's old checksum is replaced by this one's
    m[kChecksumKey] = data_checksum(pieces);
    header[kMetadataKey] = m;
    header.update(entries);
    std::string text;
    try {
        text = header.dump();
    } catch (const nlohmann::json::exception& e) { // a name or metadata value that is not UTF-8
        throw Error(fmt::format("save_safetensors: '{}': cannot encode the header: {}", path, json_error_text(e)));
    }
    text.append((8 - (8 + text.size()) % 8) % 8, ' '); // data starts 8-byte aligned
    MG_CHECK(text.size() <= kMaxHeader, "save_safetensors: '{}': the header is {} bytes, the limit is {}", path,
             text.size(), kMaxHeader);
    const uint64_t n = text.size();
    char len[8];
    std::memcpy(len, &n, 8); // little-endian host (static_assert above)

    data::AtomicFile f(path);
    f.write(std::string_view(len, 8));
    f.write(text);
    for (const Tensor& h : host)
        f.write(std::string_view(static_cast<const char*>(h.raw_data()), size_t(h.numel()) * dtype_size(h.dtype())));
    f.commit();
}

// ---- reader ---------------------------------------------------------------------------------

namespace {

// bfloat16: the top 16 bits of a float32.
float bf16_to_float(uint16_t b) {
    const uint32_t u = uint32_t(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits; subnormals, inf and NaN kept.
float f16_to_float(uint16_t h) {
    const uint32_t sign = uint32_t(h >> 15) << 31, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    float mag;
    if (exp == 0) mag = std::ldexp(float(man), -24);                      // zero and subnormals
    else if (exp == 31) mag = man ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
    else mag = std::ldexp(float(man | 0x400), int(exp) - 25);             // 1.man x 2^(exp-15)
    uint32_t u;
    std::memcpy(&u, &mag, 4);
    u |= sign;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

} // namespace

SafetensorsHeader read_safetensors_header(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    MG_CHECK(in.good(), "load_safetensors: cannot open '{}': {}", path, std::strerror(errno));
    in.seekg(0, std::ios::end);
    const uint64_t file_size = uint64_t(in.tellg());
    in.seekg(0);
    MG_CHECK(file_size >= 8, "load_safetensors: '{}' is {} bytes, too short for the 8-byte header length", path,
             file_size);
    uint64_t n = 0;
    char len[8];
    in.read(len, 8);
    std::memcpy(&n, len, 8);
    MG_CHECK(n <= kMaxHeader, "load_safetensors: '{}': header length {} is over the {}-byte limit (not a "
             "safetensors file?)", path, n, kMaxHeader);
    MG_CHECK(8 + n <= file_size, "load_safetensors: '{}': header length {} runs past the end of the {}-byte file "
             "(truncated?)", path, n, file_size);
    std::string text(size_t(n), '\0');
    in.read(text.data(), std::streamsize(n));
    MG_CHECK(in.good(), "load_safetensors: '{}': read error in the header", path);
    const uint64_t data_size = file_size - 8 - n;

    const nlohmann::json header = parse_json(text, fmt::format("load_safetensors: '{}': the header", path));
    MG_CHECK(header.is_object(), "load_safetensors: '{}': the header is JSON {}, expected an object", path,
             header.type_name());

    SafetensorsHeader out;
    out.data_start = 8 + n;
    std::vector<SafetensorsEntry>& entries = out.entries;
    // names are echoed in every message below: no control characters in them (JSON allows "\r")
    for (auto it = header.begin(); it != header.end(); ++it) {
        const std::string& name = it.key();
        const auto& v = it.value();
        MG_CHECK(!has_control_char(name), "load_safetensors: '{}': the name '{}' holds a control character", path,
                 text_excerpt(name));
        if (name == kMetadataKey) {
            MG_CHECK(v.is_object(), "load_safetensors: '{}': __metadata__ is {}, expected an object of strings", path,
                     v.type_name());
            for (auto m = v.begin(); m != v.end(); ++m) {
                MG_CHECK(!has_control_char(m.key()), "load_safetensors: '{}': the __metadata__ key '{}' holds a control character",
                         path, text_excerpt(m.key()));
                MG_CHECK(m.value().is_string(), "load_safetensors: '{}': __metadata__ entry '{}' is {}, expected a string",
                         path, m.key(), m.value().type_name());
                out.metadata[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        auto bad = [&](const std::string& what) {
            return Error(fmt::format("load_safetensors: '{}': tensor '{}': {}", path, name, what));
        };
        if (!v.is_object()) throw bad(fmt::format("entry is {}, expected an object", v.type_name()));
        auto dt = v.find("dtype");
        if (dt == v.end() || !dt->is_string()) throw bad("no \"dtype\" string");
        SafetensorsEntry e;
        e.name = name;
        const std::string d = dt->get<std::string>();
        if (d == "F32" || d == "BF16" || d == "F16") e.dtype = DType::f32;
        else if (d == "F64") e.dtype = DType::f64;
        else if (d == "I32") e.dtype = DType::i32;
        else throw bad(fmt::format("dtype '{}' is not supported (supported: F32, F64, I32, and BF16 and F16 read as "
                                   "F32)", text_excerpt(d, 20)));
        e.stored = d;
        auto sh = v.find("shape");
        if (sh == v.end() || !sh->is_array()) throw bad("no \"shape\" array");
        uint64_t numel = 1;
        for (const auto& dim : *sh) {
            if (!dim.is_number_unsigned()) throw bad(fmt::format("shape {} holds a non-integer or negative size", json_excerpt(*sh)));
            const uint64_t s = dim.get<uint64_t>();
            if (s != 0 && numel > data_size / s) // also catches overflow: numel never exceeds the data
                throw bad(fmt::format("shape {} has more elements than the {}-byte data section holds", json_excerpt(*sh),
                                      data_size));
            numel *= s;
            e.shape.push_back(int64_t(s));
        }
        auto off = v.find("data_offsets");
        if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
            !(*off)[1].is_number_unsigned())
            throw bad("no \"data_offsets\" [begin, end] pair of non-negative integers");
        e.begin = (*off)[0].get<uint64_t>();
        e.end = (*off)[1].get<uint64_t>();
        if (e.begin > e.end) throw bad(fmt::format("data_offsets [{}, {}] has begin > end", e.begin, e.end));
        if (e.end > data_size)
            throw bad(fmt::format("data_offsets [{}, {}] end past the {}-byte data section (truncated?)", e.begin, e.end,
                                  data_size));
        if (e.end - e.begin != numel * e.stored_size())
            throw bad(fmt::format("data_offsets [{}, {}] hold {} bytes, but shape {} of {} needs {}", e.begin, e.end,
                                  e.end - e.begin, json_excerpt(*sh), d, numel * e.stored_size()));
        entries.push_back(std::move(e));
    }
    std::sort(entries.begin(), entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t at = 0;
    for (size_t i = 0; i < entries.size(); ++i) {
        const SafetensorsEntry& e = entries[i];
        MG_CHECK(e.begin >= at, "load_safetensors: '{}': tensor '{}' data_offsets [{}, {}] overlap tensor '{}' (ending at {})",
                 path, e.name, e.begin, e.end, entries[i - 1].name, at);
        MG_CHECK(e.begin == at, "load_safetensors: '{}': tensor '{}' starts at {}, leaving bytes [{}, {}) of the data "
                 "section unused (a hole)", path, e.name, e.begin, at, e.begin);
        at = e.end;
    }
    MG_CHECK(at == data_size, "load_safetensors: '{}': the tensors cover {} bytes, but the data section has {} "
             "(trailing bytes)", path, at, data_size);
    return out;
}

SafetensorsFile load_safetensors(const std::string& path, Device device, HalfRead bf16_as) {
    SafetensorsHeader h = read_safetensors_header(path);
    if (bf16_as == HalfRead::keep_bf16)
        for (SafetensorsEntry& e : h.entries)
            if (e.stored == "BF16") e.dtype = DType::bf16; // read as stored, bit for bit
    std::ifstream in(path, std::ios::binary);
    MG_CHECK(in.good(), "load_safetensors: cannot open '{}': {}", path, std::strerror(errno));
    SafetensorsFile out;
    out.metadata = std::move(h.metadata);
    std::vector<Tensor> host;
    std::vector<std::vector<uint16_t>> halves(h.entries.size()); // BF16/F16 bytes as stored
    for (size_t i = 0; i < h.entries.size(); ++i) {
        const SafetensorsEntry& e = h.entries[i];
        Tensor t = Tensor::empty(e.shape, {e.dtype, Device::cpu()});
        in.seekg(std::streamoff(h.data_start + e.begin));
        if (e.stored_size() == 2 && e.dtype == DType::f32) { // BF16/F16 widened to f32
            halves[i].resize(size_t(t.numel()));
            in.read(reinterpret_cast<char*>(halves[i].data()), std::streamsize(e.end - e.begin));
            float* f = static_cast<float*>(t.raw_data());
            for (size_t k = 0; k < halves[i].size(); ++k)
                f[k] = e.stored == "BF16" ? bf16_to_float(halves[i][k]) : f16_to_float(halves[i][k]);
        } else {
            in.read(static_cast<char*>(t.raw_data()), std::streamsize(e.end - e.begin));
        }
        MG_CHECK(in.good(), "load_safetensors: '{}': read error in tensor '{}'", path, e.name);
        host.push_back(t);
    }
    if (auto c = out.metadata.find(kChecksumKey); c != out.metadata.end()) {
        // in data-offset order, as written (entries are sorted by offset), over the stored bytes
        std::vector<std::pair<const void*, size_t>> pieces;
        for (size_t i = 0; i < host.size(); ++i)
            pieces.emplace_back(halves[i].empty() ? host[i].raw_data() : static_cast<const void*>(halves[i].data()),
                                size_t(h.entries[i].end - h.entries[i].begin));
        const std::string got = data_checksum(pieces);
        MG_CHECK(got == c->second,
                 "load_safetensors: '{}': the tensor data does not match the file's checksum (stored {}, computed {}): "
                 "the file is damaged", path, text_excerpt(c->second, 40), got);
    }
    for (size_t i = 0; i < host.size(); ++i)
        out.tensors.emplace_back(h.entries[i].name, device.is_cpu() ? host[i] : host[i].to(device));
    return out;
}

// ---- checkpoints ----------------------------------------------------------------------------

namespace {
constexpr const char* kConfigKey = "mambagrad.config";
constexpr const char* kTrainerKey = "mambagrad.trainer";
constexpr const char* kOptimizerKey = "mambagrad.optimizer";
} // namespace

void save_checkpoint(const std::string& path, const NamedTensors& params, const AdamW* optimizer,
                     const TrainerState& state, const std::string& config_json, const Metadata& extra) {
    Metadata meta{{"format", "pt"}, {kConfigKey, config_json}};
    nlohmann::ordered_json tr{{"epoch", state.epoch},
                              {"step", state.step},
                              {"cursor", state.cursor},
                              {"rng_seed", state.rng_seed},
                              {"rng_offset", state.rng_offset}};
    if (state.metrics_rows >= 0) tr["metrics_rows"] = state.metrics_rows;
    if (state.last_eval_step >= 0) tr["last_eval_step"] = state.last_eval_step;
    if (state.log_steps > 0 || !state.monitor.history.empty()) {
        nlohmann::ordered_json warned = nlohmann::ordered_json::array();
        for (bool w : state.monitor.warned) warned.push_back(w);
        tr["log"] = {{"loss_sum", state.log_loss_sum},
                     {"steps", state.log_steps},
                     {"grad_norm_history", state.monitor.history},
                     {"grad_norm_warned", warned}};
    }
    meta[kTrainerKey] = tr.dump();
    NamedTensors all = params;
    if (optimizer) {
        meta[kOptimizerKey] = optimizer->state_json();
        for (auto& nt : optimizer->state_tensors()) all.push_back(std::move(nt));
    }
    for (const auto& [k, v] : extra) {
        MG_CHECK(!meta.count(k), "save_checkpoint: '{}': metadata key '{}' is reserved", path, k);
        meta[k] = v;
    }
    save_safetensors(path, all, meta);
}

TrainerState read_trainer_state(const Metadata& metadata, const std::string& path) {
    TrainerState state;
    auto t = metadata.find(kTrainerKey);
    if (t == metadata.end()) return state;
    try {
        auto j = parse_json(t->second, fmt::format("load_checkpoint: '{}': metadata '{}'", path, kTrainerKey));
        MG_CHECK(j.is_object(), "load_checkpoint: '{}': metadata '{}' is {}, expected a JSON object", path, kTrainerKey,
                 json_excerpt(j));
        // every field an integer in range before any is used (a negative cursor indexed memory)
        auto field = [&](const char* name, bool is_unsigned) {
            MG_CHECK(j.contains(name), "load_checkpoint: '{}': metadata '{}' has no '{}'", path, kTrainerKey, name);
            const auto& v = j[name];
            MG_CHECK(is_unsigned ? v.is_number_unsigned() : v.is_number_integer() && v.get<int64_t>() >= 0,
                     "load_checkpoint: '{}': metadata '{}': '{}' is {}, expected an integer >= 0", path, kTrainerKey,
                     name, json_excerpt(v));
            return v;
        };
        state.epoch = field("epoch", false).get<int64_t>();
        state.step = field("step", false).get<int64_t>();
        state.cursor = field("cursor", false).get<int64_t>();
        state.rng_seed = field("rng_seed", true).get<uint64_t>();
        state.rng_offset = field("rng_offset", true).get<uint64_t>();
        for (auto [name, out] : {std::pair{"metrics_rows", &state.metrics_rows}, std::pair{"last_eval_step", &state.last_eval_step}})
            if (j.contains(name)) *out = field(name, false).get<int64_t>(); // newer checkpoints only
        if (j.contains("log")) { // the log's running state (checkpoints before it existed lack it)
            const auto& l = j["log"];
            auto bad = [&](const std::string& what) {
                return Error(fmt::format("load_checkpoint: '{}': metadata '{}': log {}", path, kTrainerKey, what));
            };
            if (!l.is_object()) throw bad(fmt::format("is {}, expected a JSON object", json_excerpt(l)));
            const auto &sum = l.value("loss_sum", nlohmann::json()), &steps = l.value("steps", nlohmann::json());
            if (!sum.is_number() || !std::isfinite(sum.get<double>()))
                throw bad(fmt::format("loss_sum is {}, expected a finite number", json_excerpt(sum)));
            if (!steps.is_number_integer() || steps.get<int64_t>() < 0)
                throw bad(fmt::format("steps is {}, expected an integer >= 0", json_excerpt(steps)));
            state.log_loss_sum = sum.get<double>();
            state.log_steps = steps.get<int64_t>();
            const auto &hist = l.value("grad_norm_history", nlohmann::json::array()),
                       &warned = l.value("grad_norm_warned", nlohmann::json::array());
            if (!hist.is_array() || !warned.is_array() || hist.size() != warned.size())
                throw bad("grad_norm_history and grad_norm_warned must be lists of one length");
            for (size_t i = 0; i < hist.size(); ++i) {
                if (!hist[i].is_array() || !warned[i].is_boolean())
                    throw bad(fmt::format("grad_norm_history[{}] or grad_norm_warned[{}] is malformed", i, i));
                std::vector<double> h;
                for (const auto& x : hist[i]) {
                    if (!x.is_number() || !std::isfinite(x.get<double>()) || x.get<double>() < 0)
                        throw bad(fmt::format("grad_norm_history[{}] holds {}, expected norms >= 0", i, json_excerpt(x)));
                    h.push_back(x.get<double>());
                }
                state.monitor.history.push_back(std::move(h));
                state.monitor.warned.push_back(warned[i].get<bool>());
            }
        }
    } catch (const nlohmann::json::exception& e) {
        throw Error(fmt::format("load_checkpoint: '{}': metadata '{}' is not a trainer state: {}", path, kTrainerKey,
                                json_error_text(e)));
    }
    return state;
}

void require_finite(const std::string& path, const NamedTensors& tensors) {
    std::vector<std::string> names, descs;
    std::vector<Tensor> floats;
    for (const auto& [name, t] : tensors)
        if (is_floating(t.dtype())) { // bf16 is scanned widened to f32 (exactly): NonfiniteScan reads f32/f64
            names.push_back(name), descs.push_back(t.desc());
            floats.push_back(t.dtype() == DType::bf16 ? t.to(DType::f32) : t);
        }
    NonfiniteScan scan(floats);
    const auto& found = scan.findings();
    for (size_t i = 0; i < found.size(); ++i) {
        if (found[i].count == 0) continue;
        throw Error(fmt::format("load_checkpoint: '{}': tensor '{}' ({}) {}: refusing to load it", path, names[i],
                                descs[i], found[i].describe(floats[i].shape())));
    }
}

void check_checkpoint_data(const std::string& path) { require_finite(path, load_safetensors(path).tensors); }

LoadedCheckpoint load_checkpoint(const std::string& path, const NamedTensors& params, AdamW* optimizer,
                                 bool allow_unexpected) {
    SafetensorsFile f = load_safetensors(path);
    std::map<std::string, Tensor> by_name = f.by_name();
    LoadedCheckpoint out;
    out.metadata = f.metadata;
    if (auto c = f.metadata.find(kConfigKey); c != f.metadata.end()) out.config_json = c->second;
    out.state = read_trainer_state(f.metadata, path);
    // Check every parameter before changing anything.
    std::set<std::string> used;
    for (const auto& [name, p] : params) {
        auto it = by_name.find(name);
        MG_CHECK(it != by_name.end(), "load_checkpoint: '{}': parameter '{}' ({}) is not in the file", path, name,
                 p.desc());
        MG_CHECK(it->second.shape() == p.shape() && is_floating(it->second.dtype()) == is_floating(p.dtype()),
                 "load_checkpoint: '{}': tensor '{}' is {}, expected {} like the parameter", path, name,
                 it->second.desc(), p.desc());
        used.insert(name);
    }
    auto o = f.metadata.find(kOptimizerKey);
    if (optimizer) {
        MG_CHECK(o != f.metadata.end(), "load_checkpoint: '{}' holds no optimizer state (metadata '{}')", path,
                 kOptimizerKey);
        for (const auto& st : optimizer->state_tensors()) used.insert(st.first);
    }
    if (!allow_unexpected)
        for (const auto& [name, t] : f.tensors)
            MG_CHECK(used.count(name) || (!optimizer && name.starts_with("optimizer.")),
                     "load_checkpoint: '{}': tensor '{}' ({}) matches no parameter{}", path, name, t.desc(),
                     optimizer ? " or optimizer state" : "");
    require_finite(path, f.tensors); // no NaN or Inf may enter a model
    if (optimizer) optimizer->load_state(by_name, o->second); // checks everything, then changes
    autograd::NoGrad no_grad;
    for (const auto& [name, p] : params) copy_into(p, by_name.at(name));
    return out;
}

} // namespace mg::train
