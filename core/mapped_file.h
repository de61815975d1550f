// A private (copy-on-write) memory map of a whole file (POSIX mmap); the file never changes. Tensors loaded from a file borrow its
// pages and keep the map alive through a shared_ptr, so loading copies nothing.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

namespace strata {

class MappedFile {
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

// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a
// failure never leaves a partial file behind. Throws Error naming the path.
void write_file_atomically(const std::string& path, const std::string& bytes);

// Throws the Error a write to `path` would meet, without writing anything: `path` is a directory,
// or its folder is missing, not a folder or not writable. Lets a long run fail before it starts.
void check_writable(const std::string& path);

}  // namespace strata
