// fuzz/metadata.cpp: the input as the JSON strings a checkpoint's __metadata__ holds, each read by
// its own reader: "mambagrad.trainer" (read_trainer_state, for --resume), "mambagrad.optimizer"
// (AdamW::load_state) and "mambagrad.config" (checkpoint_config, then TrainConfig::from_json, as
// eval and --resume read it).
#include "fuzz/fuzz_input.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/optim.h"

using namespace mg;
using namespace mg::train;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::string text(input);
    const Metadata metadata = {{"mambagrad.trainer", text}, {kCheckpointConfigKey, text}, {"mambagrad.optimizer", text}};
    fuzz::expect_clean(input, [&] { (void)read_trainer_state(metadata, "fuzz.safetensors"); });
    fuzz::expect_clean(input, [&] { (void)TrainConfig::from_json(checkpoint_config(metadata, "fuzz.safetensors")); });
    fuzz::expect_clean(input, [&] {
        static const Tensor w = Tensor::zeros({3});
        AdamW opt({{"w", w}});
        opt.load_state({{"optimizer.exp_avg.w", w}, {"optimizer.exp_avg_sq.w", w}}, text);
    });
    return 0;
}
