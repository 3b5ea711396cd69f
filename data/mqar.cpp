// data/mqar.cpp: the MQAR generator, grids, batching and JSONL files (see data/mqar.h).
#include "data/mqar.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <unordered_set>

#include "tensor/json.h"
#include "tensor/check.h"
#include "tensor/random.h"
#include "tensor/runtime.h"

namespace mg::data {

// ---- names --------------------------------------------------------------------------------

namespace {

struct VariantInfo {
    MqarVariant v;
    std::string_view name;
    int64_t key_len, value_len;
    bool records;
};

constexpr VariantInfo kVariants[] = {
    {MqarVariant::Standard, "standard", 1, 1, false},
    {MqarVariant::Last, "last", 1, 1, false},
    {MqarVariant::Shuffle, "shuffle", 1, 1, false},
    {MqarVariant::K1V1, "k1v1", 1, 1, true},
    {MqarVariant::K1V2, "k1v2", 1, 2, true},
    {MqarVariant::K2V2, "k2v2", 2, 2, true},
    {MqarVariant::K2V4, "k2v4", 2, 4, true},
    {MqarVariant::K4V8Shuffle, "k4v8-shuffle", 4, 8, true},
    {MqarVariant::RobustK2V2, "robust-k2v2", 2, 2, true},
    {MqarVariant::RobustStandard, "robust-standard", 1, 1, false},
    {MqarVariant::RobustLast, "robust-last", 1, 1, false},
    {MqarVariant::RobustSplit4, "robust-split4", 1, 1, false},
};

const VariantInfo& info(MqarVariant v) {
    for (const auto& i : kVariants)
        if (i.v == v) return i;
    MG_ASSERT(false);
    return kVariants[0];
}

std::string allowed_variants() {
    std::string s;
    for (const auto& i : kVariants) s += (s.empty() ? "" : ", ") + std::string(i.name);
    return s;
}

// How many value ids past the value range the conflicting copies k (v+i) reach.
int64_t conflict_shift(MqarVariant v) {
    switch (v) {
    case MqarVariant::RobustStandard:
    case MqarVariant::RobustLast: return 1;
    case MqarVariant::RobustSplit4: return 3;
    default: return 0;
    }
}

// Single-token variants whose keys and values are distinct within an example.
bool distinct_pairs(MqarVariant v) { return !info(v).records && v != MqarVariant::Shuffle; }

} // namespace

std::string_view variant_name(MqarVariant v) { return info(v).name; }

MqarVariant parse_variant(std::string_view s) {
    for (const auto& i : kVariants)
        if (i.name == s) return i.v;
    MG_CHECK(false, "mqar: config key 'variant' = '{}' is not a variant; allowed values: {}", s, allowed_variants());
    return MqarVariant::Standard;
}

const std::vector<MqarVariant>& all_variants() {
    static const std::vector<MqarVariant> all = [] {
        std::vector<MqarVariant> a;
        for (const auto& i : kVariants) a.push_back(i.v);
        return a;
    }();
    return all;
}

std::string_view split_name(Split s) { return s == Split::Train ? "train" : s == Split::Valid ? "valid" : "test"; }

Split parse_split(std::string_view s) {
    for (Split x : {Split::Train, Split::Valid, Split::Test})
        if (split_name(x) == s) return x;
    MG_CHECK(false, "mqar: config key 'split' = '{}' is not a split; allowed values: train, valid, test", s);
    return Split::Train;
}

std::string_view binding_name(KeyBinding b) { return b == KeyBinding::Pair ? "pair" : "first"; }

KeyBinding parse_binding(std::string_view s) {
    for (KeyBinding x : {KeyBinding::Pair, KeyBinding::First})
        if (binding_name(x) == s) return x;
    MG_CHECK(false, "mqar: config key 'binding' = '{}' is not a binding rule; allowed values: pair, first", s);
    return KeyBinding::Pair;
}

int64_t variant_key_len(MqarVariant v) { return info(v).key_len; }
int64_t variant_value_len(MqarVariant v) { return info(v).value_len; }
bool variant_uses_records(MqarVariant v) { return info(v).records; }

uint64_t MqarConfig::seed() const {
    uint64_t base = seed_base ? *seed_base : split == Split::Train ? 42 : split == Split::Valid ? 1234 : 4567;
    return base + uint64_t(config_index);
}

// ---- ranges and validation ---------------------------------------------------------------

MqarRanges mqar_ranges(const MqarConfig& cfg) {
    const int64_t W = cfg.vocab_size, half = W / 2;
    MqarRanges r;
    if (variant_uses_records(cfg.variant)) {
        r.key = {20, half + 20};
        r.value = {half + 20, W + 20};
    } else {
        r.key = {1, half};
        r.value = {half, W};
    }
    r.noise = {20, W + 20};
    if (cfg.key_range) r.key = *cfg.key_range;
    if (cfg.value_range) r.value = *cfg.value_range;
    if (cfg.noise_range) r.noise = *cfg.noise_range;
    return r;
}

int64_t mqar_model_vocab(const MqarConfig& cfg) {
    MqarRanges r = mqar_ranges(cfg);
    int64_t v = std::max<int64_t>({1, r.key.hi, r.value.hi + conflict_shift(cfg.variant)});
    if (cfg.insert_noise) v = std::max(v, r.noise.hi);
    if (variant_uses_records(cfg.variant)) v = std::max<int64_t>(v, kMask + 1);
    return v;
}

namespace {

std::string range_str(TokenRange r) { return fmt::format("[{}, {})", r.lo, r.hi); }

// The layout constraint of each variant: returns "" when (L, N) fits, else the rule and the
// allowed N for this L.
struct Fit {
    bool ok;
    std::string rule;
    int64_t max_n;
};

Fit layout_fit(const MqarConfig& c) {
    const int64_t L = c.seq_len, N = c.num_kv_pairs;
    const int64_t K = variant_key_len(c.variant), V = variant_value_len(c.variant), R = K + V + 3;
    switch (c.variant) {
    case MqarVariant::Standard:
    case MqarVariant::Last:
    case MqarVariant::Shuffle: return {4 * N <= L, "4*num_kv_pairs <= seq_len", L / 4};
    case MqarVariant::RobustStandard: return {6 * N <= L, "6*num_kv_pairs <= seq_len", L / 6};
    case MqarVariant::RobustLast: return {8 * N <= L, "8*num_kv_pairs <= seq_len", L / 8};
    case MqarVariant::RobustSplit4:
        return {2 * N <= L / 2 / 4, "2*num_kv_pairs <= (seq_len/2)/4 (one block)", L / 2 / 4 / 2};
    case MqarVariant::K4V8Shuffle:
        return {N <= L / 2 / R, fmt::format("num_kv_pairs <= (seq_len/2)/{} (record slots in the first half)", R),
                L / 2 / R};
    default: // records at the start
        return {N * R <= L / 2, fmt::format("num_kv_pairs*{} <= seq_len/2 (records fit the first half)", R),
                L / 2 / R};
    }
}

} // namespace

bool mqar_fits(const MqarConfig& cfg) {
    return cfg.seq_len >= 2 && cfg.seq_len % 2 == 0 && cfg.num_kv_pairs >= 1 && layout_fit(cfg).ok;
}

void validate(const MqarConfig& c) {
    const std::string_view vn = variant_name(c.variant);
    MG_CHECK(c.seq_len >= 2 && c.seq_len % 2 == 0 && c.seq_len <= (int64_t(1) << 24),
             "mqar: config key 'seq_len' = {} is not allowed; allowed values: even numbers in [2, 2^24] "
             "(the layouts use halves and 2-token slots)", c.seq_len);
    Fit f = layout_fit(c);
    MG_CHECK(c.num_kv_pairs >= 1 && f.ok,
             "mqar: config key 'num_kv_pairs' = {} does not fit seq_len = {} for variant '{}': needs {}; "
             "allowed values: {}", c.num_kv_pairs, c.seq_len, vn, f.rule,
             f.max_n >= 1 ? fmt::format("1..{}", f.max_n) : std::string("none (seq_len too small)"));
    MG_CHECK(c.num_examples >= 1, "mqar: config key 'num_examples' = {} is not allowed; allowed values: >= 1",
             c.num_examples);
    MG_CHECK(std::isfinite(c.power_a) && c.power_a > 0 && c.power_a <= 1,
             "mqar: config key 'power_a' = {} is not allowed; allowed values: (0, 1] (paper: 0.01)", c.power_a);
    MG_CHECK(c.vocab_size >= 1 && c.vocab_size <= (int64_t(1) << 30),
             "mqar: config key 'vocab_size' = {} is not allowed; allowed values: 1..2^30", c.vocab_size);

    const MqarRanges r = mqar_ranges(c);
    const bool records = variant_uses_records(c.variant);
    auto check_range = [&](TokenRange tr, const char* key, int64_t need, const char* why) {
        MG_CHECK(tr.lo >= 0 && tr.hi <= (int64_t(1) << 30) && tr.size() >= need,
                 "mqar: config key '{}' = {} (vocab_size = {}) is too small for variant '{}' with "
                 "num_kv_pairs = {}: {}; allowed values: a range within [0, 2^30) of at least {} ids{}",
                 key, range_str(tr), c.vocab_size, vn, c.num_kv_pairs, why, need,
                 key == std::string_view("key_range") || key == std::string_view("value_range")
                     ? " (raise vocab_size or set the range)" : "");
        if (records)
            MG_CHECK(!(tr.lo <= kMask && tr.hi > kSep1),
                     "mqar: config key '{}' = {} overlaps the special tokens <s1>=10, <s2>=11, MASK=12 used by "
                     "variant '{}'; allowed values: ranges that avoid [10, 13)", key, range_str(tr), vn);
    };
    const bool distinct = distinct_pairs(c.variant);
    check_range(r.key, "key_range", distinct ? c.num_kv_pairs : 1,
                distinct ? "keys are drawn without replacement" : "keys need at least one id");
    check_range(r.value, "value_range", distinct ? c.num_kv_pairs : 1,
                distinct ? "values are drawn without replacement" : "values need at least one id");
    if (c.insert_noise) check_range(r.noise, "noise_range", 1, "noise needs at least one id");
    MG_CHECK(r.key.hi <= r.value.lo || r.value.hi <= r.key.lo,
             "mqar: config keys 'key_range' = {} and 'value_range' = {} overlap; allowed values: disjoint ranges",
             range_str(r.key), range_str(r.value));
    MG_CHECK(r.value.hi + conflict_shift(c.variant) <= (int64_t(1) << 30),
             "mqar: config key 'value_range' = {} too large for the conflict copies of variant '{}'",
             range_str(r.value), vn);
}

// ---- the random stream --------------------------------------------------------------------

namespace {

// The stream of one example: counter-based (tensor/random.h), keyed by (seed, lane = example).
class Stream {
public:
    Stream(uint64_t seed, uint64_t lane) : seed_(seed), lane_(lane) {}
    uint64_t next() { return rng::bits(seed_, counter_++, lane_); }
    // Uniform in [0, n), exact (rejection of the top partial block).
    uint64_t below(uint64_t n) {
        const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
        for (;;) {
            uint64_t x = next();
            if (x < limit) return x % n;
        }
    }
    int32_t in(TokenRange r) { return int32_t(r.lo + int64_t(below(uint64_t(r.size())))); }

private:
    uint64_t seed_, lane_, counter_ = 0;
};

// k distinct values of [0, n), in draw order (a uniformly random ordered sample).
std::vector<int64_t> sample_distinct(Stream& s, int64_t n, int64_t k) {
    std::vector<int64_t> out;
    out.reserve(size_t(k));
    if (n <= 4 * k) { // partial Fisher-Yates
        std::vector<int64_t> a(static_cast<size_t>(n));
        std::iota(a.begin(), a.end(), 0);
        for (int64_t i = 0; i < k; ++i) {
            int64_t j = i + int64_t(s.below(uint64_t(n - i)));
            std::swap(a[size_t(i)], a[size_t(j)]);
            out.push_back(a[size_t(i)]);
        }
        return out;
    }
    std::unordered_set<int64_t> seen;
    seen.reserve(size_t(2 * k));
    while (int64_t(out.size()) < k) {
        int64_t x = int64_t(s.below(uint64_t(n)));
        if (seen.insert(x).second) out.push_back(x);
    }
    return out;
}

// Power-law weights of `space` query slots: slot i (0-based) has weight (i+1)^(a-1), as zoology's
// p_i ∝ a·i^(a-1), i = 1..space. Rounded once to integers (scale 2^40) so that the sampling below
// is integer arithmetic only.
std::vector<uint64_t> power_law_weights(int64_t space, double a) {
    std::vector<uint64_t> w(static_cast<size_t>(space));
    for (int64_t i = 0; i < space; ++i)
        w[size_t(i)] = uint64_t(std::llround(std::ldexp(std::pow(double(i + 1), a - 1.0), 40)));
    return w;
}

// k distinct slots drawn one after another with probability ∝ weight among those not yet drawn
// (numpy's choice(replace=False, p) has this distribution). A Fenwick tree holds the weights.
std::vector<int64_t> sample_weighted_distinct(Stream& s, const std::vector<uint64_t>& w, int64_t k) {
    const int64_t n = int64_t(w.size());
    std::vector<uint64_t> tree(size_t(n) + 1, 0);
    uint64_t total = 0;
    for (int64_t i = 1; i <= n; ++i) {
        tree[size_t(i)] += w[size_t(i - 1)];
        total += w[size_t(i - 1)];
        int64_t j = i + (i & -i);
        if (j <= n) tree[size_t(j)] += tree[size_t(i)];
    }
    int64_t top = 1;
    while (top * 2 <= n) top *= 2;
    std::vector<int64_t> out;
    out.reserve(size_t(k));
    std::vector<char> taken(size_t(n), 0);
    for (int64_t d = 0; d < k; ++d) {
        // the slot whose cumulative interval holds r: smallest i with prefix(i+1) > r
        uint64_t r = s.below(total);
        int64_t pos = 0;
        for (int64_t step = top; step > 0; step /= 2) {
            if (pos + step <= n && tree[size_t(pos + step)] <= r) {
                pos += step;
                r -= tree[size_t(pos)];
            }
        }
        const int64_t slot = pos; // 0-based
        MG_ASSERT(slot < n && !taken[size_t(slot)]);
        taken[size_t(slot)] = 1;
        out.push_back(slot);
        const uint64_t ws = w[size_t(slot)];
        total -= ws;
        for (int64_t i = slot + 1; i <= n; i += i & -i) tree[size_t(i)] -= ws;
    }
    return out;
}

// ---- one example --------------------------------------------------------------------------

struct Builder {
    int64_t L;
    std::vector<int32_t> seq;
    std::vector<char> filled;
    std::vector<int32_t> target; // target[p] = token at p the model must produce, or kIgnore

