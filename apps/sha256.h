// SHA-256 (FIPS 180-4), for the weight-file digest that batch mode records in its shards' metadata
// (the same hex string `sha256sum FILE` prints), and for the digest of each shard's input list.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace strata_cli {

class Sha256 {
public:
    Sha256();
    void update(const void* data, size_t size);
    // The digest as 64 lowercase hex digits; the object is spent afterwards.
    std::string hex_digest();

private:
    void block(const unsigned char* p);
    uint32_t h_[8];
    unsigned char buffer_[64];
    size_t buffered_ = 0;
    uint64_t length_ = 0;  // bytes
};

std::string sha256_hex(const std::string& bytes);
// The SHA-256 of a file's contents, read in chunks; throws strata::Error naming the path.
std::string sha256_file(const std::string& path);

}  // namespace strata_cli
