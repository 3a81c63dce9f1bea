"""TIFF: the metadata sits in the same directory (IFD0) that describes the image.

Deleting IFD0 would delete the image, so stripping rewrites the file: every full-resolution
page keeps only the tags needed to decode and display it (size, sample layout, compression,
strip/tile locations, colour, resolution, orientation, and ICC when asked) with its image data
copied unchanged; everything else goes, including the Exif and GPS directories, XMP, IPTC,
Photoshop resources, maker notes, DNG serials, sub-IFDs and reduced-resolution (thumbnail)
pages. Pixels stay identical: strips and tiles are copied as they are.
"""

from __future__ import annotations

import struct

from veil.findings import Finding
from veil.formats import exif, icc, photoshop, xmp
from veil.formats.base import ImageFormat, MalformedImage, StripOptions, Stripped, UnsupportedImage
from veil.formats.inventory import Inventory
from veil.formats.tiffdata import Entry, TiffData

WIDTH, HEIGHT, COMPRESSION, NEW_SUBFILE = 256, 257, 259, 254
STRIP_OFFSETS, STRIP_COUNTS, TILE_OFFSETS, TILE_COUNTS = 273, 279, 324, 325
ICC_TAG, XMP_TAG, IPTC_TAG, PHOTOSHOP_TAG = 34675, 700, 33723, 34377
SUB_IFDS, C2PA_TAG = 330, 0xCD41
# Tags a viewer needs to decode and display the pixels.
IMAGE_TAGS = frozenset(
    {
        254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 277, 278, 279, 280, 281,
        282, 283, 284, 290, 291, 296, 301, 317, 318, 319, 320, 321, 322, 323, 324, 325, 332,
        334, 338, 339, 340, 341, 342, 347, 529, 530, 531, 532,
    }
)  # fmt: skip
MAX_PAGES = 1000
_NAMED = {
    269: ("other_metadata", "document name"),
    285: ("other_metadata", "page name"),
    SUB_IFDS: ("thumbnail", "sub-images (SubIFDs)"),
    C2PA_TAG: ("c2pa", "C2PA manifest (TIFF tag 0xCD41)"),
}