    explicit Builder(int64_t len) : L(len), seq(size_t(len), kBlank), filled(size_t(len), 0), target(size_t(len), kIgnore) {}
    void put(int64_t p, int32_t tok) {
        MG_ASSERT(p >= 0 && p < L);
        seq[size_t(p)] = tok;
        filled[size_t(p)] = 1;
    }
};

// The query region: it starts at `start` and holds `space` slots of `unit` tokens (a 2-token
// key/value slot, or an R-token record).
struct QueryRegion {
    int64_t start, unit, space;
};

QueryRegion query_region(const MqarConfig& c) {
    const int64_t L = c.seq_len, N = c.num_kv_pairs;
    const int64_t R = variant_key_len(c.variant) + variant_value_len(c.variant) + 3;
    const int64_t unit = variant_uses_records(c.variant) ? R : 2;
    int64_t start;
    switch (c.variant) {
    case MqarVariant::Standard: start = 2 * N; break;       // right after the pairs
    case MqarVariant::RobustStandard: start = 4 * N; break; // after the pairs and their copies
    case MqarVariant::Last:
    case MqarVariant::Shuffle:
    case MqarVariant::RobustLast:
    case MqarVariant::RobustSplit4:
    case MqarVariant::K4V8Shuffle: start = L / 2; break;    // the second half
    default: start = N * R; break;                          // right after the records
    }
    return {start, unit, (L - start) / unit};
}

MqarExample make_example(const MqarConfig& c, const MqarRanges& r, const std::vector<uint64_t>& query_weights,
                         int64_t e) {
    const MqarVariant var = c.variant;
    const int64_t L = c.seq_len, N = c.num_kv_pairs;
    const int64_t K = variant_key_len(var), V = variant_value_len(var), R = K + V + 3;
    const bool records = variant_uses_records(var);
    Stream s(c.seed(), uint64_t(e));
    Builder b(L);

    // 1. keys (N x K) and values (N x V), drawn in this order.
    std::vector<int32_t> keys(size_t(N * K)), values(size_t(N * V));
    if (distinct_pairs(var)) {
        auto k = sample_distinct(s, r.key.size(), N);
        auto v = sample_distinct(s, r.value.size(), N);
        for (int64_t i = 0; i < N; ++i) {
            keys[size_t(i)] = int32_t(r.key.lo + k[size_t(i)]);
            values[size_t(i)] = int32_t(r.value.lo + v[size_t(i)]);
        }
    } else if (var == MqarVariant::RobustK2V2) {
        // the first K-1 key tokens per pair, then one last token shared by every pair
        std::vector<int32_t> first(size_t(N * (K - 1)));
        for (auto& t : first) t = s.in(r.key);
        const int32_t shared = s.in(r.key);
        for (int64_t i = 0; i < N; ++i) {
            for (int64_t j = 0; j < K - 1; ++j) keys[size_t(i * K + j)] = first[size_t(i * (K - 1) + j)];
            keys[size_t(i * K + K - 1)] = shared;
        }
        for (auto& t : values) t = s.in(r.value);
    } else { // with replacement: Shuffle and the multi-token variants
        for (auto& t : keys) t = s.in(r.key);
        for (auto& t : values) t = s.in(r.value);
    }

    // 2. context: where each true pair starts, the conflicting copies, the query region.
    std::vector<int64_t> pair_pos(static_cast<size_t>(N));
    std::vector<int32_t> copies; // (position, shift) of the conflicting copies, flattened
    switch (var) {
    case MqarVariant::Standard:
        for (int64_t i = 0; i < N; ++i) pair_pos[size_t(i)] = 2 * i;
        break;
    case MqarVariant::Last:
        for (int64_t i = 0; i < N; ++i) pair_pos[size_t(i)] = L / 2 - 2 * N + 2 * i;
        break;
    case MqarVariant::Shuffle: {
        auto slots = sample_distinct(s, L / 2 / 2, N);
        for (int64_t i = 0; i < N; ++i) pair_pos[size_t(i)] = 2 * slots[size_t(i)];
        break;
    }
    case MqarVariant::RobustStandard:
        for (int64_t i = 0; i < N; ++i) {
            pair_pos[size_t(i)] = 2 * i;
            copies.insert(copies.end(), {int32_t(2 * N + 2 * i), 1});
        }
        break;
    case MqarVariant::RobustLast:
        for (int64_t i = 0; i < N; ++i) {
            pair_pos[size_t(i)] = 2 * i;
            copies.insert(copies.end(), {int32_t(L / 2 - 2 * N + 2 * i), 1});
        }
        break;
    case MqarVariant::RobustSplit4: {
        const int64_t block = L / 2 / 4;
        for (int64_t i = 0; i < N; ++i) pair_pos[size_t(i)] = 2 * i;
        for (int64_t blk = 1; blk < 4; ++blk)
            for (int64_t i = 0; i < N; ++i) copies.insert(copies.end(), {int32_t(blk * block + 2 * i), int32_t(blk)});
        break;
    }
    case MqarVariant::K4V8Shuffle: {
        auto slots = sample_distinct(s, L / 2 / R, N);
        for (int64_t i = 0; i < N; ++i) pair_pos[size_t(i)] = R * slots[size_t(i)];
        break;
    }
    default: // K1V1, K1V2, K2V2, K2V4, RobustK2V2: records from the start
        for (int64_t i = 0; i < N; ++i) pair_pos[size_t(i)] = R * i;
        break;
    }

    MqarExample ex;
    ex.seq_len = int32_t(L);
    ex.num_kv_pairs = int32_t(N);
    ex.key_len = int32_t(K);
    ex.value_len = int32_t(V);

    // 3. write the context
    auto write_record = [&](int64_t p, int64_t i, bool query) {
        // <s1> k1..kK <s2> v1..vV <s1>; a query record has MASK for the values
        b.put(p, kSep1);
        for (int64_t j = 0; j < K; ++j) b.put(p + 1 + j, keys[size_t(i * K + j)]);
        b.put(p + 1 + K, kSep2);
        for (int64_t j = 0; j < V; ++j) b.put(p + 2 + K + j, query ? kMask : values[size_t(i * V + j)]);
        b.put(p + 2 + K + V, kSep1);
    };
    for (int64_t i = 0; i < N; ++i) {
        const int64_t p = pair_pos[size_t(i)];
        if (records) write_record(p, i, false);
        else {
            b.put(p, keys[size_t(i)]);
            b.put(p + 1, values[size_t(i)]);
        }
        ex.context_records.push_back(int32_t(p));
    }
    for (size_t c2 = 0; c2 < copies.size(); c2 += 2) {
        const int64_t p = copies[c2], shift = copies[c2 + 1];
        const int64_t i = int64_t(c2 / 2) % N;
        b.put(p, keys[size_t(i)]);
        b.put(p + 1, int32_t(values[size_t(i)] + shift));
        ex.context_records.push_back(int32_t(p));
    }

    // 4. queries: N slots of the query region by the power law (uniform for RobustK2V2)
    const QueryRegion qr = query_region(c);
    std::vector<int64_t> gaps = var == MqarVariant::RobustK2V2 ? sample_distinct(s, qr.space, N)
                                                               : sample_weighted_distinct(s, query_weights, N);

    // 5. which pair's value labels the query of pair i (the binding rule, see mqar.h)
    std::vector<int64_t> source(static_cast<size_t>(N));
    std::iota(source.begin(), source.end(), 0);
    if (c.binding == KeyBinding::First) {
        for (int64_t i = 0; i < N; ++i) {
            for (int64_t j = 0; j < N; ++j) {
                if (!std::equal(keys.begin() + i * K, keys.begin() + (i + 1) * K, keys.begin() + j * K)) continue;
                if (pair_pos[size_t(j)] < pair_pos[size_t(source[size_t(i)])]) source[size_t(i)] = j;
            }
        }
    }

    for (int64_t i = 0; i < N; ++i) {
        const int64_t p = qr.start + gaps[size_t(i)] * qr.unit;
        const int64_t src = source[size_t(i)];
        MqarQuery q;
        if (records) {
            write_record(p, i, true);
            q.key_pos = int32_t(p + 1);
            q.value_pos = int32_t(p + 2 + K);
            if (c.split == Split::Train) b.target[size_t(p + 2 + K + V)] = kSep1; // the closing <s1>
        } else {
            b.put(p, keys[size_t(i)]); // the value slot after it stays unfilled (noise), as in the paper
            q.key_pos = int32_t(p);
            q.value_pos = int32_t(p + 1);
        }
        for (int64_t j = 0; j < V; ++j) b.target[size_t(q.value_pos + j)] = values[size_t(src * V + j)];
        ex.queries.push_back(q);
    }
    std::sort(ex.queries.begin(), ex.queries.end(),
              [](const MqarQuery& a, const MqarQuery& q) { return a.value_pos < q.value_pos; });

    // 6. noise in every position not written above, in position order
    for (int64_t p = 0; p < L; ++p)
        if (!b.filled[size_t(p)]) b.seq[size_t(p)] = c.insert_noise ? s.in(r.noise) : kBlank;

    ex.inputs = std::move(b.seq);
    ex.labels.assign(size_t(L), kIgnore);
    for (int64_t p = 1; p < L; ++p) ex.labels[size_t(p - 1)] = b.target[size_t(p)];
    MG_ASSERT(b.target[0] == kIgnore);
    return ex;
}

} // namespace

std::vector<MqarExample> generate_mqar(const MqarConfig& cfg) {
    validate(cfg);
    const MqarRanges r = mqar_ranges(cfg);
    const std::vector<uint64_t> w = power_law_weights(query_region(cfg).space, cfg.power_a);

    std::vector<MqarExample> out(static_cast<size_t>(cfg.num_examples));
    // Each example is a pure function of (cfg, e), so any thread count gives the same data.
#pragma omp parallel for schedule(static) if (cfg.num_examples * cfg.seq_len > (1 << 16))
    for (int64_t e = 0; e < cfg.num_examples; ++e) out[size_t(e)] = make_example(cfg, r, w, e);
    return out;
}

// ---- grids --------------------------------------------------------------------------------

namespace {
std::vector<GridCell> powers_grid(std::initializer_list<std::pair<int64_t, int64_t>> max_n) {
    std::vector<GridCell> g;
    for (auto [L, nmax] : max_n)
        for (int64_t n = 1; n <= nmax; n *= 2) g.emplace_back(L, n);
    return g;
}
} // namespace

std::vector<GridCell> paper_grid() { return powers_grid({{64, 16}, {128, 32}, {256, 64}, {512, 128}}); }
std::vector<GridCell> zoology_grid() { return {{64, 4}, {128, 8}, {256, 16}}; }
std::vector<GridCell> robustness_k2v2_grid() {
    return {{64, 1}, {64, 4}, {64, 8}, {256, 1}, {256, 4}, {256, 8}, {256, 16},
            {512, 1}, {512, 4}, {512, 8}, {512, 16}, {512, 32}};
}
std::vector<GridCell> robustness_split_grid() { return powers_grid({{64, 4}, {128, 8}, {256, 16}, {512, 32}}); }

uint64_t mqar_grid_bytes(const MqarConfig& base, const std::vector<GridCell>& grid) {
    double bytes = 0; // double: an absurd count must not wrap
    for (const auto& [L, N] : grid) // inputs and labels (2 x 4L), queries and context records (<= 16N)
        bytes += double(base.num_examples) * double(sizeof(MqarExample) + 8 * L + 16 * N);
    return bytes >= 1.8e19 ? UINT64_MAX : uint64_t(bytes);
}

MqarGridData generate_mqar_grid(const MqarConfig& base, const std::vector<GridCell>& grid) {
    const uint64_t need = mqar_grid_bytes(base, grid), have = host_memory_bytes();
    int64_t longest = 0;
    for (const auto& cell : grid) longest = std::max(longest, cell.first);
    MG_CHECK(have == 0 || need <= have,
             "mqar: {} examples per grid cell ({} cells, L up to {}) need about {} of host memory, more than this "
             "machine's {}; ask for fewer examples",
             base.num_examples, grid.size(), longest, format_bytes(double(need)), format_bytes(double(have)));
    MqarGridData d;
    for (size_t i = 0; i < grid.size(); ++i) {
        MqarConfig c = base;
        c.seq_len = grid[i].first;
        c.num_kv_pairs = grid[i].second;
        c.config_index = int64_t(i);
        if (!mqar_fits(c)) {
            d.skipped.push_back(grid[i]);
            continue;
        }
        auto ex = generate_mqar(c);
        d.examples.insert(d.examples.end(), std::make_move_iterator(ex.begin()), std::make_move_iterator(ex.end()));
    }
    return d;
}

MqarConfig paper_config(MqarVariant v, int64_t L, int64_t N, Split split) {
    MqarConfig c;
    c.variant = v;
    c.vocab_size = 20000;
    c.seq_len = L;
    c.num_kv_pairs = N;
    c.split = split;
    c.num_examples = split == Split::Train ? 10000 : 100;
    return c;
}

MqarConfig zoology_config(int64_t L, int64_t N, Split split) {
    MqarConfig c;
    c.variant = MqarVariant::Standard;
    c.vocab_size = 8192;
    c.seq_len = L;
    c.num_kv_pairs = N;
    c.split = split;
    c.insert_noise = false;
    c.num_examples = split == Split::Train ? 100000 : 3000;
    return c;
}

// ---- batching -----------------------------------------------------------------------------

std::vector<std::vector<int64_t>> batch_plan(const std::vector<MqarExample>& examples, int64_t batch_size,
                                              bool drop_last) {
    MG_CHECK(batch_size >= 1, "batch_plan: batch_size = {}, expected >= 1", batch_size);
    std::vector<int64_t> order(examples.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return examples[size_t(a)].seq_len > examples[size_t(b)].seq_len;
    });
    std::vector<std::vector<int64_t>> plan;
    size_t i = 0;
    while (i < order.size()) {
        size_t j = i;
        const int32_t L = examples[size_t(order[i])].seq_len;
        while (j < order.size() && examples[size_t(order[j])].seq_len == L) ++j;
        for (size_t s = i; s < j; s += size_t(batch_size)) {
            size_t e = std::min(j, s + size_t(batch_size));
            if (drop_last && e - s < size_t(batch_size)) break;
            plan.emplace_back(order.begin() + int64_t(s), order.begin() + int64_t(e));
        }
        i = j;
    }
    return plan;
}

