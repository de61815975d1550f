// JPEG (libjpeg-turbo) and PNG (libpng) decoding to 8-bit RGB; see image.h for what matches PIL.
//
// Both libraries report fatal errors through a callback that must not return. Their defaults
// print and exit() (libjpeg) or longjmp to a jmp_buf the caller set (libpng); here each decode
// runs in a function that holds only C structs (no C++ object with a destructor lives in its
// frame), sets a jmp_buf, and turns a longjmp back into a returned message, which the C++ caller
// then throws as strata::Error. So no exception ever travels through C code, and no destructor
// is skipped by a longjmp. Output memory is a std::vector owned by the caller, grown through a
// noexcept helper.
#include "image.h"

#include <csetjmp>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <new>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "../core/error.h"
#include "mapped_file.h"

namespace strata::image {

Image::Image(int64_t h, int64_t w) : height(h), width(w) {
    STRATA_CHECK(h > 0 && w > 0 && h <= (int64_t{1} << 31) / w, "image size ", h, "x", w,
                 " is not a positive size that fits in memory");
    pixels.assign(static_cast<size_t>(h * w * 3), 0);
}

Image Image::from_rgb(const uint8_t* rgb, int64_t h, int64_t w) {
    STRATA_CHECK(rgb != nullptr, "Image::from_rgb: null pixel pointer");
    Image out(h, w);
    std::memcpy(out.pixels.data(), rgb, out.pixels.size());
    return out;
}

Format sniff(const unsigned char* data, size_t size) {
    static const unsigned char kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return Format::Jpeg;
    if (size >= 8 && std::memcmp(data, kPng, 8) == 0) return Format::Png;
    return Format::Unknown;
}

bool is_image_file(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    unsigned char head[8] = {};
    const size_t got = std::fread(head, 1, sizeof head, f);
    std::fclose(f);
    return sniff(head, got) != Format::Unknown;
}

namespace {

constexpr size_t kMessageSize = 256;

// Grows `out` to `size` bytes; false when the allocation fails (never throws).
bool grow(std::vector<uint8_t>* out, size_t size) noexcept {
    try {
        out->resize(size);
        return true;
    } catch (...) {
        return false;
    }
}

void copy_message(char* dst, const char* src) {
    std::snprintf(dst, kMessageSize, "%s", src);
}

// What a decode function reports: the size and pixel layout it produced, or a message.
struct Decoded {
    int64_t height = 0, width = 0;
    int channels = 0;  // 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA): what `pixels` holds
    char message[kMessageSize] = {};
};

// The pixel limit, as a message when exceeded (so both formats word it alike).
bool within_limit(int64_t w, int64_t h, int64_t max_pixels, char* message) {
    if (w <= 0 || h <= 0) {
        std::snprintf(message, kMessageSize, "the image has a zero size (%lldx%lld)", static_cast<long long>(w),
                      static_cast<long long>(h));
        return false;
    }
    if (w * h > max_pixels) {
        std::snprintf(message, kMessageSize,
                      "the image is %lldx%lld = %lld pixels, over the limit of %lld "
                      "(image::LoadOptions::max_pixels, PIL's decompression-bomb limit)",
                      static_cast<long long>(w), static_cast<long long>(h), static_cast<long long>(w * h),
                      static_cast<long long>(max_pixels));
        return false;
    }
    return true;
}

// ---- JPEG --------------------------------------------------------------------------------------
struct JpegError {
    jpeg_error_mgr pub;  // first: libjpeg sees a jpeg_error_mgr*
    jmp_buf jump;
    char message[kMessageSize];
};

[[noreturn]] void jpeg_on_error(j_common_ptr cinfo) {
    auto* err = reinterpret_cast<JpegError*>(cinfo->err);
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    std::snprintf(err->message, kMessageSize, "not a valid JPEG (%s)", text);
    std::longjmp(err->jump, 1);
}

// Warnings (level -1) are ignored as PIL ignores them ("extraneous bytes before marker"), except
// data ending early, which PIL refuses ("image file is truncated") and libjpeg would pad with gray.
void jpeg_on_message(j_common_ptr cinfo, int level) {
    if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        auto* err = reinterpret_cast<JpegError*>(cinfo->err);
        copy_message(err->message, "truncated JPEG data (the file ends before the image does)");
        std::longjmp(err->jump, 1);
    }
}

bool decode_jpeg(const unsigned char* data, size_t size, int64_t max_pixels, std::vector<uint8_t>* pixels,
                 Decoded* out) {
    jpeg_decompress_struct cinfo;
    JpegError err;
    std::memset(&cinfo, 0, sizeof cinfo);
    std::memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_on_error;
    err.pub.emit_message = jpeg_on_message;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        copy_message(out->message, err.message);
        return false;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
    jpeg_read_header(&cinfo, TRUE);
    if (!within_limit(cinfo.image_width, cinfo.image_height, max_pixels, err.message)) std::longjmp(err.jump, 1);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        copy_message(err.message, "CMYK JPEGs are not supported; convert the file to RGB");
        std::longjmp(err.jump, 1);
    }
    // Grayscale stays one channel (replicated below, as PIL's "L" -> "RGB"); everything else is
    // converted to RGB by libjpeg, as PIL asks it to.
    const bool gray = cinfo.jpeg_color_space == JCS_GRAYSCALE;
    cinfo.out_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    const size_t row = static_cast<size_t>(cinfo.output_width) * cinfo.output_components;
    if (!grow(pixels, row * cinfo.output_height)) {
        copy_message(err.message, "out of memory for the decoded pixels");
        std::longjmp(err.jump, 1);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW line = pixels->data() + row * cinfo.output_scanline;
        jpeg_read_scanlines(&cinfo, &line, 1);
    }
    jpeg_finish_decompress(&cinfo);
    out->width = cinfo.output_width;
    out->height = cinfo.output_height;
    out->channels = cinfo.output_components;
    jpeg_destroy_decompress(&cinfo);
    return true;
}

