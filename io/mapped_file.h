// A private (copy-on-write) memory map of a whole file (POSIX mmap). Tensors loaded from a file
// borrow its pages and keep the map alive through a shared_ptr, so loading copies nothing.
//
// A private map still shows the file's current contents for every page the process has not
// written to: a file rewritten in place (`cp new.safetensors w.safetensors`) changes those
// bytes, and one truncated makes reading them a SIGBUS. So the map keeps the file open and
// records its size and modification time; check() (a StorageSource, run before any tensor's
// bytes are read) fails with an Error naming the file once either has changed. A file replaced
// by a rename (a new inode) does not affect the map: it keeps the old file.
#pragma once
#include <strata/export.h>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../core/tensor.h"

namespace strata {

class STRATA_API MappedFile : public StorageSource {
public:
    // Throws Error naming the path when the file is missing, unreadable or not a regular file (a
    // directory, a FIFO, a device, a socket: refused before opening, so a FIFO never blocks).
    static std::shared_ptr<const MappedFile> open(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const unsigned char* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }
    // Throws Error when the file's size or modification time is no longer what was mapped.
    void check() const override;

private:
    MappedFile() = default;
    const unsigned char* data_ = nullptr;
    size_t size_ = 0;
    std::string path_;
    int fd_ = -1;
    long long mtime_ns_ = 0;
};

// Drops from this process's memory the pages of [data, data + size) that are clean pages of a
// file mapping (weights shared from a MappedFile that a kernel has packed, say): they leave the
// resident set and are read back from the file if touched again. Pages written to (private
// copy-on-write copies), anonymous memory and pages partly outside the range are kept, so the
// contents seen never change. Page states come from /proc/self/pagemap (Linux); where that is
// unavailable nothing is dropped. Returns the bytes dropped. Not concurrent with writes to the
// range.
STRATA_API size_t release_file_pages(const void* data, size_t size);

// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a
// failure never leaves a partial file behind. The temporary has an unpredictable name
// (PATH.tmp-<64 random bits>) and is created with O_CREAT | O_EXCL | O_NOFOLLOW, so a file or
// symbolic link planted beside the output cannot redirect the write. Refuses what
// check_writable refuses. Throws Error naming the path.
STRATA_API void write_file_atomically(const std::string& path, const std::string& bytes);
// The same for a file made of several byte ranges, written in order (a header, then tensors' data
// straight from their memory): nothing is joined in memory first.
STRATA_API void write_file_atomically(const std::string& path,
                                      const std::vector<std::pair<const void*, size_t>>& pieces);

// Throws the Error a write to `path` would meet, without writing anything: `path` is empty, a
// directory or another existing file that is not a regular file (a device, a FIFO, a socket;
// followed through symbolic links), or its folder is missing, not a folder or not writable.
// Lets a long run fail before it starts.
STRATA_API void check_writable(const std::string& path);

// Whether both paths exist and name the same file (same device and inode: through symbolic
// links and hard links too). Used to refuse an output that would replace an input.
STRATA_API bool same_file(const std::string& a, const std::string& b);

// Opt-in, for programs (the CLI calls it first thing): installs handlers for SIGINT, SIGTERM and
// SIGHUP that remove the temporary files write_file_atomically is writing at that moment, then
// let the signal take its previous course (by default, ending the process). Signals that are
// ignored (SIG_IGN, e.g. under nohup) are left alone. Idempotent.
STRATA_API void remove_temporary_files_on_signals();

}  // namespace strata
