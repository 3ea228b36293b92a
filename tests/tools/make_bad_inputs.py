#!/usr/bin/python3
"""Writes a class-folder data set full of real-world trouble, for tests/bad_input_test.cpp.

    make_bad_inputs.py ROOT

ROOT/{train,val}/{red,blue}/ hold a few good 24x24 squares each, plus:
- files that decode (and must be used): CMYK JPEG, 16-bit PNG, palette PNG, RGBA PNG, WebP,
  TIFF, EXIF-rotated JPEG, a unicode name, an upper-case .JPG, a PNG with a bad iCCP profile,
  an image inside a folder named x.jpg;
- files that cannot be used (each must be named with its reason): zero-byte, truncated JPEG,
  header-only PNG, text named .jpg, a 40000x40000 PNG (decompression-bomb guard), a symlink loop,
  a self-referencing symlink, a dangling symlink, a text file, an unreadable folder (made by the
  test: chmod needs no root here, reading it does).
Prints one line per file that must be left out: "SPLIT<TAB>PATH<TAB>REASON KIND".
"""
import os
import struct
import sys
import zlib

from PIL import Image

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


def square(colour, i, mode="RGB"):
    img = Image.new("RGB", (24, 24), colour)
    img.putpixel((i % 24, i % 24), (i * 37 % 256, 128, 128))  # no two files alike
    return img.convert(mode) if mode != "RGB" else img


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width, height, bit_depth, colour_type, rows, extra=b""):
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def huge_png(path, side=40000):
    """A valid 1-bit grey PNG of SIDE x SIDE pixels: ~1.6 G pixels in a few hundred kB."""
    z = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    body = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    with open(path, "wb") as f:
        f.write(png_bytes(side, side, 1, 0, body))


def bad_iccp_png(path, colour):
    """A 24x24 RGB PNG whose iCCP chunk holds a profile libpng rejects (it warns on stderr)."""
    raw = b"".join(b"\x00" + bytes(colour) * 24 for _ in range(24))
    iccp = chunk(b"iCCP", b"bad profile\x00\x00" + zlib.compress(b"\x00" * 132))
    with open(path, "wb") as f:
        f.write(png_bytes(24, 24, 8, 2, zlib.compress(raw), iccp))


def main():
    root = sys.argv[1]
    bad = []
    for split, n in (("train", 6), ("val", 3)):
        for name, colour in COLOURS.items():
            d = os.path.join(root, split, name)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                square(colour, i).save(os.path.join(d, f"{i:02d}.png"))

    red, blue = os.path.join(root, "train", "red"), os.path.join(root, "train", "blue")
    c = COLOURS["red"]
    square(c, 40, "CMYK").save(os.path.join(red, "cmyk.jpg"), quality=95)
    Image.new("I;16", (24, 24), 40000).save(os.path.join(red, "deep16.png"))  # 16-bit grey
    square(c, 41).convert("P", palette=Image.ADAPTIVE, colors=8).save(os.path.join(red, "palette.png"))
    square(c, 42, "RGBA").save(os.path.join(red, "rgba.png"))
    square(c, 43).save(os.path.join(red, "photo.webp"))
    square(c, 44).save(os.path.join(red, "scan.tiff"))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.new("RGB", (32, 24), c).save(os.path.join(red, "rotated.jpg"), exif=exif.tobytes())
    square(c, 45).save(os.path.join(red, "ÜnïcØdé 名前.png"))
    square(c, 46).save(os.path.join(red, "UPPER.JPG"))
    bad_iccp_png(os.path.join(red, "iccp.png"), c)
    os.makedirs(os.path.join(red, "x.jpg"))
    square(c, 47).save(os.path.join(red, "x.jpg", "inside.png"))

    def leave_out(split, path, kind):
        bad.append((split, path, kind))

    open(os.path.join(blue, "empty.jpg"), "wb").close()
    leave_out("train", os.path.join(blue, "empty.jpg"), "empty file")
    good_jpeg = os.path.join(blue, "00.jpg")
    square(COLOURS["blue"], 50).save(good_jpeg, quality=90)
    data = open(good_jpeg, "rb").read()
    with open(os.path.join(blue, "truncated.jpg"), "wb") as f:
        f.write(data[: len(data) // 2])
    leave_out("train", os.path.join(blue, "truncated.jpg"), "truncated")
    with open(os.path.join(blue, "header_only.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 24, 24, 8, 2, 0, 0, 0)))
    leave_out("train", os.path.join(blue, "header_only.png"), "truncated")
    with open(os.path.join(blue, "text.jpg"), "w") as f:
        f.write("this is not a picture\n")
    leave_out("train", os.path.join(blue, "text.jpg"), "not an image")
    huge_png(os.path.join(blue, "huge.png"))
    leave_out("train", os.path.join(blue, "huge.png"), "too many pixels")
    os.symlink(".", os.path.join(blue, "loop"))
    leave_out("train", os.path.join(blue, "loop"), "folder already scanned")
    os.symlink("self.jpg", os.path.join(blue, "self.jpg"))
    leave_out("train", os.path.join(blue, "self.jpg"), "symlink loop")
    os.symlink("missing.jpg", os.path.join(blue, "dangling.jpg"))
    leave_out("train", os.path.join(blue, "dangling.jpg"), "dangling symlink")
    with open(os.path.join(blue, "notes.txt"), "w") as f:
        f.write("labels checked by hand\n")
    leave_out("train", os.path.join(blue, "notes.txt"), "not an image type (.txt)")
    locked = os.path.join(blue, "locked")
    os.makedirs(locked)
    square(COLOURS["blue"], 51).save(os.path.join(locked, "hidden.png"))
    # The test makes it unreadable and expects "cannot read folder" only where that holds (not as root).

    vred, vblue = os.path.join(root, "val", "red"), os.path.join(root, "val", "blue")
    open(os.path.join(vred, "zero.jpg"), "wb").close()
    leave_out("val", os.path.join(vred, "zero.jpg"), "empty file")
    with open(os.path.join(vblue, "trunc.jpg"), "wb") as f:
        f.write(data[: len(data) // 3])
    leave_out("val", os.path.join(vblue, "trunc.jpg"), "truncated")
    with open(os.path.join(vblue, "text.png"), "w") as f:
        f.write("<html>not found</html>\n")
    leave_out("val", os.path.join(vblue, "text.png"), "not an image")

    for split, path, kind in bad:
        print(f"{split}\t{path}\t{kind}")


if __name__ == "__main__":
    main()