namespace {

// Fisher-Yates with the counter-based generator: a pure function of (seed, lane, counter).
void shuffle_in_place(std::vector<int64_t>& v, uint64_t seed, uint64_t lane, uint64_t& counter) {
    for (size_t i = v.size(); i > 1; --i) {
        const uint64_t j = rng::bits(seed, counter++, lane) % i;
        std::swap(v[i - 1], v[size_t(j)]);
    }
}

} // namespace

std::vector<std::vector<int64_t>> epoch_plan(const std::vector<MqarExample>& examples, int64_t step_batch, bool shuffle,
                                             uint64_t seed, int64_t epoch) {
    MG_CHECK(step_batch >= 1, "epoch_plan: step_batch is {}, expected >= 1", step_batch);
    if (!shuffle) return batch_plan(examples, step_batch);
    // batch_plan with a batch as large as the data gives the length groups, longest first.
    uint64_t counter = 0;
    std::vector<std::vector<int64_t>> batches;
    for (std::vector<int64_t> group : batch_plan(examples, std::max<int64_t>(1, int64_t(examples.size())))) {
        shuffle_in_place(group, seed, uint64_t(epoch), counter);
        for (size_t s = 0; s < group.size(); s += size_t(step_batch))
            batches.emplace_back(group.begin() + int64_t(s),
                                 group.begin() + int64_t(std::min(group.size(), s + size_t(step_batch))));
    }
    std::vector<int64_t> order(batches.size());
    std::iota(order.begin(), order.end(), 0);
    shuffle_in_place(order, seed, uint64_t(epoch), counter);
    std::vector<std::vector<int64_t>> out;
    out.reserve(batches.size());
    for (int64_t i : order) out.push_back(std::move(batches[size_t(i)]));
    return out;
}

