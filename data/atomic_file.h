// data/atomic_file.h: files written atomically (DESIGN "Fail loudly, lose nothing"): every file the
// program writes (checkpoints, configs, metrics rewrites, plots, datasets) goes through here.
#pragma once
#include <string>
#include <string_view>

namespace mg::data {

// A file that appears at `path` complete or not at all: writes go to a temp file in the same
// directory; commit() fsyncs it, renames it over `path` and fsyncs the directory. Destroyed
// without commit(), the temp file is removed and `path` is untouched. Failures throw mg::Error
// naming the path and the failing call.
class AtomicFile {
public:
    explicit AtomicFile(std::string path);
    ~AtomicFile();
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;
    void write(std::string_view bytes);
    void commit();

private:
    [[noreturn]] void fail(const char* call, const std::string& what);
    std::string path_, tmp_;
    int fd_ = -1;
};

// AtomicFile(path), write(content), commit().
void write_file_atomic(const std::string& path, std::string_view content);

// Removes the temp files that writes cut short (kill -9, a power loss) left in `dir`:
// "<name>.tmp.<pid>" whose process is gone (or is this one, which has no write in flight when it
// calls this). A live process's temp file is left alone. Returns how many were removed; a
// missing directory removes none.
int remove_stale_temp_files(const std::string& dir);

} // namespace mg::data
