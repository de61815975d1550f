// A private (copy-on-write) memory map of a whole file (POSIX mmap); the file never changes. Tensors loaded from a file borrow its
// pages and keep the map alive through a shared_ptr, so loading copies nothing.
#pragma once
#include <strata/export.h>
#include <cstddef>
#include <memory>
#include <string>

namespace strata {

class STRATA_API MappedFile {
public:
    // Throws Error naming the path when the file is missing, unreadable or a directory.
    static std::shared_ptr<const MappedFile> open(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const unsigned char* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    MappedFile() = default;
    const unsigned char* data_ = nullptr;
    size_t size_ = 0;
    std::string path_;
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
// failure never leaves a partial file behind. Throws Error naming the path.
STRATA_API void write_file_atomically(const std::string& path, const std::string& bytes);

// Throws the Error a write to `path` would meet, without writing anything: `path` is a directory,
// or its folder is missing, not a folder or not writable. Lets a long run fail before it starts.
STRATA_API void check_writable(const std::string& path);

}  // namespace strata