MqarBatch make_batch(const std::vector<MqarExample>& examples, const std::vector<int64_t>& index, Device device) {
    MG_CHECK(!index.empty(), "make_batch: empty index list");
    for (int64_t i : index)
        MG_CHECK(i >= 0 && i < int64_t(examples.size()), "make_batch: example index {} out of range [0, {})", i,
                 examples.size());
    const int64_t B = int64_t(index.size()), L = examples[size_t(index[0])].seq_len;
    MG_CHECK(B * L < (int64_t(1) << 31), "make_batch: B*L = {}*{} positions do not fit the i32 position index", B, L);
    std::vector<int32_t> in(size_t(B * L)), lab(size_t(B * L));
    for (int64_t b = 0; b < B; ++b) {
        const MqarExample& ex = examples[size_t(index[size_t(b)])];
        MG_CHECK(ex.seq_len == L && int64_t(ex.inputs.size()) == L && int64_t(ex.labels.size()) == L,
                 "make_batch: example {} has length {}, expected {} like example {} (batches never mix lengths; "
                 "use batch_plan)", index[size_t(b)], ex.seq_len, L, index[0]);
        std::copy(ex.inputs.begin(), ex.inputs.end(), in.begin() + b * L);
        std::copy(ex.labels.begin(), ex.labels.end(), lab.begin() + b * L);
    }
    std::vector<int32_t> pos, tgt;
    for (int64_t i = 0; i < B * L; ++i)
        if (lab[size_t(i)] != kIgnore) {
            pos.push_back(int32_t(i));
            tgt.push_back(lab[size_t(i)]);
        }
    MqarBatch batch;
    batch.inputs = Tensor::from_vector(in, {B, L}, {DType::i32, device});
    batch.labels = Tensor::from_vector(lab, {B, L}); // host only: no step reads it
    batch.positions = Tensor::from_vector(pos, {int64_t(pos.size())}, {DType::i32, device});
    batch.targets = Tensor::from_vector(tgt, {int64_t(tgt.size())}, {DType::i32, device});
    batch.example_index = index;
    return batch;
}