// ---- PNG ---------------------------------------------------------------------------------------
struct PngReader {
    const unsigned char* data;
    size_t size, offset;
    jmp_buf jump;
    char message[kMessageSize];
};

[[noreturn]] void png_on_error(png_structp png, png_const_charp text) {
    auto* r = static_cast<PngReader*>(png_get_error_ptr(png));
    if (r->message[0] == '\0') std::snprintf(r->message, kMessageSize, "not a valid PNG (%s)", text);
    std::longjmp(r->jump, 1);
}

void png_on_warning(png_structp, png_const_charp) {}  // PIL ignores what libpng warns about

void png_read_bytes(png_structp png, png_bytep dst, png_size_t n) {
    auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
    if (n > r->size - r->offset) {
        copy_message(r->message, "truncated PNG data (the file ends before the image does)");
        png_error(png, "truncated");
    }
    std::memcpy(dst, r->data + r->offset, n);
    r->offset += n;
}

bool decode_png(const unsigned char* data, size_t size, int64_t max_pixels, std::vector<uint8_t>* pixels,
                Decoded* out) {
    PngReader reader;
    std::memset(&reader, 0, sizeof reader);
    reader.data = data;
    reader.size = size;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, png_on_error, png_on_warning);
    if (!png) {
        copy_message(out->message, "out of memory starting the PNG reader");
        return false;
    }
    png_infop info = png_create_info_struct(png);
    png_bytep* volatile rows = nullptr;  // freed on every path
    if (!info || setjmp(reader.jump)) {
        copy_message(out->message, info ? reader.message : "out of memory starting the PNG reader");
        png_free(png, rows);
        png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
        return false;
    }
    png_set_read_fn(png, &reader, png_read_bytes);
    png_set_crc_action(png, PNG_CRC_DEFAULT, PNG_CRC_DEFAULT);  // a bad CRC is an error
    png_read_info(png, info);
    png_uint_32 w = 0, h = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &bit_depth, &color_type, &interlace, nullptr, nullptr);
    if (!within_limit(w, h, max_pixels, reader.message)) png_error(png, "limit");
    if (bit_depth == 16) {
        copy_message(reader.message, "16-bit PNGs are not supported (PIL has no 8-bit RGB reading of them to "
                                     "match); save the image with 8 bits per channel");
        png_error(png, "16-bit");
    }
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);  // may add alpha (tRNS): dropped below
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);  // x255, x85, x17
    if (interlace != PNG_INTERLACE_NONE) png_set_interlace_handling(png);
    png_read_update_info(png, info);
    const int channels = png_get_channels(png, info);
    const size_t row = png_get_rowbytes(png, info);
    if (row != static_cast<size_t>(w) * channels || !grow(pixels, row * h)) {
        copy_message(reader.message, row != static_cast<size_t>(w) * channels ? "unexpected PNG row layout"
                                                                               : "out of memory for the decoded pixels");
        png_error(png, "rows");
    }
    rows = static_cast<png_bytep*>(png_malloc(png, sizeof(png_bytep) * h));
    for (png_uint_32 y = 0; y < h; ++y) rows[y] = pixels->data() + row * y;
    png_read_image(png, rows);
    png_read_end(png, nullptr);
    png_free(png, rows);
    png_destroy_read_struct(&png, &info, nullptr);
    out->width = w;
    out->height = h;
    out->channels = channels;
    return true;
}

// ---- PNG writing -------------------------------------------------------------------------------
struct PngWriter {
    std::string* out;
    jmp_buf jump;
    char message[kMessageSize];
};

[[noreturn]] void png_on_write_error(png_structp png, png_const_charp text) {
    auto* w = static_cast<PngWriter*>(png_get_error_ptr(png));
    if (w->message[0] == '\0') std::snprintf(w->message, kMessageSize, "PNG encoding failed (%s)", text);
    std::longjmp(w->jump, 1);
}

// Appends to the caller's string; never throws (an allocation failure becomes a libpng error).
bool append(std::string* out, const unsigned char* data, size_t n) noexcept {
    try {
        out->append(reinterpret_cast<const char*>(data), n);
        return true;
    } catch (...) {
        return false;
    }
}

