// train/process.cpp: see train/process.h.
#include "train/process.h"

#include <fcntl.h>
#include <spawn.h>

#include <cstring>
#include <filesystem>

#include "tensor/check.h"

extern char** environ;

namespace mg::train {

std::string self_program() {
    std::error_code ec;
    const std::filesystem::path p = std::filesystem::read_symlink("/proc/self/exe", ec);
    MG_CHECK(!ec, "cannot find this program's path (/proc/self/exe): {}", ec.message());
    return p.string();
}

pid_t spawn_logged(const std::string& program, const std::vector<std::string>& args, const std::string& log,
                   bool append, bool own_group) {
    return spawn_process(program, args, SpawnOptions{log, append, own_group, {}});
}

pid_t spawn_process(const std::string& program, const std::vector<std::string>& args, const SpawnOptions& o) {
    std::vector<std::string> all = {program};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    // the environment: this process's, less the names o.env sets, then o.env
    std::vector<std::string> env_s;
    for (char** e = environ; *e; ++e) {
        const std::string kv = *e;
        bool replaced = false;
        for (const auto& [k, v] : o.env) replaced = replaced || kv.rfind(k + "=", 0) == 0;
        if (!replaced) env_s.push_back(kv);
    }
    for (const auto& [k, v] : o.env) env_s.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (std::string& kv : env_s) envp.push_back(kv.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (!o.log.empty()) {
        posix_spawn_file_actions_addopen(&fa, 1, o.log.c_str(), O_WRONLY | O_CREAT | (o.append ? O_APPEND : O_TRUNC),
                                         0644);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
    }
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    if (o.own_group) {
        posix_spawnattr_setpgroup(&attr, 0);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    }
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, program.c_str(), &fa, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    MG_CHECK(rc == 0, "cannot start '{}': {}", program, std::strerror(rc));
    return pid;
}

} // namespace mg::train