// ---- files --------------------------------------------------------------------------------

void save_jsonl(const std::string& path, const std::vector<MqarExample>& examples) {
    AtomicFile f(path);
    std::string buf;
    for (const MqarExample& ex : examples) {
        // the paper's fields in its order (a fixed schema of integers: formatted directly)
        fmt::format_to(std::back_inserter(buf), R"({{"ctx_length":{},"num_kv_pair":{},"key_len":{},"value_len":{},"V_id":{{)",
                       ex.seq_len, ex.num_kv_pairs, ex.key_len, ex.value_len);
        bool first = true;
        for (int64_t p = 1; p < ex.seq_len; ++p) {
            if (ex.target_at(p) == kIgnore) continue;
            fmt::format_to(std::back_inserter(buf), R"({}"{}":{})", first ? "" : ",", p, ex.target_at(p));
            first = false;
        }
        fmt::format_to(std::back_inserter(buf), R"(}},"input_ids":[{}]}})", fmt::join(ex.inputs, ","));
        buf += '\n';
        if (buf.size() > (size_t(1) << 20)) {
            f.write(buf);
            buf.clear();
        }
    }
    f.write(buf);
    f.commit();
}

namespace {

// One line of a JSONL file -> an example; throws "path:line: field 'F': ...".
MqarExample parse_line(const std::string& text, const std::string& where) {
    const nlohmann::json j = parse_json(text, where);
    MG_CHECK(j.is_object(), "{}: expected a JSON object, got {}", where, j.type_name());
    auto int_field = [&](const char* name, int64_t lo, int64_t hi) {
        MG_CHECK(j.contains(name), "{}: field '{}' is missing", where, name);
        const auto& v = j[name];
        MG_CHECK(v.is_number_integer(), "{}: field '{}': expected an integer, got {}", where, name, json_excerpt(v));
        int64_t x = v.get<int64_t>();
        MG_CHECK(x >= lo && x <= hi, "{}: field '{}': {} is out of range [{}, {}]", where, name, x, lo, hi);
        return x;
    };
    MqarExample ex;
    const int64_t L = int_field("ctx_length", 2, int64_t(1) << 24);
    ex.seq_len = int32_t(L);
    ex.num_kv_pairs = int32_t(int_field("num_kv_pair", 1, L));
    ex.key_len = int32_t(int_field("key_len", 1, L));
    ex.value_len = int32_t(int_field("value_len", 1, L));
    const int64_t V = ex.value_len;

    MG_CHECK(j.contains("input_ids"), "{}: field 'input_ids' is missing", where);
    const auto& ids = j["input_ids"];
    MG_CHECK(ids.is_array(), "{}: field 'input_ids': expected an array, got {}", where, ids.type_name());
    MG_CHECK(int64_t(ids.size()) == L, "{}: field 'input_ids': {} tokens, but ctx_length is {}", where, ids.size(), L);
    ex.inputs.resize(size_t(L));
    for (int64_t t = 0; t < L; ++t) {
        const auto& v = ids[size_t(t)];
        MG_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < (int64_t(1) << 31),
                 "{}: field 'input_ids': element {} is {}, expected a token id >= 0", where, t, json_excerpt(v));
        ex.inputs[size_t(t)] = int32_t(v.get<int64_t>());
    }

