// fuzz/corpus.cpp: the input as an LM corpus file (task.corpus): read and bounded, split into
// train/valid/test, and cut into the windows evaluation scores and the batches training samples.
#include "data/text.h"
#include "fuzz/fuzz_input.h"

using namespace mg;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::string& path = fuzz::input_file(data, size);
    const double valid = size > 0 ? (data[0] % 5) * 0.1 : 0.1; // the fractions vary with the input
    fuzz::expect_clean(input, [&] {
        const data::TextCorpus c = data::load_text_corpus(path, valid, 0.1);
        const int64_t seq_len = 1 + (size % 17);
        const auto& train = c.splits.train;
        if (data::num_text_windows(int64_t(train.size()), seq_len) > 0)
            (void)data::text_windows(train, seq_len, 0, 1, Device::cpu());
        if (int64_t(train.size()) > seq_len + 1) (void)data::sample_text_batch(train, 2, seq_len, 42, 0, Device::cpu());
        (void)data::decode_bytes(train);
    });
    return 0;
}
