// fuzz/safetensors.cpp: the input as a checkpoint file, read the ways the program reads one:
// load_safetensors (header, ranges, checksum), the header alone (`mambagrad info`), the trainer
// state in its metadata (--resume), and a whole model (eval, generate: the stored config, the
// header checked against it before allocation, the data's checksum and finiteness).
#include "fuzz/fuzz_input.h"
#include "train/checkpoint.h"
#include "train/evaluate.h"

using namespace mg;
using namespace mg::train;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::string& path = fuzz::input_file(data, size);
    fuzz::expect_clean(input, [&] { (void)load_safetensors(path); });
    fuzz::expect_clean(input, [&] {
        const SafetensorsHeader h = read_safetensors_header(path);
        (void)read_trainer_state(h.metadata, path);
    });
    fuzz::expect_clean(input, [&] { (void)load_model(path, "cpu"); });
    return 0;
}
