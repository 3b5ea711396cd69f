// train/process.h: starting this program as a child process, its output in a log file: what the
// sweep runner does for each run (train/sweep.h), and the tests that drive real processes.
#pragma once
#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

namespace mg::train {

// This process's executable (/proc/self/exe); throws mg::Error when it cannot be read.
std::string self_program();

// Starts `program args...`: stdout and stderr into `log` when it is not "" (appended to when
// `append`, else truncated), else the parent's; with `own_group` a process group of its own; `env`
// set (or replaced) in the child's environment, the rest inherited. Returns the child's pid;
// throws mg::Error naming the program when it cannot start.
struct SpawnOptions {
    std::string log;
    bool append = false, own_group = false;
    std::vector<std::pair<std::string, std::string>> env;
};
pid_t spawn_process(const std::string& program, const std::vector<std::string>& args, const SpawnOptions& o);

// Starts `program args...` with stdout and stderr both going to `log` (appended to when
// `append`, else truncated). With `own_group` the child leads a process group of its own, so a
// terminal's Ctrl-C reaches the parent only (which may pass it on). Returns the child's pid;
// throws mg::Error naming the program when it cannot start.
pid_t spawn_logged(const std::string& program, const std::vector<std::string>& args, const std::string& log,
                   bool append, bool own_group);

} // namespace mg::train
