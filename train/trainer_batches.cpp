// train/trainer_batches.cpp: the Trainer's data (train/trainer.h): each step's batches (this
// rank's rows of them when data-parallel, train/distributed.h) and the scoring of a split. The
// loop itself is train/trainer.cpp.
#include <algorithm>

#include "data/mqar.h"
#include "data/text.h"
#include "tensor/check.h"
#include "train/evaluate.h"
#include "train/trainer.h"

namespace mg::train {

std::vector<std::vector<int64_t>> Trainer::epoch_plan(int64_t epoch) const {
    return data::epoch_plan(train_, cfg_.batch_size * cfg_.grad_accum_steps, cfg_.shuffle, cfg_.seed, epoch);
}

std::vector<Trainer::Batch> Trainer::next_batches(int64_t& labelled, int64_t& tokens) const {
    std::vector<Batch> out;
    labelled = tokens = 0;
    const int rank = comm_ ? comm_->rank() : 0, world = comm_ ? comm_->world() : 1;
    if (cfg_.task.is_lm()) {
        // micro-batch j of step s is draw s * grad_accum_steps + j of the (seed, draw) sampler;
        // every position is labelled
        const int64_t B = cfg_.batch_size, L = cfg_.task.seq_len;
        for (int64_t j = 0; j < cfg_.grad_accum_steps; ++j) {
            const uint64_t draw = uint64_t(state_.step * cfg_.grad_accum_steps + j);
            labelled += B * L;
            tokens += B * L;
            if (world == 1) {
                data::TextBatch b = data::sample_text_batch(text_.train, B, L, cfg_.seed, draw, device_);
                out.push_back({b.inputs, b.positions, b.targets});
                continue;
            }
            const RowRange rows = rank_slice(B, rank, world);
            if (rows.size() == 0) continue;
            const data::TextBatch b = data::sample_text_batch(text_.train, B, L, cfg_.seed, draw);
            std::vector<int32_t> pos(size_t(rows.size() * L));
            for (size_t i = 0; i < pos.size(); ++i) pos[i] = int32_t(i);
            out.push_back({b.inputs.narrow(0, rows.lo, rows.size()).contiguous().to(device_),
                           Tensor::from_vector(pos, {rows.size() * L}, {DType::i32, device_}),
                           b.targets.narrow(0, rows.lo * L, rows.size() * L).contiguous().to(device_)});
        }
        return out;
    }
    // the step's examples (plan_[cursor]) in micro-batches of batch_size
    const std::vector<int64_t>& idx = plan_[size_t(state_.cursor)];
    for (size_t s = 0; s < idx.size(); s += size_t(cfg_.batch_size)) {
        const size_t e = std::min(idx.size(), s + size_t(cfg_.batch_size));
        for (size_t i = s; i < e; ++i) {
            const data::MqarExample& x = train_[size_t(idx[i])];
            tokens += x.seq_len;
            labelled += int64_t(std::count_if(x.labels.begin(), x.labels.end(), [](int32_t l) { return l != data::kIgnore; }));
        }
        const RowRange rows = rank_slice(int64_t(e - s), rank, world);
        if (rows.size() == 0) continue;
        data::MqarBatch b = data::make_batch(
            train_, std::vector<int64_t>(idx.begin() + int64_t(s) + rows.lo, idx.begin() + int64_t(s) + rows.hi), device_);
        out.push_back({b.inputs, b.positions, b.targets});
    }
    return out;
}

EvalResult Trainer::evaluate_lm_split(data::Split split) const {
    MG_CHECK(cfg_.task.is_lm(), "Trainer::evaluate_lm_split: the task is MQAR, not lm");
    const std::vector<int32_t>& tokens = split == data::Split::Train   ? text_.train
                                         : split == data::Split::Valid ? text_.valid
                                                                       : text_.test;
    return evaluate_lm(*model_, tokens, cfg_.task.seq_len, cfg_.batch_size, cfg_.task.eval_batches, tokenizer_.get(),
                       comm_);
}

EvalResult Trainer::evaluate(data::MqarVariant variant, data::Split split) const {
    if (variant == cfg_.task.variant && split == data::Split::Valid)
        return evaluate_mqar(*model_, valid_, cfg_.batch_size, comm_);
    const int64_t n = split == data::Split::Train  ? cfg_.task.train_examples
                      : split == data::Split::Valid ? cfg_.task.valid_examples
                                                    : cfg_.task.test_examples;
    return evaluate_mqar(*model_, cfg_.task.generate(variant, split, n).examples, cfg_.batch_size, comm_);
}

} // namespace mg::train
