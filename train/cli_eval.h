// train/cli_eval.h: the `mambagrad eval` and `mambagrad generate` commands (train/cli.cpp's command
// table calls them): scoring a checkpoint (MQAR variants, a JSONL file, an LM split) and sampling
// text from a language model. Each parses its own options (train/command_line.h) and throws
// mg::Error on bad input (the program prints one `error:` line and exits 2).
#pragma once

#include <string>
#include <vector>

namespace mg::train {

// `mambagrad eval ARGS...`; returns the exit status (0; --help: 0 after printing).
int cmd_eval(const std::vector<std::string>& args);
// `mambagrad generate ARGS...`; the same.
int cmd_generate(const std::vector<std::string>& args);

} // namespace mg::train
