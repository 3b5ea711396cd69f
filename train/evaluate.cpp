// train/evaluate.cpp: see train/evaluate.h.
#include "train/evaluate.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "autograd/grad_mode.h"
#include "ops/cross_entropy.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/reduce.h"
#include "tensor/check.h"
#include "train/checkpoint.h"
#include "train/distributed.h"
#include "train/model.h"
#include "train/pretrained.h"

namespace mg::train {

// ---- evaluation ---------------------------------------------------------------------------------------

namespace {

// The sharded evaluation's reduction: every cell of the examples (the same list on every rank),
// five counts each, then the loss sum and the labelled count, summed over the ranks as doubles
// (exact for counts below 2^53); returns the whole metric, and the sums in place.
data::MqarMetric sum_over_ranks(Communicator& comm, const std::vector<data::MqarExample>& examples,
                                const data::MqarMetric& mine, double& loss_sum, int64_t& labelled) {
    std::set<std::pair<int64_t, int64_t>> cells;
    for (const data::MqarExample& ex : examples) cells.insert({ex.seq_len, ex.num_kv_pairs});
    std::vector<double> v;
    for (const auto& cell : cells) {
        const data::MqarSubtaskScore s = mine.counts(cell.first, cell.second);
        for (int64_t n : {s.examples, s.queries, s.queries_correct, s.tokens, s.tokens_correct}) v.push_back(double(n));
    }
    v.push_back(loss_sum);
    v.push_back(double(labelled));
    comm.all_reduce_sum(v);
    data::MqarMetric all;
    size_t k = 0;
    for (const auto& cell : cells) {
        data::MqarSubtaskScore s;
        s.seq_len = cell.first;
        s.num_kv_pairs = cell.second;
        for (int64_t* n : {&s.examples, &s.queries, &s.queries_correct, &s.tokens, &s.tokens_correct})
            *n = int64_t(v[k++]);
        all.add_counts(s);
    }
    loss_sum = v[k];
    labelled = int64_t(v[k + 1]);
    return all;
}

} // namespace

EvalResult evaluate_mqar(nn::LanguageModel& model, const std::vector<data::MqarExample>& examples, int64_t batch_size,
                         Communicator* comm) {
    autograd::NoGrad no_grad;
    nn::EvalScope eval_mode(model);
    const Device device = model.lm_head_weight().device();
    const Tensor W = model.lm_head_weight().detach();
    data::MqarMetric metric;
    double loss_sum = 0;
    int64_t labelled = 0;
    const int rank = comm ? comm->rank() : 0, world = comm ? comm->world() : 1;
    const std::vector<std::vector<int64_t>> plan = data::batch_plan(examples, batch_size);
    for (size_t i = size_t(rank); i < plan.size(); i += size_t(world)) {
        const std::vector<int64_t>& idx = plan[i];
        data::MqarBatch b = data::make_batch(examples, idx, device);
        const int64_t B = b.inputs.size(0), L = b.inputs.size(1), P = b.positions.size(0);
        std::vector<int32_t> pred(size_t(B * L), -1); // -1: no prediction (the metric reads labelled positions only)
        if (P > 0) {
            Tensor h = model.hidden_states(b.inputs);
            Tensor logits = linear(embedding(b.positions, h.reshape({B * L, h.size(2)})), W); // (P, V)
            loss_sum += cross_entropy(logits, b.targets).item() * double(P);
            labelled += P;
            const std::vector<int32_t> best = argmax(logits, 1).to(Device::cpu()).to_vector<int32_t>();
            const std::vector<int32_t> pos = b.positions.to(Device::cpu()).to_vector<int32_t>();
            for (int64_t p = 0; p < P; ++p) pred[size_t(pos[size_t(p)])] = best[size_t(p)];
        }
        metric.add_batch(examples, b, Tensor::from_vector(pred, {B, L}));
    }
    if (comm) metric = sum_over_ranks(*comm, examples, metric, loss_sum, labelled);
    EvalResult r;
    r.score = metric.score();
    r.labelled = labelled;
    r.loss = labelled ? loss_sum / double(labelled) : 0.0;
    return r;
}

double EvalResult::perplexity() const { return std::exp(loss); }

EvalResult evaluate_lm(nn::LanguageModel& model, std::span<const int32_t> tokens, int64_t seq_len,
                       int64_t batch_size, int64_t max_batches, const data::Tokenizer* tokenizer, Communicator* comm) {
    MG_CHECK(batch_size >= 1 && max_batches >= 0, "evaluate_lm: batch_size {} must be >= 1 and max_batches {} >= 0",
             batch_size, max_batches);
    autograd::NoGrad no_grad;
    nn::EvalScope eval_mode(model);
    const Device device = model.lm_head_weight().device();
    const int64_t windows = data::num_text_windows(int64_t(tokens.size()), seq_len);
    MG_CHECK(windows > 0, "evaluate_lm: {} tokens hold no window of seq_len + 1 = {} tokens", tokens.size(),
             seq_len + 1);
    double loss_sum = 0;
    int64_t scored = 0, bytes = 0;
    const int64_t n_batches = std::min((windows + batch_size - 1) / batch_size, max_batches == 0 ? windows : max_batches);
    const int rank = comm ? comm->rank() : 0, world = comm ? comm->world() : 1;
    for (int64_t batch = rank; batch < n_batches; batch += world) {
        const int64_t first = batch * batch_size, count = std::min(batch_size, windows - first);
        // the targets of windows first .. first+count-1: tokens[first L + 1 .. (first+count) L]
        for (int64_t i = first * seq_len + 1; i <= (first + count) * seq_len; ++i)
            bytes += tokenizer ? tokenizer->target_bytes(tokens[size_t(i)]) : 1;
        const data::TextBatch b = data::text_windows(tokens, seq_len, first, count, device);
        // the training loss's call (every position labelled): the mean over count * seq_len targets
        Tensor loss = cross_entropy_indexed(model.hidden_states(b.inputs), model.lm_head_weight(), b.positions,
                                            b.targets);
        loss_sum += loss.item() * double(count * seq_len);
        scored += count * seq_len;
    }
    if (comm) {
        std::vector<double> sums = {loss_sum, double(scored), double(bytes)};
        comm->all_reduce_sum(sums);
        loss_sum = sums[0];
        scored = int64_t(sums[1]);
        bytes = int64_t(sums[2]);
    }
    EvalResult r;
    r.labelled = scored;
    r.bytes = bytes;
    r.loss = loss_sum / double(scored);
    return r;
}

std::string format_lm_result(const EvalResult& r) {
    if (r.bytes == 0 || r.bytes == r.labelled)
        return fmt::format("loss {:.4f} nats/byte, {:.4f} bits/byte, perplexity {:.3f} ({} bytes)", r.loss,
                           r.bits_per_byte(), r.perplexity(), r.labelled);
    return fmt::format("loss {:.4f} nats/token, {:.4f} bits/byte, perplexity {:.3f} ({} tokens, {} bytes)", r.loss,
                       r.bits_per_byte(), r.perplexity(), r.labelled, r.bytes);
}

std::string format_score_table(const std::vector<std::pair<std::string, data::MqarScore>>& columns,
                               const std::string& title) {
    std::set<std::pair<int64_t, int64_t>> cells;
    for (const auto& [name, s] : columns)
        for (const auto& t : s.subtasks) cells.insert({t.seq_len, t.num_kv_pairs});
    size_t w = 9;
    for (const auto& [name, s] : columns) w = std::max(w, name.size() + 1);
    std::string out = title + "\n";
    auto it = std::back_inserter(out);
    fmt::format_to(it, "{:>5} {:>4}  ", "L", "N");
    for (const auto& [name, s] : columns) fmt::format_to(it, "{:>{}}", name, w);
    out += "\n";
    for (const auto& cell : cells) {
        const int64_t L = cell.first, N = cell.second; // (not a structured binding: lambdas capture them)
        fmt::format_to(it, "{:>5} {:>4}  ", L, N);
        for (const auto& [name, s] : columns) {
            auto t = std::find_if(s.subtasks.begin(), s.subtasks.end(),
                                  [&](const data::MqarSubtaskScore& x) { return x.seq_len == L && x.num_kv_pairs == N; });
            if (t == s.subtasks.end()) fmt::format_to(it, "{:>{}}", "--", w);
            else fmt::format_to(it, "{:>{}.2f}", 100 * t->query_acc(), w);
        }
        out += "\n";
    }
    fmt::format_to(it, "{:<12}", "mean");
    for (const auto& [name, s] : columns) fmt::format_to(it, "{:>{}.2f}", 100 * s.query_acc_mean, w);
    out += "\n";
    fmt::format_to(it, "{:<12}", "token acc");
    for (const auto& [name, s] : columns) fmt::format_to(it, "{:>{}.2f}", 100 * s.token_acc, w);
    out += "\n";
    return out;
}

nn::MambaLM& LoadedModel::mamba() const {
    auto* m = dynamic_cast<nn::MambaLM*>(model.get());
    MG_CHECK(m, "this needs a Mamba model, and the checkpoint's model.arch is {}", model ? model->arch() : "none");
    return *m;
}

LoadedModel load_model(const std::string& checkpoint, const std::string& device) {
    TrainConfig cfg = TrainConfig::from_json(checkpoint_config(checkpoint));
    cfg.device = device;
    cfg.validate();
    return load_model(checkpoint, cfg);
}

SafetensorsHeader check_checkpoint_header(const std::string& checkpoint, const TrainConfig& cfg, const char* what) {
    SafetensorsHeader h = is_model_folder(checkpoint) ? read_folder_header(read_model_folder(checkpoint))
                                                      : read_safetensors_header(checkpoint);
    std::map<std::string, const SafetensorsEntry*> by_name;
    for (const SafetensorsEntry& e : h.entries) by_name[e.name] = &e;
    std::set<std::string> params;
    for (const nn::ParameterSpec& p : model_parameter_specs(cfg)) {
        params.insert(p.name);
        auto it = by_name.find(p.name);
        MG_CHECK(it != by_name.end(), "{}: checkpoint '{}': parameter '{}' {} of its config is not in the file", what,
                 checkpoint, p.name, shape_str(p.shape));
        MG_CHECK(it->second->shape == p.shape && is_floating(it->second->dtype),
                 "{}: checkpoint '{}': tensor '{}' is {} {} in the file, its config says {} (a float type)", what,
                 checkpoint, p.name, shape_str(it->second->shape), dtype_name(it->second->dtype), shape_str(p.shape));
    }
    for (const SafetensorsEntry& e : h.entries)
        MG_CHECK(params.count(e.name) || e.name.starts_with("optimizer."),
                 "{}: checkpoint '{}': tensor '{}' {} is neither a parameter of its config nor optimizer state", what,
                 checkpoint, e.name, shape_str(e.shape));
    return h;
}

TrainerState load_parameters(const std::string& source, nn::LanguageModel& model) {
    if (!is_model_folder(source)) return load_checkpoint(source, model.named_parameters(), nullptr).state;
    MG_CHECK(model.arch() == "mamba", "model folder '{}' holds a Mamba, but the model is {}", source, model.arch());
    nn::StateDict dict = load_folder_weights(read_model_folder(source));
    const Options o = model.named_parameters().front().second.options();
    for (auto& [name, t] : dict) t = t.to(o.dtype).to(o.device);
    model.load_state_dict(dict);
    return {};
}

LoadedModel load_model(const std::string& checkpoint, const TrainConfig& cfg) {
    check_checkpoint_header(checkpoint, cfg, "load_model"); // before the model is allocated
    LoadedModel m;
    m.config = cfg;
    Generator gen(m.config.seed);
    m.model = make_model(m.config, Options{DType::f32, m.config.resolved_device()}, gen);
    m.state = load_parameters(checkpoint, *m.model);
    return m;
}

} // namespace mg::train
