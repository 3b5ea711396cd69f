// fuzz/jsonl.cpp: the input as the JSONL files the program reads: MQAR examples (`mambagrad data`'s
// format, data::load_jsonl), and a run's metrics.jsonl, both as `mambagrad plot` charts it and as
// a resume cuts it back to the checkpoint's step.
#include "data/mqar.h"
#include "fuzz/fuzz_input.h"
#include "train/metrics.h"
#include "train/plot.h"

using namespace mg;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::string& path = fuzz::input_file(data, size);
    fuzz::expect_clean(input, [&] { (void)data::load_jsonl(path); });
    const std::string text(input);
    fuzz::expect_clean(input, [&] { (void)train::run_charts(text); });
    fuzz::expect_clean(input, [&] { (void)train::metrics_kept_on_resume(text, 7, -1); });
    fuzz::expect_clean(input, [&] { (void)train::metrics_kept_on_resume(text, 7, 3); });
    return 0;
}
