#pragma once
// Decoding one image file into 8-bit 3-channel pixels, for real-world folders: every failure is a
// typed reason, never a crash. OpenCV-only (include from library sources and tests, not the CLI).
#include <opencv2/core.hpp>

#include <cstdint>
#include <functional>
#include <string>

namespace tltrain::data {

/// Why a file could not be used. Each has a fixed human wording (to_string) for reports.
enum class DecodeFailure {
  None,
  Unreadable,  ///< the file could not be opened or read
  Empty,       ///< zero bytes
  NotAnImage,  ///< the content is no image format we decode (e.g. text with a .jpg name)
  Truncated,   ///< a JPEG without its end-of-image marker: the rest of the file is missing
  TooLarge,    ///< more pixels than max_pixels (decompression-bomb guard)
  Corrupt,     ///< the decoder rejected it
};
const char* to_string(DecodeFailure f);

struct DecodeOptions {
  int64_t max_pixels = 89478485;  ///< refuse larger images before decoding them (PIL's default)
  /// Reduced decode: when > 0 the image may be decoded at 1/2, 1/4 or 1/8 scale (libjpeg DCT
  /// scaling for JPEG) as long as its shorter side stays >= this.
  int64_t min_short_side = 0;
};

struct DecodeResult {
  cv::Mat image;          ///< CV_8UC3, BGR (OpenCV order), EXIF orientation applied; empty on failure
  DecodeFailure failure = DecodeFailure::None;
  std::string detail;     ///< e.g. "12000x9000 = 108000000 pixels > max_pixels 89478485"
  int full_width = 0, full_height = 0;  ///< size before any reduced decode (0 when unknown)
  int reduction = 1;      ///< 1, 2, 4 or 8
  bool region = false;    ///< only a region was decoded (decode_image_region's fast path)
  bool ok() const { return failure == DecodeFailure::None; }
  std::string reason() const;  ///< to_string(failure) plus the detail
};

/// Image format and size read from the header only, without decoding.
struct ImageHeader {
  std::string format;  ///< "jpeg" "png" "bmp" "webp" "tiff", or "" when unrecognized
  int width = 0, height = 0;  ///< 0 when the header does not say (or could not be parsed)
  bool complete = true;  ///< JPEG: an end-of-image marker follows the first scan; PNG: whole chunks up to IEND
};
ImageHeader probe_header(const unsigned char* data, size_t size);

/// The DCT scaling (1, 2, 4 or 8) decode_image uses for an image with header H: the largest that
/// keeps the shorter side >= opts.min_short_side, for JPEGs only.
int reduced_decode_factor(const ImageHeader& h, const DecodeOptions& opts);

/// Decodes encoded bytes. Grayscale, alpha (dropped, as PIL's convert("RGB")), 16-bit and CMYK
/// inputs all come out as 8-bit BGR.
DecodeResult decode_image(const std::string& bytes, const DecodeOptions& opts = {});

/// Decodes only the region CHOOSE_ROI(full width, full height) picks: for JPEGs (no EXIF rotation,
/// YCbCr/RGB) rows and columns outside it are not reconstructed, with the same pixels as a full
/// decode; other files are decoded fully and cropped. A random crop decodes ~half the image. A
/// JPEG large enough for reduced decoding (opts.min_short_side) is instead decoded in full at
/// reduced scale and the region, scaled to it, cut out: that is the cheaper of the two there.
DecodeResult decode_image_region(const std::string& bytes, const std::function<cv::Rect(int, int)>& choose_roi,
                                 const DecodeOptions& opts = {});

/// Whole file into BYTES; false when it cannot be read.
bool read_bytes(const std::string& path, std::string& bytes);

/// Reads PATH and decodes it.
DecodeResult decode_file(const std::string& path, const DecodeOptions& opts = {});

}  // namespace tltrain::data
