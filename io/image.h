// Image files as inputs: JPEG (libjpeg-turbo) and PNG (libpng) decoded to 8-bit RGB, the way
// PIL's `Image.open(path).convert("RGB")` sees them, so that torchvision's transforms
// (io/transforms.h) start from the same pixels as in Python:
//   - JPEG: libjpeg-turbo with its defaults (the integer "islow" IDCT, fancy upsampling), as PIL
//     decodes; grayscale JPEGs are replicated to R = G = B (PIL's "L" -> "RGB"). CMYK/YCCK JPEGs
//     are refused.
//   - PNG: every 8-bit colour type and 1/2/4-bit grayscale and palette images; grayscale is
//     replicated, an alpha channel is dropped (not composited: PIL's "RGBA"/"LA" -> "RGB"), a
//     palette is looked up (its transparency dropped, PIL's "P" -> "RGB"). Gamma, colour profiles
//     and other colour chunks are ignored, as PIL ignores them. 16-bit PNGs are refused (PIL
//     opens 16-bit grayscale as 32-bit integers that convert("RGB") clips to 255: no useful
//     reference to match).
//   - EXIF orientation is ignored, as PIL's Image.open ignores it (torchvision too): a portrait
//     photo stored sideways with an orientation tag comes out sideways, exactly as in Python.
//     Apply PIL.ImageOps.exif_transpose's rotation yourself if you want it.
// The format is told by the file's first bytes, never by its name. Every failure throws
// strata::Error naming the file and the reason (not an image, truncated data, too large, ...);
// libjpeg's and libpng's own error handlers (which print and exit or abort) are replaced.
#pragma once
#include <strata/export.h>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace strata::image {

// An 8-bit RGB image: height x width pixels, row-major, R G B interleaved (PIL's "RGB" mode,
// numpy.asarray(img) of shape [H, W, 3]).
struct STRATA_API Image {
    int64_t height = 0, width = 0;
    std::vector<uint8_t> pixels;  // height * width * 3 bytes

    Image() = default;
    Image(int64_t height, int64_t width);  // zero pixels; throws Error on a non-positive size
    // A copy of caller pixels: `rgb` holds height * width * 3 bytes, interleaved RGB, row-major.
    static Image from_rgb(const uint8_t* rgb, int64_t height, int64_t width);

    uint8_t* data() { return pixels.data(); }
    const uint8_t* data() const { return pixels.data(); }
    const uint8_t* at(int64_t y, int64_t x) const { return pixels.data() + (y * width + x) * 3; }
};

enum class Format { Unknown, Jpeg, Png };

// The format the first bytes announce (JPEG: FF D8 FF, PNG: its 8-byte signature).
STRATA_API Format sniff(const unsigned char* data, size_t size);
// Whether the file at `path` starts like a JPEG or PNG (false for unreadable files).
STRATA_API bool is_image_file(const std::string& path);

struct LoadOptions {
    // Images with more pixels are refused before any pixel memory is allocated: PIL's
    // decompression-bomb limit (Image.MAX_IMAGE_PIXELS = 89478485; PIL refuses above twice it).
    int64_t max_pixels = 2 * int64_t{89478485};
};

// Decodes the JPEG or PNG file at `path` to RGB. Throws Error "<path>: <reason>".
STRATA_API Image load(const std::string& path, const LoadOptions& options = {});
// The same from bytes in memory; `name` is used in error messages.
STRATA_API Image decode(const unsigned char* data, size_t size, const std::string& name,
                        const LoadOptions& options = {});

// ---- Writing PNG ---------------------------------------------------------------------------
// 8-bit PNG (libpng, default compression, no interlacing, no colour chunks): `channels` 1
// (grayscale, PNG colour type 0) or 3 (RGB, colour type 2); `pixels` holds height * width *
// channels bytes, row-major, channels interleaved. Throws Error on a null pointer, a
// non-positive size, a width or height over PNG's limit of 2^31 - 1, or a channel count other
// than 1 or 3.
STRATA_API std::string encode_png(const uint8_t* pixels, int64_t height, int64_t width, int channels);
// Writes encode_png's bytes to `path` atomically (a temporary file in the same folder, then a
// rename: write_file_atomically), so a failure leaves no partial file. Throws Error "<path>: ...".
STRATA_API void save_png(const std::string& path, const uint8_t* pixels, int64_t height, int64_t width,
                         int channels);
// An RGB Image as a PNG (colour type 2).
STRATA_API void save_png(const std::string& path, const Image& image);

}  // namespace strata::image
