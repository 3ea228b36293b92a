#include "tltrain/data/image_io.h"

#include <algorithm>
#include <cstring>
#include <csetjmp>
#include <cstdio>
#include <fstream>
#include <optional>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <jpeglib.h>

#include "tltrain/core/error.h"

namespace tltrain::data {

const char* to_string(DecodeFailure f) {
  switch (f) {
    case DecodeFailure::None: return "ok";
    case DecodeFailure::Unreadable: return "cannot be read";
    case DecodeFailure::Empty: return "empty file (0 bytes)";
    case DecodeFailure::NotAnImage: return "not an image (unrecognized content)";
    case DecodeFailure::Truncated: return "truncated (the end of the image is missing)";
    case DecodeFailure::TooLarge: return "too many pixels (decompression-bomb guard, data.max_pixels)";
    case DecodeFailure::Corrupt: return "corrupt image (the decoder rejected it)";
  }
  return "?";
}

std::string DecodeResult::reason() const { return detail.empty() ? to_string(failure) : std::string(to_string(failure)) + ": " + detail; }

namespace {

uint32_t be16(const unsigned char* p) { return (uint32_t(p[0]) << 8) | p[1]; }
uint32_t be32(const unsigned char* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3]; }
uint32_t le16(const unsigned char* p) { return uint32_t(p[0]) | (uint32_t(p[1]) << 8); }
uint32_t le32(const unsigned char* p) { return le16(p) | (le16(p + 2) << 16); }

/// Orientation (1..8) from a TIFF-structured EXIF block; 1 when absent or malformed.
int tiff_orientation(const unsigned char* t, size_t n) {
  if (n < 8) return 1;
  bool le = t[0] == 'I' && t[1] == 'I';
  if (!le && !(t[0] == 'M' && t[1] == 'M')) return 1;
  auto u16 = [&](size_t off) { return le ? le16(t + off) : be16(t + off); };
  auto u32 = [&](size_t off) { return le ? le32(t + off) : be32(t + off); };
  size_t ifd = u32(4);
  if (ifd + 2 > n) return 1;
  size_t count = u16(ifd);
  for (size_t i = 0; i < count; ++i) {
    size_t e = ifd + 2 + 12 * i;
    if (e + 12 > n) break;
    if (u16(e) == 0x0112 && u16(e + 2) == 3) {
      int o = static_cast<int>(u16(e + 8));
      return o >= 1 && o <= 8 ? o : 1;
    }
  }
  return 1;
}

/// Walks JPEG segments: size from SOFn, EXIF orientation from APP1, completeness from the scan.
void probe_jpeg(const unsigned char* d, size_t n, ImageHeader& h, int* orientation) {
  size_t i = 2;
  while (i + 4 <= n) {
    if (d[i] != 0xFF) return;  // lost sync: leave what we have, the decoder decides
    unsigned char m = d[i + 1];
    if (m == 0xFF) { ++i; continue; }  // fill bytes
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { i += 2; continue; }
    if (m == 0xD9) return;
    size_t len = be16(d + i + 2);
    size_t seg = i + 4;
    if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC && seg + 5 <= n) {
      h.height = static_cast<int>(be16(d + seg + 1));
      h.width = static_cast<int>(be16(d + seg + 3));
    } else if (m == 0xE1 && orientation && len >= 8 && seg + 6 <= n && std::memcmp(d + seg, "Exif\0\0", 6) == 0) {
      size_t end = std::min(n, i + 2 + len);
      *orientation = tiff_orientation(d + seg + 6, end - (seg + 6));
    } else if (m == 0xDA) {
      // Entropy-coded data never contains FF D9 (0xFF is stuffed), so any FF D9 after the first
      // scan's header is the image's end marker; without one the file was cut short. Searched
      // from the end, where it normally is: walking the whole scan forward cost 0.17 ms of a
      // served request's 8.7 (perf, bench/serve_bench.sh's image).
      h.complete = false;
      const size_t from = i + 2 + len;
      for (size_t k = n; k > from + 1;) {  // candidates start in [from, k - 1)
        const void* ff = ::memrchr(d + from, 0xFF, k - 1 - from);
        if (!ff) break;
        k = static_cast<size_t>(static_cast<const unsigned char*>(ff) - d);
        if (d[k + 1] == 0xD9) { h.complete = true; break; }
      }
      return;
    }
    i += 2 + len;
  }
  h.complete = false;  // ran out of bytes before the first scan
}

