"""Small image files for tests/test_imaging.py, made with Pillow, zlib and struct."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw

#: EXIF tag numbers (EXIF 2.32 / TIFF 6.0).
ORIENTATION = 0x0112
GPS_IFD = 0x8825
GPS_LATITUDE_REF, GPS_LATITUDE = 1, 2


def photo(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A picture with a left/right asymmetry, so rotation is detectable.

    The left quarter is red, the rest is a blue-green gradient with circles.
    """
    im = Image.linear_gradient("L").resize((width, height))
    im = Image.merge("RGB", [im.point(lambda v: v // 3), im, im.transpose(Image.FLIP_LEFT_RIGHT)])
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 0, width // 4, height), fill=(230, 20, 20))
    for i in range(8):
        x = width // 4 + i * width // 10
        draw.ellipse((x, height // 3, x + width // 12, height // 3 + height // 4),
                     fill=(250, 250, 30))
    return im.convert(mode) if mode != "RGB" else im


def jpeg_with_exif(path: Path, width: int, height: int, *, orientation: int | None = None,
                   gps: bool = False) -> Path:
    """Write a JPEG whose EXIF holds an Orientation tag and/or a GPS position."""
    im = photo(width, height)
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    if orientation is not None:
        exif[ORIENTATION] = orientation
    if gps:
        gps_ifd = exif.get_ifd(GPS_IFD)
        gps_ifd[GPS_LATITUDE_REF] = "N"
        gps_ifd[GPS_LATITUDE] = (48.0, 51.0, 29.0)
        gps_ifd[3] = "E"
        gps_ifd[4] = (2.0, 17.0, 40.0)
    im.save(path, "JPEG", quality=90, exif=exif.tobytes())
    return path


def png_bomb(path: Path, width: int = 50_000, height: int = 50_000) -> Path:
    """A PNG of a few dozen bytes whose IHDR declares ``width`` x ``height`` (RFC 2083).

    Only the header is real: the IDAT holds one compressed empty row, so any
    decoder that trusts the header and allocates the image would need gigabytes.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    path.write_bytes(data)
    return path


def zero_png(path: Path, width: int, height: int, *, bit_depth: int = 16,
             color_type: int = 6, interlace: bool = True) -> Path:
    """A PNG of all-zero pixels, any size, in a few hundred KB (RFC 2083 / PNG spec).

    ``color_type``: 0 grey, 2 RGB, 4 grey + alpha, 6 RGBA; ``bit_depth`` 8 or 16;
    ``interlace``: Adam7. Rows of zeros with filter 0 compress about 1000:1, so a
    7000 x 7000 16-bit RGBA image (392 MB of pixels) is a ~380 KB file. The
    pixel data is real: every decoder has to inflate all of it.
    """
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    pixel_bytes = channels * bit_depth // 8
    # Adam7 passes (x0, y0, dx, dy); one pass covering everything when not interlaced.
    passes = ([(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
               (1, 0, 2, 2), (0, 1, 1, 2)] if interlace else [(0, 0, 1, 1)])
    deflate = zlib.compressobj(9)
    parts = []
    for x0, y0, dx, dy in passes:
        cols, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if cols <= 0 or rows <= 0:
            continue
        row = bytes(1 + cols * pixel_bytes)  # filter byte 0, then zero samples
        parts.extend(deflate.compress(row) for _ in range(rows))
    parts.append(deflate.flush())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, int(interlace))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))
    return path


SVG = b"""<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">
  <rect width="100" height="100" fill="red"/>
</svg>
"""
