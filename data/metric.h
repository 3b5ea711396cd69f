// data/metric.h: MQAR accuracy as the paper's evaluator computes it (Custom_evaluator.eval_mqar).
//
// The caller runs one forward pass and takes the greedy argmax at every position:
// pred[t] = argmax_v logits[t, v], the model's guess for the token at t+1 (no generation, no
// teacher forcing beyond the inputs). With the shifted labels of data/mqar.h, a query whose V
// value targets sit at input positions p..p+V-1 is correct iff pred[p-1+j] == labels[p-1+j] for
// every j < V. Only query value tokens count: the training-only closing-<s1> targets do not.
//
//   per subtask (L, N):  query accuracy = correct queries / queries
//                        token accuracy = correct value tokens / value tokens
//   query_acc_mean  = unweighted mean over subtasks of query accuracy  (the paper's AVG_SCORE)
//   token_acc_mean  = unweighted mean over subtasks of token accuracy  (AVG_Token_SCORE)
//   token_acc       = all correct value tokens / all value tokens (pooled)
// Accuracies are fractions in [0, 1]; the paper prints 100x, rounded to 2 decimals.
#pragma once
#include <cstdint>
#include <map>
#include <span>
#include <utility>
#include <vector>

#include "data/mqar.h"
#include "tensor/tensor.h"

namespace mg::data {

struct MqarSubtaskScore {
    int64_t seq_len = 0, num_kv_pairs = 0;
    int64_t examples = 0;
    int64_t queries = 0, queries_correct = 0;
    int64_t tokens = 0, tokens_correct = 0;
    double query_acc() const { return queries ? double(queries_correct) / double(queries) : 0.0; }
    double token_acc() const { return tokens ? double(tokens_correct) / double(tokens) : 0.0; }
};

struct MqarScore {
    std::vector<MqarSubtaskScore> subtasks; // sorted by (L, N)
    double query_acc_mean = 0.0;
    double token_acc_mean = 0.0;
    double token_acc = 0.0;
    int64_t queries = 0, queries_correct = 0, tokens = 0, tokens_correct = 0;
};

class MqarMetric {
public:
    // pred (L) for one example: pred[t] = argmax of the output at position t.
    void add(const MqarExample& ex, std::span<const int32_t> pred);
    // pred (B, L) i32 on any device for the batch built from examples[batch.example_index].
    void add_batch(const std::vector<MqarExample>& examples, const MqarBatch& batch, const Tensor& pred);
    MqarScore score() const;
    // The counts of cell (L, N) so far (all zero where no example of it was scored).
    MqarSubtaskScore counts(int64_t seq_len, int64_t num_kv_pairs) const;
    // Adds the counts of a subtask scored elsewhere (another rank's share of the same cell); a
    // score with no examples adds nothing, so a cell appears only where an example was scored.
    void add_counts(const MqarSubtaskScore& s);

private:
    std::map<std::pair<int64_t, int64_t>, MqarSubtaskScore> by_subtask_;
};

// preds[i] is the prediction row of examples[i].
MqarScore score_mqar(const std::vector<MqarExample>& examples, const std::vector<std::vector<int32_t>>& preds);

} // namespace mg::data