/// A PNG's chunk layout: whether it ends in IEND, and where its iCCP chunks are.
struct PngChunks {
  bool complete = false;                      ///< every chunk whole, up to IEND
  std::vector<std::pair<size_t, size_t>> iccp;  ///< [begin, end) of each iCCP chunk
};
PngChunks png_chunks(const unsigned char* d, size_t n) {
  PngChunks c;
  for (size_t at = 8; at + 12 <= n;) {
    const size_t end = at + 12 + be32(d + at);
    if (end > n || end < at) break;  // cut off inside this chunk
    if (std::memcmp(d + at + 4, "iCCP", 4) == 0) c.iccp.emplace_back(at, end);
    if (std::memcmp(d + at + 4, "IEND", 4) == 0) {
      c.complete = true;
      break;
    }
    at = end;
  }
  return c;
}

ImageHeader probe(const unsigned char* d, size_t n, int* orientation) {
  ImageHeader h;
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) {
    h.format = "jpeg";
    probe_jpeg(d, n, h, orientation);
  } else if (n >= 8 && std::memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) {
    h.format = "png";
    h.complete = png_chunks(d, n).complete;
    if (n >= 24 && std::memcmp(d + 12, "IHDR", 4) == 0) {
      h.width = static_cast<int>(be32(d + 16));
      h.height = static_cast<int>(be32(d + 20));
    }
  } else if (n >= 2 && d[0] == 'B' && d[1] == 'M') {
    h.format = "bmp";
    if (n >= 26) {
      h.width = std::abs(static_cast<int32_t>(le32(d + 18)));
      h.height = std::abs(static_cast<int32_t>(le32(d + 22)));
    }
  } else if (n >= 12 && std::memcmp(d, "RIFF", 4) == 0 && std::memcmp(d + 8, "WEBP", 4) == 0) {
    h.format = "webp";
    if (n >= 30 && std::memcmp(d + 12, "VP8 ", 4) == 0) {
      h.width = static_cast<int>(le16(d + 26) & 0x3FFF);
      h.height = static_cast<int>(le16(d + 28) & 0x3FFF);
    } else if (n >= 25 && std::memcmp(d + 12, "VP8L", 4) == 0) {
      const unsigned char* b = d + 21;
      h.width = 1 + static_cast<int>(b[0] | ((b[1] & 0x3F) << 8));
      h.height = 1 + static_cast<int>((b[1] >> 6) | (b[2] << 2) | ((b[3] & 0x0F) << 10));
    } else if (n >= 30 && std::memcmp(d + 12, "VP8X", 4) == 0) {
      h.width = 1 + static_cast<int>(d[24] | (d[25] << 8) | (d[26] << 16));
      h.height = 1 + static_cast<int>(d[27] | (d[28] << 8) | (d[29] << 16));
    }
  } else if (n >= 8 && ((d[0] == 'I' && d[1] == 'I' && d[2] == 42 && d[3] == 0) || (d[0] == 'M' && d[1] == 'M' && d[2] == 0 && d[3] == 42))) {
    h.format = "tiff";
    bool le = d[0] == 'I';
    auto u16 = [&](size_t off) { return le ? le16(d + off) : be16(d + off); };
    auto u32 = [&](size_t off) { return le ? le32(d + off) : be32(d + off); };
    size_t ifd = u32(4);
    if (ifd + 2 <= n) {
      size_t count = u16(ifd);
      for (size_t k = 0; k < count && ifd + 2 + 12 * (k + 1) <= n; ++k) {
        size_t e = ifd + 2 + 12 * k;
        uint32_t tag = u16(e), type = u16(e + 2);
        uint32_t v = type == 3 ? u16(e + 8) : u32(e + 8);
        if (tag == 256) h.width = static_cast<int>(v);
        if (tag == 257) h.height = static_cast<int>(v);
      }
    }
  }
  return h;
}

