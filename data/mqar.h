// data/mqar.h: the MQAR (multi-query associative recall) task in every variant of SPEC.md §4,
// batching, and the paper's JSONL files. Depends on tensor/ only.
//
// The layouts follow the paper's own generators line by line (Global_Mamba
// custom_dataset/build_mqar.py, and the dev builders in tmp_code/.../AR_ywj.py; see
// /work/shared/reference/paper-code.md §2). Glossary: L sequence length, N key-value pairs,
// K key tokens, V value tokens, R = K + V + 3 record length, B batch.
//
// ---- Positions, labels and the causal shift (read this before writing a loss) -------------
// A "target" is a (position p, token) pair: the token at input position p that the model must
// produce (the paper's V_id, and what the JSONL files store). The model reads inputs[0..t] and
// its output at t predicts the token at t+1, so the target at p is predicted by the output at
// p-1. MqarExample::labels is ALREADY SHIFTED for that:
//
//     labels[t] = token of the target at position t+1, or -100 (kIgnore) when t+1 is no target;
//     labels[L-1] is always -100.
//
// So the loss is plain cross-entropy at every position, with NO further shift:
//     loss = mean over {(b,t) : labels[b,t] != -100} of CE(logits[b,t,:], labels[b,t]),
// which is exactly the paper's `CrossEntropyLoss(logits[:, :-1], V_id-labels[:, 1:])` (SPEC §4
// "Loss: causal shift"). A metric prediction pred[t] = argmax logits[b,t,:] is compared with
// labels[t]; a query whose values sit at positions p..p+V-1 is judged on pred[p-1..p+V-2].
// Position 0 is never a target.
//
// ---- Repeated keys (the binding rule) ------------------------------------------------------
// Every variant writes N "true" pairs (records) into the context and asks one query per pair.
// Shuffle and the multi-token variants draw keys WITH replacement (as the paper does), so two
// pairs may share a key; the conflict-copy variants add copies `k (v+i)` on purpose.
//   KeyBinding::Pair  (the paper's rule, default): the query made from pair i is labelled with
//                     pair i's value. Each query's label is the value of SOME context pair with
//                     its key; when the key is unique among the true pairs, it is the value of
//                     the FIRST context occurrence of the key (conflicting copies always come
//                     after their true pair). Two queries of a repeated key may disagree.
//   KeyBinding::First (our option): every query's label is the value of the first context
//                     occurrence (by position) of its key. Labels are then a function of the
//                     context alone. This agrees with the paper's conflict-copy sets, whose gold
//                     value is the first (true) occurrence.
// Noise tokens may equal key tokens by chance (the paper's noise range overlaps the key range);
// they are not pairs and take no part in the binding.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "data/atomic_file.h"
#include "tensor/tensor.h"

namespace mg::data {

inline constexpr int32_t kIgnore = -100; // label of a position that is no target
inline constexpr int32_t kSep1 = 10;     // <s1>: record delimiter (multi-token variants)
inline constexpr int32_t kSep2 = 11;     // <s2>: key/value separator
inline constexpr int32_t kMask = 12;     // replaces value tokens in query records
inline constexpr int32_t kBlank = 0;     // an unfilled position when noise is off

enum class MqarVariant {
    // single-token keys and values (paper: build_position_mqar)
    Standard,       // k1 v1 .. kN vN at the very start; queries in the rest
    Last,           // pairs at the end of the first half; queries in the second half
    Shuffle,        // pairs in uniformly chosen 2-token slots of the first half; keys/values with replacement
    // multi-token records <s1> k1..kK <s2> v1..vV <s1> (paper: build_ngram_mqar, "standard")
    K1V1, K1V2, K2V2, K2V4,
    K4V8Shuffle,    // records in uniformly chosen R-slots of the first half (paper: build_v6_dataset)
    // robustness / noise injection, test sets in the paper
    RobustK2V2,     // K2V2 whose last key token is shared by all pairs; uniform query slots
    RobustStandard, // single-token: true pairs, then conflicting copies k (v+1) right after them
    RobustLast,     // single-token: true pairs at the start of the first half, copies k (v+1) at its end
    RobustSplit4,   // single-token: first half in 4 blocks, block b holds k (v+b); block 0 is true
};

enum class Split { Train, Valid, Test };
enum class KeyBinding { Pair, First };

// Names used in configs and JSONL: "standard", "last", "shuffle", "k1v1", "k1v2", "k2v2", "k2v4",
// "k4v8-shuffle", "robust-k2v2", "robust-standard", "robust-last", "robust-split4";
// "train" | "valid" | "test"; "pair" | "first". Parsing throws mg::Error naming the config key
// and the allowed values.
std::string_view variant_name(MqarVariant v);
MqarVariant parse_variant(std::string_view s);
const std::vector<MqarVariant>& all_variants();
std::string_view split_name(Split s);
Split parse_split(std::string_view s);
std::string_view binding_name(KeyBinding b);
KeyBinding parse_binding(std::string_view s);

int64_t variant_key_len(MqarVariant v);   // K
int64_t variant_value_len(MqarVariant v); // V
bool variant_uses_records(MqarVariant v); // the <s1> k.. <s2> v.. <s1> format

// Token ids [lo, hi).
struct TokenRange {
    int64_t lo = 0, hi = 0;
    int64_t size() const { return hi - lo; }
    bool contains(int64_t t) const { return t >= lo && t < hi; }
    bool operator==(const TokenRange&) const = default;
};

struct MqarConfig {
    MqarVariant variant = MqarVariant::Standard;
    // The paper's VOCAB_SIZE: the key and value ranges split it (see mqar_ranges). It is NOT the
    // model's vocabulary: ids reach vocab_size + 20 (noise); size the embedding with
    // mqar_model_vocab(cfg) or larger (the paper's models have 20480 or 50280).
    int64_t vocab_size = 20000;
    int64_t seq_len = 64;      // L
    int64_t num_kv_pairs = 4;  // N
    int64_t num_examples = 100;
    Split split = Split::Train;       // seed base, and the closing-<s1> training label
    int64_t config_index = 0;         // position in the grid; the seed is seed_base + config_index
    std::optional<uint64_t> seed_base; // default: the paper's {train 42, valid 1234, test 4567}
    double power_a = 0.01;             // query slot i (0-based) has weight (i+1)^(power_a - 1)
    bool insert_noise = true;          // fill unused positions with noise tokens (else kBlank)
    KeyBinding binding = KeyBinding::Pair;
    // Overrides of the derived ranges (mqar_ranges).
    std::optional<TokenRange> key_range, value_range, noise_range;

