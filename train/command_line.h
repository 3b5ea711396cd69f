// train/command_line.h: the one command-line parser of every `mambagrad` command, and their
// --help, all of one shape:
//
//   usage: mambagrad eval --checkpoint FILE [options]
//
//   Scores a checkpoint: ...
//
//   options:
//     --checkpoint FILE     a checkpoint written by `mambagrad train` (required)
//     --examples N          examples per cell (default: the run's)
//   config keys (--KEY VALUE or --KEY=VALUE; VALUE is read as JSON when it parses, else as text):
//     --lr NUM              0.01     the peak learning rate
//
// Options take their value as `--name VALUE` or `--name=VALUE`; flags take none. Commands that
// take a training config accept every config key of `mambagrad train` (config_key_docs(), one per
// line in --help with its type, default and meaning) and hand them to parse_train_args in the
// order given. Every mistake is an mg::Error naming the command and the option, which the
// program prints as one `error:` line.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mg::train {

class CommandLine {
public:
    // `usage`: the text after "usage: mambagrad "; `about`: what the command does (wrapped text).
    CommandLine(std::string command, std::string usage, std::string about);

    // --name VALUE options; `meta` names the value in --help (FILE, N, NUM, TEXT); `def` is the
    // default shown ("" for none: required options and options whose default is described).
    CommandLine& option(const std::string& name, const std::string& meta, std::string& out, const std::string& help,
                        const std::string& def = "");
    CommandLine& option(const std::string& name, const std::string& meta, int64_t& out, const std::string& help,
                        const std::string& def = "");
    CommandLine& option(const std::string& name, const std::string& meta, uint64_t& out, const std::string& help,
                        const std::string& def = "");
    CommandLine& option(const std::string& name, const std::string& meta, double& out, const std::string& help,
                        const std::string& def = "");
    CommandLine& flag(const std::string& name, bool& out, const std::string& help);
    CommandLine& positional(const std::string& meta, std::string& out, const std::string& help);
    // One or more positionals (declared last): every argument left after the single ones.
    CommandLine& positionals(const std::string& meta, std::vector<std::string>& out, const std::string& help);
    // Marks an option as required (an error names it when it is missing).
    CommandLine& required(const std::string& name);
    // Accepts --config FILE and every config key of `mambagrad train` (or, with prefix "task.",
    // the task keys only, given without the prefix), collected as "--key", "value" pairs into out.
    CommandLine& config_keys(std::vector<std::string>& out, const std::string& prefix = "");

    // Parses the arguments after the command. Returns false when --help was asked for (the help
    // is then printed to stdout).
    bool parse(const std::vector<std::string>& args);
    bool given(const std::string& name) const; // the option (or positional meta) was on the line
    std::string help() const;

private:
    struct Option {
        std::string name, meta, help, def;
        enum Kind { Text, Int, Uint, Num, Flag, Positional, Positionals } kind;
        void* out;
        bool required = false, seen = false;
    };
    CommandLine& add(Option o);
    Option* find(const std::string& name);
    void set(Option& o, const std::string& value);

    std::string command_, usage_, about_;
    std::vector<Option> options_;
    std::vector<std::string>* config_out_ = nullptr;
    std::string config_prefix_;
};

// One key of the training config as --help lists it: the dotted key, the JSON type of its value,
// and what it means. Every key TrainConfig reads has one entry (a test holds them in step).
struct ConfigKeyDoc {
    std::string key, type, meaning;
};
const std::vector<ConfigKeyDoc>& config_key_docs();

} // namespace mg::train