void apply_orientation(cv::Mat& img, int orientation) {
  switch (orientation) {
    case 2: cv::flip(img, img, 1); break;
    case 3: cv::rotate(img, img, cv::ROTATE_180); break;
    case 4: cv::flip(img, img, 0); break;
    case 5: cv::transpose(img, img); break;
    case 6: cv::rotate(img, img, cv::ROTATE_90_CLOCKWISE); break;
    case 7: cv::transpose(img, img); cv::flip(img, img, -1); break;
    case 8: cv::rotate(img, img, cv::ROTATE_90_COUNTERCLOCKWISE); break;
    default: break;
  }
}

DecodeResult failed(DecodeFailure f, std::string detail = {}) {
  DecodeResult r;
  r.failure = f;
  r.detail = std::move(detail);
  return r;
}

}  // namespace

ImageHeader probe_header(const unsigned char* data, size_t size) { return probe(data, size, nullptr); }

int reduced_decode_factor(const ImageHeader& h, const DecodeOptions& opts) {
  // Only JPEG decodes faster when reduced; OpenCV would decode other formats fully and then resize.
  if (h.format != "jpeg" || opts.min_short_side <= 0 || h.width <= 0 || h.height <= 0) return 1;
  const int64_t short_side = std::min(h.width, h.height);
  for (int f : {8, 4, 2})
    if ((short_side + f - 1) / f >= opts.min_short_side) return f;
  return 1;
}

namespace {
/// The checks every decode starts with; a failed result when the bytes must not be decoded.
std::optional<DecodeResult> precheck(const std::string& bytes, const DecodeOptions& opts, ImageHeader& h, int& orientation) {
  if (bytes.empty()) return failed(DecodeFailure::Empty);
  const auto* d = reinterpret_cast<const unsigned char*>(bytes.data());
  h = probe(d, bytes.size(), &orientation);
  if (h.format.empty()) return failed(DecodeFailure::NotAnImage);
  // libjpeg pads a cut-off JPEG with grey and only warns (PIL refuses it, and so do we); libpng
  // prints its error for a cut-off PNG on stderr, so that is refused before decoding too.
  if (!h.complete)
    return failed(DecodeFailure::Truncated, h.format == "png" ? "PNG without its IEND chunk"
                                                              : "JPEG without its end-of-image marker");
  const int64_t pixels = int64_t(h.width) * int64_t(h.height);
  if (pixels > opts.max_pixels)
    return failed(DecodeFailure::TooLarge, std::to_string(h.width) + "x" + std::to_string(h.height) + " = " +
                                               std::to_string(pixels) + " pixels > " + std::to_string(opts.max_pixels));
  return std::nullopt;
}
}  // namespace

namespace {
/// BYTES without the iCCP chunks C lists. libpng warns about common bad colour profiles ("iCCP:
/// known incorrect sRGB profile") on stderr, between our log lines, and OpenCV offers no hook to
/// silence it; OpenCV ignores colour profiles, so dropping the chunk leaves every pixel as it was.
std::string without_chunks(const std::string& bytes, const std::vector<std::pair<size_t, size_t>>& drop) {
  std::string out;
  out.reserve(bytes.size());
  size_t from = 0;
  for (const auto& [b, e] : drop) {
    out.append(bytes, from, b - from);
    from = e;
  }
  out.append(bytes, from, std::string::npos);
  return out;
}
}  // namespace

