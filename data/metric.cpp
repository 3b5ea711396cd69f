// data/metric.cpp: MQAR query and token accuracy per (L, N) subtask (see data/metric.h).
#include "data/metric.h"

#include "tensor/check.h"

namespace mg::data {

void MqarMetric::add(const MqarExample& ex, std::span<const int32_t> pred) {
    MG_CHECK(int64_t(pred.size()) == ex.seq_len && int64_t(ex.labels.size()) == ex.seq_len,
             "mqar metric: prediction row has {} positions, expected seq_len = {} of the example", pred.size(),
             ex.seq_len);
    MqarSubtaskScore& s = by_subtask_[{ex.seq_len, ex.num_kv_pairs}];
    s.seq_len = ex.seq_len;
    s.num_kv_pairs = ex.num_kv_pairs;
    ++s.examples;
    for (const MqarQuery& q : ex.queries) {
        bool all = true;
        for (int64_t j = 0; j < ex.value_len; ++j) {
            const int64_t t = q.value_pos - 1 + j; // the output at t predicts the token at t+1
            MG_CHECK(t >= 0 && t < ex.seq_len && ex.labels[size_t(t)] != kIgnore,
                     "mqar metric: query value at position {} has no label (example of length {})", t + 1,
                     ex.seq_len);
            const bool ok = pred[size_t(t)] == ex.labels[size_t(t)];
            s.tokens_correct += ok;
            all = all && ok;
        }
        s.tokens += ex.value_len;
        ++s.queries;
        s.queries_correct += all;
    }
}

void MqarMetric::add_batch(const std::vector<MqarExample>& examples, const MqarBatch& batch, const Tensor& pred) {
    const int64_t B = int64_t(batch.example_index.size());
    MG_CHECK(pred.dtype() == DType::i32 && pred.dim() == 2 && pred.size(0) == B,
             "mqar metric: pred is {}, expected (B, L) i32 with B = {} (argmax token ids)", pred.desc(), B);
    const int64_t L = pred.size(1);
    const std::vector<int32_t> host = pred.to_vector<int32_t>();
    for (int64_t b = 0; b < B; ++b) {
        const int64_t i = batch.example_index[size_t(b)];
        MG_CHECK(i >= 0 && i < int64_t(examples.size()), "mqar metric: example index {} out of range [0, {})", i,
                 examples.size());
        add(examples[size_t(i)], std::span<const int32_t>(host.data() + b * L, size_t(L)));
    }
}

MqarSubtaskScore MqarMetric::counts(int64_t seq_len, int64_t num_kv_pairs) const {
    const auto it = by_subtask_.find({seq_len, num_kv_pairs});
    return it == by_subtask_.end() ? MqarSubtaskScore{} : it->second;
}

void MqarMetric::add_counts(const MqarSubtaskScore& s) {
    if (s.examples == 0) return;
    MqarSubtaskScore& t = by_subtask_[{s.seq_len, s.num_kv_pairs}];
    t.seq_len = s.seq_len;
    t.num_kv_pairs = s.num_kv_pairs;
    t.examples += s.examples;
    t.queries += s.queries;
    t.queries_correct += s.queries_correct;
    t.tokens += s.tokens;
    t.tokens_correct += s.tokens_correct;
}

MqarScore MqarMetric::score() const {
    MqarScore r;
    for (const auto& [key, s] : by_subtask_) {
        r.subtasks.push_back(s);
        r.queries += s.queries;
        r.queries_correct += s.queries_correct;
        r.tokens += s.tokens;
        r.tokens_correct += s.tokens_correct;
        r.query_acc_mean += s.query_acc();
        r.token_acc_mean += s.token_acc();
    }
    if (!r.subtasks.empty()) {
        r.query_acc_mean /= double(r.subtasks.size());
        r.token_acc_mean /= double(r.subtasks.size());
    }
    r.token_acc = r.tokens ? double(r.tokens_correct) / double(r.tokens) : 0.0;
    return r;
}

MqarScore score_mqar(const std::vector<MqarExample>& examples, const std::vector<std::vector<int32_t>>& preds) {
    MG_CHECK(preds.size() == examples.size(), "mqar metric: {} prediction rows for {} examples", preds.size(),
             examples.size());
    MqarMetric m;
    for (size_t i = 0; i < examples.size(); ++i) m.add(examples[i], preds[i]);
    return m.score();
}

} // namespace mg::data