    uint64_t seed() const;
};

struct MqarRanges {
    TokenRange key, value, noise;
};
// The ranges in effect. Derived from vocab_size = W as in the paper's code unless overridden:
//   single-token variants: keys [1, W/2), values [W/2, W)
//   multi-token variants:  keys [20, W/2 + 20), values [W/2 + 20, W + 20)
//   noise (all):           [20, W + 20)
// (W = 20000 gives the paper's [1,10000), [10000,20000), [20,10020), [10020,20020), [20,20020);
//  zoology's W = 8192 gives keys [1,4096), values [4096,8192).)
MqarRanges mqar_ranges(const MqarConfig& cfg);
// 1 + the largest token id the config can emit (conflict copies reach value.hi - 1 + 3).
int64_t mqar_model_vocab(const MqarConfig& cfg);

// Throws mg::Error naming the config key, its value and the allowed values when the config
// cannot be generated (N too large for L, ranges too small or overlapping the special tokens, ...).
void validate(const MqarConfig& cfg);
// Whether validate() would accept seq_len/num_kv_pairs (the paper silently skips such grid cells).
bool mqar_fits(const MqarConfig& cfg);

// One query: its key tokens start at key_pos, its value_len value targets are at positions
// value_pos .. value_pos + value_len - 1 (always consecutive). Input coordinates.
struct MqarQuery {
    int32_t key_pos = 0;
    int32_t value_pos = 0;
    bool operator==(const MqarQuery&) const = default;
};

struct MqarExample {
    int32_t seq_len = 0;      // L = inputs.size()
    int32_t num_kv_pairs = 0; // N as configured: (seq_len, num_kv_pairs) names the metric subtask
    int32_t key_len = 1;      // K
    int32_t value_len = 1;    // V
    std::vector<int32_t> inputs;    // (L) token ids
    std::vector<int32_t> labels;    // (L) shifted targets, kIgnore elsewhere (see the top of this file)
    std::vector<MqarQuery> queries; // sorted by position
    // Generator only (not in JSONL, empty after import): the first position of every context pair
    // (single-token: the key; multi-token: the opening <s1>), the N true pairs first in pair
    // order, then the conflicting copies.
    std::vector<int32_t> context_records;