DecodeResult decode_image(const std::string& bytes_in, const DecodeOptions& opts) {
  ImageHeader h;
  int orientation = 1;
  if (auto bad = precheck(bytes_in, opts, h, orientation)) return *bad;
  const std::vector<std::pair<size_t, size_t>> iccp =
      h.format == "png" ? png_chunks(reinterpret_cast<const unsigned char*>(bytes_in.data()), bytes_in.size()).iccp
                        : std::vector<std::pair<size_t, size_t>>{};
  const std::string stripped = iccp.empty() ? std::string() : without_chunks(bytes_in, iccp);
  const std::string& bytes = iccp.empty() ? bytes_in : stripped;
  const int64_t pixels = int64_t(h.width) * int64_t(h.height);
  const int reduction = reduced_decode_factor(h, opts);
  int flags = cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION;
  if (reduction == 2) flags = cv::IMREAD_REDUCED_COLOR_2 | cv::IMREAD_IGNORE_ORIENTATION;
  if (reduction == 4) flags = cv::IMREAD_REDUCED_COLOR_4 | cv::IMREAD_IGNORE_ORIENTATION;
  if (reduction == 8) flags = cv::IMREAD_REDUCED_COLOR_8 | cv::IMREAD_IGNORE_ORIENTATION;
  DecodeResult r;
  try {
    cv::Mat buf(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data()));
    r.image = cv::imdecode(buf, flags);
  } catch (const cv::Exception& e) {
    return failed(DecodeFailure::Corrupt, e.err);
  }
  if (r.image.empty()) return failed(DecodeFailure::Corrupt, h.format);
  if (pixels == 0 && int64_t(r.image.cols) * r.image.rows > opts.max_pixels)  // header gave no size
    return failed(DecodeFailure::TooLarge, std::to_string(r.image.cols) + "x" + std::to_string(r.image.rows));
  if (r.image.depth() != CV_8U) r.image.convertTo(r.image, CV_8U, r.image.depth() == CV_16U ? 1.0 / 257 : 1.0);
  if (r.image.channels() == 1) cv::cvtColor(r.image, r.image, cv::COLOR_GRAY2BGR);
  else if (r.image.channels() == 4) cv::cvtColor(r.image, r.image, cv::COLOR_BGRA2BGR);
  if (h.format == "jpeg") apply_orientation(r.image, orientation);
  r.full_width = h.width;
  r.full_height = h.height;
  r.reduction = reduction;
  return r;
}