    MG_CHECK(j.contains("V_id"), "{}: field 'V_id' is missing", where);
    const auto& vid = j["V_id"];
    MG_CHECK(vid.is_object(), "{}: field 'V_id': expected an object {{position: token}}, got {}", where, vid.type_name());
    std::vector<int32_t> target(size_t(L), kIgnore);
    std::vector<int64_t> pos;
    for (auto it = vid.begin(); it != vid.end(); ++it) {
        const std::string& k = it.key();
        int64_t p = -1;
        bool digits = !k.empty() && k.size() <= 9 && std::all_of(k.begin(), k.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
        if (digits) p = std::stoll(k);
        MG_CHECK(digits && p >= 1 && p < L, "{}: field 'V_id': key '{}' is not a position in [1, {})", where, k, L);
        const auto& v = it.value();
        MG_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < (int64_t(1) << 31),
                 "{}: field 'V_id': position {} has {}, expected a token id >= 0", where, p, json_excerpt(v));
        MG_CHECK(target[size_t(p)] == kIgnore, "{}: field 'V_id': position {} given twice", where, p);
        target[size_t(p)] = int32_t(v.get<int64_t>());
        pos.push_back(p);
    }
    std::sort(pos.begin(), pos.end());

    // Queries: runs of V consecutive targets; a target right after a run with label <s1> on an
    // input <s1> is the training-only closing target.
    size_t i = 0;
    while (i < pos.size()) {
        const int64_t p = pos[i];
        for (int64_t d = 1; d < V; ++d)
            MG_CHECK(i + size_t(d) < pos.size() && pos[i + size_t(d)] == p + d,
                     "{}: field 'V_id': the targets from position {} are not {} consecutive positions (value_len)",
                     where, p, V);
        MqarQuery q;
        q.value_pos = int32_t(p);
        const bool record = p >= 2 && ex.inputs[size_t(p - 1)] == kSep2;
        q.key_pos = int32_t(record ? p - 1 - ex.key_len : p - ex.key_len);
        MG_CHECK(q.key_pos >= 0, "{}: field 'V_id': the query with values at {} has no room for its key "
                 "(key_len {})", where, p, ex.key_len);
        ex.queries.push_back(q);
        i += size_t(V);
        if (i < pos.size() && pos[i] == p + V) {
            MG_CHECK(target[size_t(p + V)] == kSep1 && ex.inputs[size_t(p + V)] == kSep1,
                     "{}: field 'V_id': position {} directly after the value targets at {}..{} is neither a "
                     "value (value_len {}) nor the closing <s1> (10)", where, p + V, p, p + V - 1, V);
            ++i;
        }
    }
    MG_CHECK(int64_t(ex.queries.size()) == ex.num_kv_pairs,
             "{}: field 'V_id': {} queries of value_len {} found, but num_kv_pair is {}", where, ex.queries.size(),
             V, ex.num_kv_pairs);

    ex.labels.assign(size_t(L), kIgnore);
    for (int64_t p = 1; p < L; ++p) ex.labels[size_t(p - 1)] = target[size_t(p)];
    return ex;
}

} // namespace

std::vector<MqarExample> load_jsonl(const std::string& path) {
    std::ifstream f(path);
    MG_CHECK(f.good(), "load_jsonl: cannot open '{}': {}", path, std::strerror(errno));
    std::vector<MqarExample> out;
    std::string line;
    int64_t n = 0;
    while (std::getline(f, line)) {
        ++n;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue; // blank line
        out.push_back(parse_line(line, fmt::format("{}:{}", path, n)));
    }
    MG_CHECK(!f.bad(), "load_jsonl: read error in '{}' after line {}", path, n);
    return out;
}

} // namespace mg::data