    // The target token at input position p (p >= 1), or kIgnore.
    int32_t target_at(int64_t p) const { return labels[size_t(p - 1)]; }
};

// num_examples examples of one config. Example e depends only on (cfg, cfg.seed(), e): the
// stream is tensor/random.h's counter-based generator keyed by (seed, lane = e), consumed in a
// fixed order, with integer-only sampling (the power-law weights are rounded to integers once),
// so the data are identical on every machine and thread count.
std::vector<MqarExample> generate_mqar(const MqarConfig& cfg);

// ---- grids --------------------------------------------------------------------------------
using GridCell = std::pair<int64_t, int64_t>; // (L, N)
// (64,{1,2,4,8,16}), (128,{1..32}), (256,{1..64}), (512,{1..128}), powers of two: 26 cells.
std::vector<GridCell> paper_grid();
// zoology's standard sweep: (64,4), (128,8), (256,16).
std::vector<GridCell> zoology_grid();
// The released robustness K2V2 test grid: (64,{1,4,8}), (256,{1,4,8,16}), (512,{1,4,8,16,32}).
std::vector<GridCell> robustness_k2v2_grid();
// The dev robustness-split grid: (64,{1,2,4}), (128,{1,2,4,8}), (256,{1..16}), (512,{1..32}).
std::vector<GridCell> robustness_split_grid();

struct MqarGridData {
    std::vector<MqarExample> examples;
    std::vector<GridCell> skipped; // cells that do not fit the variant (the paper skips them too)
};
// Every cell of `grid` with base's other settings; cell i gets config_index = i (skipped cells
// keep their index, as in the paper's loop, so seeds do not shift).
// Refuses (mg::Error naming the count, the grid and both sizes) a grid whose examples would not fit
// this machine's memory (mqar_grid_bytes against host_memory_bytes), before allocating any.
MqarGridData generate_mqar_grid(const MqarConfig& base, const std::vector<GridCell>& grid);
// About how many bytes of host memory the grid's examples take (cells that do not fit included).
uint64_t mqar_grid_bytes(const MqarConfig& base, const std::vector<GridCell>& grid);

// Presets. paper(): W = 20000 (ids < 20020, the paper's tiny model has vocab 20480).
// zoology(): W = 8192, no noise (zoology's figure-2 configs set random_non_queries=False).
MqarConfig paper_config(MqarVariant v, int64_t L, int64_t N, Split split = Split::Train);
MqarConfig zoology_config(int64_t L, int64_t N, Split split = Split::Train);

// ---- batching -----------------------------------------------------------------------------
// The paper's order: examples sorted by length, longest first (stable: ties keep their order),
// cut into batches that never mix lengths. Each entry lists example indices. With drop_last a
// length group's final partial batch is left out.
std::vector<std::vector<int64_t>> batch_plan(const std::vector<MqarExample>& examples,
                                              int64_t batch_size, bool drop_last = false);

// The batches of one training epoch (which examples form which optimizer step), a pure function of
// (examples, step_batch, shuffle, seed, epoch). Without shuffle: batch_plan's longest-first order
// (the paper's). With shuffle: the examples of each length are permuted, cut into batches of
// step_batch, and the batches permuted, each permutation a Fisher-Yates shuffle drawn from the
// counter-based generator on lane `epoch` (tensor/random.h), so a resumed run replays any epoch.
std::vector<std::vector<int64_t>> epoch_plan(const std::vector<MqarExample>& examples, int64_t step_batch, bool shuffle,
                                             uint64_t seed, int64_t epoch);

struct MqarBatch {
    Tensor inputs; // (B, L) i32
    Tensor labels; // (B, L) i32, shifted as MqarExample::labels, on the CPU whatever `device` is:
                   // the loss and the metric read positions/targets, so it is never uploaded
    // The labelled positions only, for a loss that builds logits just there (ops'
    // cross_entropy_indexed): positions (P) i32 = b*L + t for every labels[b,t] != -100, in
    // row-major order, and targets (P) i32 = labels[b,t].
    Tensor positions, targets;
    std::vector<int64_t> example_index;
};
// The listed examples (all of one length) as tensors on `device`.
MqarBatch make_batch(const std::vector<MqarExample>& examples, const std::vector<int64_t>& index,
                     Device device = Device::cpu());

// ---- the paper's JSONL --------------------------------------------------------------------
// One line per example, the paper's fields in its order:
//   {"ctx_length": L, "num_kv_pair": N, "key_len": K, "value_len": V,
//    "V_id": {"<position>": token, ...}, "input_ids": [...]}
// V_id keys are input positions (unshifted), ascending, as strings (JSON object keys). The
// training-split closing <s1> targets are in V_id as in the paper.
// Written atomically (temp file in the same directory, fsync, rename).
void save_jsonl(const std::string& path, const std::vector<MqarExample>& examples);
// Reads a file written by save_jsonl or by the paper's code. Queries are rebuilt from V_id:
// ascending positions are cut into runs of value_len consecutive positions; a target directly
// after a run (label <s1>, input <s1>) is the training-only closing target, kept in labels but
// in no query. Throws mg::Error "path:line: field 'F': what is wrong" on any bad line.
std::vector<MqarExample> load_jsonl(const std::string& path);


} // namespace mg::data