namespace {

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_error_exit(j_common_ptr c) {
  auto* e = reinterpret_cast<JpegError*>(c->err);
  (*c->err->format_message)(c, e->message);
  std::longjmp(e->jump, 1);
}
void jpeg_quiet(j_common_ptr, int) {}  // corrupt-data warnings: the image still decodes, as with OpenCV

/// Decodes rows [roi.y, roi.y + roi.height) and at least columns [roi.x, roi.x + roi.width) of a
/// YCbCr/RGB JPEG. Rows above the region are skipped (entropy-decoded only), rows below never
/// read, columns outside cropped to iMCU boundaries: libjpeg-turbo's jpeg_skip_scanlines and
/// jpeg_crop_scanline, which produce the same pixels as a full decode.
bool decode_jpeg_region(const std::string& bytes, const cv::Rect& roi, cv::Mat& out, std::string& error) {
  jpeg_decompress_struct cinfo;
  JpegError err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_error_exit;
  err.mgr.emit_message = jpeg_quiet;
  cv::Mat band;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    error = err.message;
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = JCS_EXT_BGR;
  jpeg_start_decompress(&cinfo);
  // Fancy (smoothed) chroma upsampling reads one neighbour beyond each edge of a cropped band;
  // a 16-pixel margin (one iMCU) on each side keeps the region's own pixels exact.
  const int left = std::max(0, roi.x - 16), right = std::min(static_cast<int>(cinfo.output_width), roi.x + roi.width + 16);
  JDIMENSION xoff = static_cast<JDIMENSION>(left), width = static_cast<JDIMENSION>(right - left);
  jpeg_crop_scanline(&cinfo, &xoff, &width);  // widens to iMCU boundaries: xoff <= left
  if (roi.y > 0) jpeg_skip_scanlines(&cinfo, static_cast<JDIMENSION>(roi.y));
  band.create(roi.height, static_cast<int>(width), CV_8UC3);
  while (cinfo.output_scanline < static_cast<JDIMENSION>(roi.y + roi.height)) {
    JSAMPROW row = band.ptr<uchar>(static_cast<int>(cinfo.output_scanline) - roi.y);
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_abort_decompress(&cinfo);  // the rows below the region are never decoded
  jpeg_destroy_decompress(&cinfo);
  out = band(cv::Rect(roi.x - static_cast<int>(xoff), 0, roi.width, roi.height));
  return true;
}

/// Colour spaces libjpeg-turbo converts to BGR itself (CMYK/YCCK go through OpenCV).
bool jpeg_region_decodable(const std::string& bytes) {
  jpeg_decompress_struct cinfo;
  JpegError err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_error_exit;
  err.mgr.emit_message = jpeg_quiet;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  bool ok = (cinfo.jpeg_color_space == JCS_YCbCr || cinfo.jpeg_color_space == JCS_RGB) && cinfo.num_components == 3;
  jpeg_destroy_decompress(&cinfo);
  return ok;
}

}  // namespace

DecodeResult decode_image_region(const std::string& bytes, const std::function<cv::Rect(int, int)>& choose_roi,
                                 const DecodeOptions& opts) {
  ImageHeader h;
  int orientation = 1;
  if (auto bad = precheck(bytes, opts, h, orientation)) return *bad;
  // A large JPEG decodes faster at reduced scale in full than at full scale in part.
  const bool reduce = reduced_decode_factor(h, opts) > 1;
  if (!reduce && h.format == "jpeg" && orientation == 1 && h.width > 0 && h.height > 0 && jpeg_region_decodable(bytes)) {
    cv::Rect roi = choose_roi(h.width, h.height);
    TLTRAIN_ASSERT((roi & cv::Rect(0, 0, h.width, h.height)) == roi && !roi.empty(), "region outside the image");
    DecodeResult r;
    std::string error;
    if (!decode_jpeg_region(bytes, roi, r.image, error)) return failed(DecodeFailure::Corrupt, error);
    r.full_width = h.width;
    r.full_height = h.height;
    r.region = true;
    return r;
  }
  DecodeOptions o = opts;
  if (!reduce) o.min_short_side = 0;
  DecodeResult r = decode_image(bytes, o);
  if (!r.ok()) return r;
  if (r.reduction == 1) {
    r.image = r.image(choose_roi(r.image.cols, r.image.rows));
    return r;
  }
  // The region is chosen in full-resolution (oriented) coordinates and scaled to the decoded image.
  const int fw = orientation >= 5 ? h.height : h.width, fh = orientation >= 5 ? h.width : h.height;
  const cv::Rect roi = choose_roi(fw, fh);
  const double sx = static_cast<double>(r.image.cols) / fw, sy = static_cast<double>(r.image.rows) / fh;
  const int x0 = std::clamp(static_cast<int>(std::floor(roi.x * sx)), 0, r.image.cols - 1);
  const int y0 = std::clamp(static_cast<int>(std::floor(roi.y * sy)), 0, r.image.rows - 1);
  const int x1 = std::clamp(static_cast<int>(std::ceil((roi.x + roi.width) * sx)), x0 + 1, r.image.cols);
  const int y1 = std::clamp(static_cast<int>(std::ceil((roi.y + roi.height) * sy)), y0 + 1, r.image.rows);
  r.image = r.image(cv::Rect(x0, y0, x1 - x0, y1 - y0));
  return r;
}

bool read_bytes(const std::string& path, std::string& bytes) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return false;
  std::streamsize size = in.tellg();
  if (size < 0) return false;
  bytes.assign(static_cast<size_t>(size), '\0');
  in.seekg(0);
  return size == 0 || static_cast<bool>(in.read(bytes.data(), size));
}

DecodeResult decode_file(const std::string& path, const DecodeOptions& opts) {
  std::string bytes;
  if (!read_bytes(path, bytes)) return failed(DecodeFailure::Unreadable);
  return decode_image(bytes, opts);
}

}  // namespace tltrain::data