void png_write_bytes(png_structp png, png_bytep data, png_size_t n) {
    auto* w = static_cast<PngWriter*>(png_get_io_ptr(png));
    if (!append(w->out, data, n)) {
        copy_message(w->message, "out of memory for the encoded PNG");
        png_error(png, "out of memory");
    }
}

void png_flush_nothing(png_structp) {}

// Encodes into *out; false (and `message`) on failure. Holds only C objects (see the top).
bool encode_png_c(const uint8_t* pixels, png_uint_32 h, png_uint_32 w, int channels, std::string* out,
                  char* message) {
    PngWriter writer;
    std::memset(&writer, 0, sizeof writer);
    writer.out = out;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &writer, png_on_write_error, png_on_warning);
    if (!png) {
        copy_message(message, "out of memory starting the PNG writer");
        return false;
    }
    png_infop info = png_create_info_struct(png);
    if (!info || setjmp(writer.jump)) {
        copy_message(message, info ? writer.message : "out of memory starting the PNG writer");
        png_destroy_write_struct(&png, info ? &info : nullptr);
        return false;
    }
    png_set_write_fn(png, &writer, png_write_bytes, png_flush_nothing);
    png_set_IHDR(png, info, w, h, 8, channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    const size_t row = static_cast<size_t>(w) * static_cast<size_t>(channels);
    for (png_uint_32 y = 0; y < h; ++y) png_write_row(png, pixels + row * y);
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
    return true;
}

}  // namespace

Image decode(const unsigned char* data, size_t size, const std::string& name, const LoadOptions& options) {
    STRATA_CHECK(options.max_pixels > 0, name, ": image::LoadOptions::max_pixels must be positive");
    STRATA_CHECK(size > 0, name, ": the file is empty, not an image");
    const Format format = sniff(data, size);
    STRATA_CHECK(format != Format::Unknown, name, ": not a JPEG or PNG image (unrecognised first bytes)");
    std::vector<uint8_t> raw;
    Decoded d;
    const bool ok = format == Format::Jpeg ? decode_jpeg(data, size, options.max_pixels, &raw, &d)
                                           : decode_png(data, size, options.max_pixels, &raw, &d);
    STRATA_CHECK(ok, name, ": ", d.message);
    STRATA_CHECK(d.channels >= 1 && d.channels <= 4, name, ": unexpected channel count ", d.channels);
    if (d.channels == 3) {
        Image img;
        img.height = d.height;
        img.width = d.width;
        img.pixels = std::move(raw);
        return img;
    }
    // PIL's convert("RGB"): gray replicated, alpha dropped.
    Image img(d.height, d.width);
    const int64_t n = d.height * d.width;
    const uint8_t* src = raw.data();
    uint8_t* dst = img.data();
    for (int64_t i = 0; i < n; ++i, src += d.channels, dst += 3) {
        if (d.channels <= 2) {
            dst[0] = dst[1] = dst[2] = src[0];
        } else {
            dst[0] = src[0];
            dst[1] = src[1];
            dst[2] = src[2];
        }
    }
    return img;
}

Image load(const std::string& path, const LoadOptions& options) {
    const auto file = MappedFile::open(path);
    return decode(file->data(), file->size(), path, options);
}

}  // namespace strata::image

namespace strata::image {

std::string encode_png(const uint8_t* pixels, int64_t height, int64_t width, int channels) {
    STRATA_CHECK(pixels != nullptr, "encode_png: null pixel pointer");
    STRATA_CHECK(channels == 1 || channels == 3, "encode_png: expected 1 (grayscale) or 3 (RGB) channels, got ",
                 channels);
    const int64_t limit = 0x7fffffff;  // PNG's largest width and height
    STRATA_CHECK(height > 0 && width > 0 && height <= limit && width <= limit, "encode_png: image size ", height, "x",
                 width, " is not a PNG size (each side from 1 to 2147483647)");
    std::string out;
    char message[kMessageSize] = {};
    const bool ok = encode_png_c(pixels, static_cast<png_uint_32>(height), static_cast<png_uint_32>(width), channels,
                                 &out, message);
    STRATA_CHECK(ok, "encode_png: ", message);
    return out;
}

void save_png(const std::string& path, const uint8_t* pixels, int64_t height, int64_t width, int channels) {
    std::string bytes;
    try {
        bytes = encode_png(pixels, height, width, channels);
    } catch (const Error& e) {
        STRATA_FAIL(path, ": ", e.what());
    }
    write_file_atomically(path, bytes);
}

void save_png(const std::string& path, const Image& image) {
    STRATA_CHECK(image.pixels.size() == static_cast<size_t>(std::max<int64_t>(image.height, 0) *
                                                             std::max<int64_t>(image.width, 0) * 3) &&
                     !image.pixels.empty(),
                 path, ": the image holds ", image.pixels.size(), " bytes, not height * width * 3 = ", image.height,
                 " * ", image.width, " * 3");
    save_png(path, image.data(), image.height, image.width, 3);
}

}  // namespace strata::image
