"""Pure image functions for Onboard: sniff an upload, then make its derivatives.

No Flask and no Celery here: the uploads blueprint calls :func:`sniff` on the first
bytes of a request (:mod:`webapp.imaging.header`), and the ``images`` Celery task
calls :func:`make_derivatives` on the stored original
(:mod:`webapp.imaging.derivatives`); :mod:`webapp.imaging.common` holds the limits,
settings, exceptions and result types both use. Both raise :class:`ImageRejected` with a sentence a person can
read when the file is not acceptable; the task stores that sentence as the upload's
``error`` and does not retry. :class:`ImageProcessingError` is for our own failures
(disk full, libvips missing a saver), which a retry may fix.

Rules and where they come from:

* Allow-list JPEG, PNG and WebP, recognised by their magic bytes (JPEG: ITU T.81
  SOI marker ``FF D8 FF``; PNG: the 8-byte signature of RFC 2083; WebP: ``RIFF``
  ``WEBP`` container of RFC 9649). HEIC is refused: the libvips in ``pyvips-binary``
  8.18 ships libheif with the AV1 codec only; loading a real HEIC (made with
  Debian's ``heif-enc``) fails with "Support for this compression format has not
  been built in: HEVC (a suitable decoder plugin is libde265)". SVG and
  every other libvips loader are blocked for the whole process (see
  :func:`configure_vips`), so a mislabelled file never reaches them.
* Limits (50 megapixels, 12,000 px a side) are checked on the *declared* size in
  the header, before any pixel is decoded, and again on what libvips' loader reads
  from the whole file before :func:`make_derivatives` decodes it.
* Decode memory is bounded by what the header declares: an interlaced PNG (bit
  depth, colour type and interlace method from the IHDR chunk, RFC 2083 section
  4.1.1) or a progressive JPEG (component sampling from the SOF segment, ITU T.81
  B.2.2) must be held whole while decoding; one whose buffer would exceed
  :data:`MAX_DECODE_BYTES` is refused before any pixel is decoded.
* Derivatives are decoded once with libvips ``thumbnail`` (shrink-on-load: JPEG
  DCT scaling, WebP scaled decode), auto-rotated from EXIF ``Orientation``,
  converted to sRGB when an embedded ICC profile is not sRGB, flattened on white,
  and saved with ``keep="none"`` so no EXIF (GPS included), XMP, IPTC or ICC leaves
  the server. JPEG settings were chosen with ``bench/images.py``; the figures are
  in ``bench/IMAGES.md``.
"""
from __future__ import annotations

from webapp.imaging.common import (AVATAR_SIZE, DISPLAY_SIZE, MAX_DECODE_BYTES, MAX_PIXELS,
                                   MAX_SIDE, SNIFF_BYTES, Derivative, ImageFormat, ImageInfo,
                                   ImageProcessingError, ImageRejected, configure_vips)
from webapp.imaging.derivatives import make_derivatives, release_free_memory
from webapp.imaging.header import (check_decode_memory, check_limits, decode_buffer_bytes,
                                   detect_format, sniff)

__all__ = [
    "AVATAR_SIZE", "DISPLAY_SIZE", "MAX_DECODE_BYTES", "MAX_PIXELS", "MAX_SIDE", "SNIFF_BYTES",
    "Derivative", "ImageFormat", "ImageInfo", "ImageProcessingError", "ImageRejected",
    "check_decode_memory", "check_limits", "configure_vips", "decode_buffer_bytes",
    "detect_format", "make_derivatives", "release_free_memory", "sniff",
]
