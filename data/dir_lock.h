// data/dir_lock.h: one process per directory. A run directory is one run's: two trainings on one
// directory would delete each other's log and overwrite each other's checkpoints.
//
// DirLock takes an exclusive advisory lock (flock) on <dir>/.lock and writes its process id there.
// A second DirLock on the same directory, from this process or another, throws an mg::Error
// naming the directory and the holder's process id. The kernel drops the lock when its holder
// exits in any way, a crash or kill -9 included, so a lock cannot outlive its process; a .lock
// file that still names a process (one that ended without releasing it) is reported by
// previous_holder() and then taken. Released (destroyed), the file is emptied, not removed
// (removing a locked file would let a third process lock a new file of the same name).
#pragma once
#include <string>

namespace mg::data {

class DirLock {
public:
    DirLock() = default;
    // `dir` must exist. `what` names the directory in messages ("run directory").
    explicit DirLock(const std::string& dir, const std::string& what = "run directory");
    ~DirLock();
    DirLock(DirLock&& o) noexcept;
    DirLock& operator=(DirLock&& o) noexcept;
    DirLock(const DirLock&) = delete;
    DirLock& operator=(const DirLock&) = delete;

    bool held() const { return fd_ >= 0; }
    // The process id a previous holder left in the lock file without releasing it (it crashed or
    // was killed), or 0.
    long previous_holder() const { return previous_; }

private:
    void release();
    int fd_ = -1;
    std::string path_;
    long previous_ = 0;
};

} // namespace mg::data