class Tiff(ImageFormat):
    name = "tiff"
    mime = "image/tiff"

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.tiff = TiffData(data)
        self.pages: list[dict[int, Entry]] = []
        offset = self.tiff.first_ifd()
        while offset and len(self.pages) < MAX_PAGES:
            entries, offset = self.tiff.ifd(offset)
            self.pages.append(entries)
        if not self.pages:
            raise MalformedImage("TIFF has no image directory")
        for page in self.pages:
            if WIDTH not in page or HEIGHT not in page:
                raise MalformedImage("TIFF directory has no image size")

    def dimensions(self) -> tuple[int, int]:
        # The largest page counts for the decompression-bomb guard.
        sizes = [(self.tiff.int(p[WIDTH]), self.tiff.int(p[HEIGHT])) for p in self.pages]
        return max(sizes, key=lambda s: s[0] * s[1])

    def orientation(self) -> int:
        value = self.tiff.int(self.pages[0].get(exif.ORIENTATION), 1)
        return value if 1 <= value <= 8 else 1

    def _is_reduced(self, page: dict[int, Entry]) -> bool:
        return bool(self.tiff.int(page.get(NEW_SUBFILE)) & 1)

    def findings(self) -> list[Finding]:
        inv = Inventory()
        t = self.tiff
        for number, page in enumerate(self.pages):
            where = "TIFF" if number == 0 else f"TIFF page {number + 1}"
            exif.ifd_findings(t, page, inv, where)
            if number and self._is_reduced(page):
                w, h = t.int(page[WIDTH]), t.int(page[HEIGHT])
                inv.add("thumbnail", f"reduced-resolution image {w}x{h} ({where})")
            if entry := page.get(XMP_TAG):
                inv.extend(xmp.findings(t.raw(entry), f"XMP in {where}"))
            if entry := page.get(IPTC_TAG):
                inv.extend(photoshop.iptc_findings(t.raw(entry), f"IPTC in {where}"))
            if entry := page.get(PHOTOSHOP_TAG):
                inv.extend(photoshop.findings(t.raw(entry), f"Photoshop in {where}"))
            if entry := page.get(ICC_TAG):
                inv.extend([icc.finding(t.raw(entry), where)])
            for tag, (kind, label) in _NAMED.items():
                if tag in page:
                    inv.add(kind, f"{label} ({where})")
            private = sorted(t for t in page if t >= 32768 and t not in (ICC_TAG, IPTC_TAG))
            private = [
                t
                for t in private
                if t not in (PHOTOSHOP_TAG, exif.EXIF_IFD, exif.GPS_IFD, C2PA_TAG)
            ]
            if private:
                tags = ", ".join(f"0x{t:04X}" for t in private[:6])
                inv.add("other_metadata", f"private tags {tags} ({where})")
        return inv.findings()

    def strip(self, options: StripOptions) -> Stripped:
        t = self.tiff
        keep = set(IMAGE_TAGS)
        if options.keep_orientation:
            keep.add(exif.ORIENTATION)
        if options.keep_icc:
            keep.add(ICC_TAG)
        removed: set[str] = set()
        out = bytearray(self.data[:4] + b"\x00\x00\x00\x00")
        link_at = 4
        pages = [p for i, p in enumerate(self.pages) if i == 0 or not self._is_reduced(p)]
        if len(pages) < len(self.pages):
            removed.add("reduced-resolution (thumbnail) pages")
        for page in pages:
            if t.int(page.get(COMPRESSION), 1) == 6:
                raise UnsupportedImage("old-style JPEG-in-TIFF cannot be cleaned")
            removed.update(f"tag {tag}" for tag in page if tag not in keep)
            ifd_at = self._write_page(out, page, keep)
            struct.pack_into(t.order + "I", out, link_at, ifd_at)
            link_at = len(out) - 4
        if options.size_preserving:
            if len(out) > len(self.data):
                raise MalformedImage("TIFF cannot be cleaned at the same length")
            out += bytes(len(self.data) - len(out))
        return Stripped(bytes(out), tuple(sorted(_describe_tags(removed))))

    def _write_page(self, out: bytearray, page: dict[int, Entry], keep: set[int]) -> int:
        t = self.tiff
        offsets_tag = TILE_OFFSETS if TILE_OFFSETS in page else STRIP_OFFSETS
        counts_tag = TILE_COUNTS if offsets_tag == TILE_OFFSETS else STRIP_COUNTS
        if offsets_tag not in page or counts_tag not in page:
            raise MalformedImage("TIFF page has no strip or tile locations")
        old_offsets, counts = t.ints(page[offsets_tag]), t.ints(page[counts_tag])
        if len(old_offsets) != len(counts):
            raise MalformedImage("TIFF strip offsets and byte counts disagree")
        new_offsets = []
        for offset, count in zip(old_offsets, counts, strict=True):
            if offset + count > len(self.data):
                raise MalformedImage("TIFF strip points past the end of the file")
            new_offsets.append(len(out))  # image data needs no word alignment
            out += self.data[offset : offset + count]
        entries: list[tuple[int, int, int, bytes]] = []
        for tag in sorted(tag for tag in page if tag in keep):
            entry = page[tag]
            if tag == offsets_tag:
                value = struct.pack(f"{t.order}{len(new_offsets)}I", *new_offsets)
                entries.append((tag, 4, len(new_offsets), value))
            else:
                entries.append((tag, entry.type, entry.count, t.raw(entry)))
        # Out-of-line values, then the directory itself.
        placed: list[tuple[int, int, int, bytes]] = []
        for tag, typ, count, value in entries:
            if len(value) > 4:
                _align(out)
                placed.append((tag, typ, count, struct.pack(t.order + "I", len(out))))
                out += value
            else:
                placed.append((tag, typ, count, value.ljust(4, b"\x00")))
        _align(out)
        ifd_at = len(out)
        out += struct.pack(t.order + "H", len(placed))
        for tag, typ, count, value in placed:
            out += struct.pack(t.order + "HHI", tag, typ, count) + value
        out += b"\x00\x00\x00\x00"
        return ifd_at


def _align(out: bytearray) -> None:
    if len(out) & 1:
        out.append(0)


_TAG_NAMES = {
    271: "Make", 272: "Model", 305: "Software", 306: "DateTime", 315: "Artist",
    316: "HostComputer", 270: "ImageDescription", 33432: "Copyright", 34665: "Exif IFD",
    34853: "GPS IFD", 700: "XMP", 33723: "IPTC", 34377: "Photoshop", 34675: "ICC profile",
    330: "SubIFDs", 0xC62F: "CameraSerialNumber", 0xCD41: "C2PA", 274: "Orientation",
}  # fmt: skip


def _describe_tags(removed: set[str]) -> list[str]:
    out = []
    for item in removed:
        if item.startswith("tag "):
            tag = int(item[4:])
            out.append(f"TIFF {_TAG_NAMES.get(tag, f'tag {tag}')}")
        else:
            out.append(item)
    return out
