// fuzz/config.cpp: the input as a train config file (`mambagrad train --config FILE`), as a model
// config's JSON text, and, split at its first newline, as one `--key value` flag: every way a
// config reaches TrainConfig::from_json and nn::MambaConfig::from_json.
#include "fuzz/fuzz_input.h"
#include "nn/config.h"
#include "train/config.h"

using namespace mg;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::string& path = fuzz::input_file(data, size);
    fuzz::expect_clean(input, [&] { (void)train::parse_train_args({"--config", path}); });
    const std::string text(input);
    fuzz::expect_clean(input, [&] { (void)nn::MambaConfig::parse(text); });
    const size_t nl = text.find('\n');
    const std::string key = text.substr(0, nl);
    // --help prints the help; --config and --resume name files (the cases above and the
    // safetensors target cover what they read)
    if (nl != std::string::npos && key != "help" && !key.starts_with("config") && !key.starts_with("resume"))
        fuzz::expect_clean(input, [&] { (void)train::parse_train_args({"--" + key, text.substr(nl + 1)}); });
    return 0;
}
