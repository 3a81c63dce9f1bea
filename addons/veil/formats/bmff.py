"""HEIC/HEIF and AVIF: ISO base media files whose metadata are items of the `meta` box.

An Exif item, an XMP item (`mime`, application/rdf+xml) and thumbnail items (`thmb`) are
listed in `iinf`, located by `iloc` (usually in `mdat`), linked by `iref` and given properties
by `ipma`. Stripping is lossless surgery: those items go from every table, their bytes are cut
from `mdat` and every remaining `iloc` offset is moved to match; unknown top-level boxes (C2PA
`uuid`, Samsung trailers) go too. The coded image, its properties (`ispe`, `hvcC`/`av1C`,
`irot`/`imir` orientation, `colr`) and auxiliary images (alpha, depth) stay byte for byte.

When offsets cannot be moved safely (a `moov` box with its own chunk offsets, an unusual
`iloc`), the same removal is done in place: tables rebuilt and padded with a `free` box, item
bytes zeroed. That is also the size-preserving mode.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from veil.findings import Finding
from veil.formats import exif, icc, xmp
from veil.formats.base import ImageFormat, MalformedImage, StripOptions, Stripped, UnsupportedImage
from veil.formats.inventory import Inventory, size_text
from veil.formats.tiffdata import printable

MAX_BOXES = 100_000
MAX_ITEMS = 50_000
C2PA_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")
TOP_LEVEL_KEEP = frozenset({b"ftyp", b"meta", b"mdat", b"moov"})
META_KEEP = frozenset(
    {b"hdlr", b"pitm", b"iloc", b"iinf", b"iref", b"iprp", b"idat", b"dinf", b"grpl"}
)


@dataclass(frozen=True)
class Box:
    type: bytes
    start: int
    header: int  # header length (8, 16, +16 for uuid)
    end: int

    @property
    def body(self) -> int:
        return self.start + self.header

    def payload(self, data: bytes) -> bytes:
        return data[self.body : self.end]


def parse_boxes(data: bytes, start: int, end: int, *, top_level: bool = False) -> list[Box]:
    boxes: list[Box] = []
    pos = start
    while pos < end:
        if len(boxes) >= MAX_BOXES:
            raise MalformedImage("HEIF has too many boxes")
        if pos + 8 > end:
            if top_level:
                break  # a few stray bytes after the last box: trailing data
            raise MalformedImage("HEIF box header is truncated")
        size, btype = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                raise MalformedImage("HEIF box header is truncated")
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if btype == b"uuid":
            header += 16
        if size < header or pos + size > end:
            raise MalformedImage(
                f"HEIF box {printable(btype)!r} at {pos} claims bytes past the end"
            )
        boxes.append(Box(btype, pos, header, pos + size))
        pos += size
    return boxes


class Reader:
    """Big-endian fields from a bounded slice."""

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def uint(self, n: int) -> int:
        if n == 0:
            return 0
        if self.pos + n > self.end:
            raise MalformedImage("HEIF table is truncated")
        value = int.from_bytes(self.data[self.pos : self.pos + n], "big")
        self.pos += n
        return value

    def cstring(self) -> bytes:
        nul = self.data.find(b"\x00", self.pos, self.end)
        if nul < 0:
            nul = self.end
        value = self.data[self.pos : nul]
        self.pos = min(nul + 1, self.end)
        return value


@dataclass
class Extent:
    index: int
    offset: int
    length: int


@dataclass
class Location:
    item: int
    method: int
    data_ref: int
    base: int
    extents: list[Extent]


@dataclass
class ItemInfo:
    id: int
    type: bytes
    box: Box
    content_type: bytes = b""
    version: int = 2
    flags: int = 0
    protection: int = 0
    name: bytes = b""

    def without_name(self) -> bytes:
        """The infe box with an empty item name (a free-text field); nothing else changes."""
        fields = bytes([self.version]) + self.flags.to_bytes(3, "big")
        fields += self.id.to_bytes(2 if self.version == 2 else 4, "big")
        fields += self.protection.to_bytes(2, "big") + self.type + b"\x00"
        return _box(b"infe", fields)


@dataclass
class Meta:
    box: Box
    children: list[Box]
    primary: int = 0
    items: dict[int, ItemInfo] = field(default_factory=dict)
    iinf_version: int = 0
    locations: dict[int, Location] = field(default_factory=dict)
    iloc_head: tuple[int, int, int, int, int] = (0, 4, 4, 0, 0)  # version, sizes
    refs: list[tuple[bytes, int, list[int]]] = field(default_factory=list)
    iref_version: int = 0
    properties: list[Box] = field(default_factory=list)
    ipco: Box | None = None
    associations: dict[int, list[tuple[bool, int]]] = field(default_factory=dict)
    ipma_version_flags: tuple[int, int] = (0, 0)


class Heif(ImageFormat):
    name = "heif"
    mime = "image/heif"

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.boxes = parse_boxes(data, 0, len(data), top_level=True)
        if not self.boxes or self.boxes[0].type != b"ftyp":
            raise MalformedImage("HEIF does not start with an ftyp box")
        self.file_end = self.boxes[-1].end
        metas = [b for b in self.boxes if b.type == b"meta"]
        if len(metas) != 1:
            raise MalformedImage("HEIF needs exactly one top-level meta box")
        self.meta = _parse_meta(data, metas[0])
        if self.meta.primary not in self.meta.items:
            raise MalformedImage("HEIF primary item is not listed")

    # -- item helpers -----------------------------------------------------------------------

    def _props(self, item: int) -> list[Box]:
        props = self.meta.properties
        return [
            props[i - 1] for _, i in self.meta.associations.get(item, []) if 0 < i <= len(props)
        ]

    def _prop(self, item: int, ptype: bytes) -> Box | None:
        return next((p for p in self._props(item) if p.type == ptype), None)

    def item_data(self, item: int, limit: int = 64 * 2**20) -> bytes:
        loc = self.meta.locations.get(item)
        if loc is None:
            return b""
        parts, total = [], 0
        for ext in loc.extents:
            start = self._extent_start(loc, ext)
            length = ext.length or (len(self.data) - start)
            total += length
            if start < 0 or start + length > len(self.data) or total > limit:
                raise MalformedImage(f"HEIF item {item} lies outside the file")
            parts.append(self.data[start : start + length])
        return b"".join(parts)

    def _extent_start(self, loc: Location, ext: Extent) -> int:
        if loc.method == 0:
            return loc.base + ext.offset
        if loc.method == 1:
            idat = next((b for b in self.meta.children if b.type == b"idat"), None)
            if idat is None:
                raise MalformedImage("HEIF item refers to a missing idat box")
            return idat.body + loc.base + ext.offset
        raise UnsupportedImage("HEIF item stored by reference cannot be read")

    def _ref_targets(self, rtype: bytes, to_item: int) -> list[int]:
        return [src for t, src, dests in self.meta.refs if t == rtype and to_item in dests]

    # -- interface --------------------------------------------------------------------------

    def dimensions(self) -> tuple[int, int]:
        ispe = self._prop(self.meta.primary, b"ispe")
        if ispe is None or ispe.end - ispe.body < 12:
            raise MalformedImage("HEIF primary image has no size (ispe) property")
        return struct.unpack_from(">II", self.data, ispe.body + 4)

    def orientation(self) -> int:
        """irot/imir of the primary item as an EXIF orientation (what the viewer applies)."""
        irot, imir = self._prop(self.meta.primary, b"irot"), self._prop(self.meta.primary, b"imir")
        turns = self.data[irot.body] & 3 if irot and irot.end > irot.body else 0
        mirror = (self.data[imir.body] & 1) if imir and imir.end > imir.body else None
        if mirror is None:
            return (1, 8, 3, 6)[turns]  # anti-clockwise turns -> EXIF orientation
        # imir axis 0 flips top-bottom, 1 flips left-right (as libheif and libavif read it);
        # the rotation applies first, then the mirror.
        flipped = (4, 5, 2, 7) if mirror == 0 else (2, 7, 4, 5)
        return flipped[turns]

    def _removable(self) -> dict[int, str]:
        """Items that are metadata or thumbnails: id -> what they are."""
        meta = self.meta
        found: dict[int, str] = {}
        for item in meta.items.values():
            if item.type == b"Exif":
                found[item.id] = "Exif item"
            elif item.type == b"mime":
                is_xmp = b"rdf+xml" in item.content_type or b"xmp" in item.content_type
                found[item.id] = "XMP item" if is_xmp else f"{printable(item.content_type)!r} item"
            elif item.type == b"uri ":
                found[item.id] = "URI item"
        for _, src, _dests in [r for r in meta.refs if r[0] == b"thmb"]:
            if src not in found and src != meta.primary:
                found[src] = "thumbnail image"
        # Tiles and other inputs of removed items go too, unless a kept item still needs them.
        changed = True
        while changed:
            changed = False
            needed = self._needed(set(found))
            for rtype, src, dests in meta.refs:
                if src in found and rtype in (b"dimg", b"base"):
                    for d in dests:
                        if d not in found and d not in needed:
                            found[d] = "thumbnail tile"
                            changed = True
        return found

    def _needed(self, removed: set[int]) -> set[int]:
        """Items that kept items depend on (derivation inputs)."""
        needed: set[int] = set()
        for rtype, src, dests in self.meta.refs:
            if src not in removed and rtype in (b"dimg", b"base"):
                needed.update(dests)
        needed.add(self.meta.primary)
        return needed

    def findings(self) -> list[Finding]:
        inv = Inventory()
        for item_id, what in self._removable().items():
            self._item_findings(item_id, what, inv)
        for prop in self.meta.properties:
            if prop.type == b"colr" and self.data[prop.body : prop.body + 4] in (b"prof", b"rICC"):
                inv.extend([icc.finding(self.data[prop.body + 4 : prop.end], "HEIF colr")])
            elif prop.type == b"udes":
                text = printable(self.data[prop.body + 4 : prop.end].replace(b"\x00", b" "))
                if text:
                    inv.add("comment", f"user description {text!r} (HEIF udes)")
        for child in self.meta.children:
            if child.type not in META_KEEP and not self._blank(child):
                inv.add("other_metadata", f"box {printable(child.type)!r} in meta")
        for box in self.boxes:
            if box.type == b"uuid" and self.data[box.start + 8 : box.start + 24] == C2PA_UUID:
                inv.add("c2pa", f"C2PA manifest (uuid box, {size_text(box.end - box.start)})")
            elif box.type not in TOP_LEVEL_KEEP and not self._blank(box):
                inv.add(
                    "other_metadata",
                    f"box {printable(box.type)!r} ({size_text(box.end - box.start)})",
                )
        if self.file_end < len(self.data):
            inv.add(
                "trailing_data", f"{size_text(len(self.data) - self.file_end)} after the last box"
            )
        return inv.findings()

    def _blank(self, box: Box) -> bool:
        """A free/skip box holding only zeros (padding, such as our own filler)."""
        if box.type not in (b"free", b"skip"):
            return False
        return not self.data[box.body : box.end].strip(b"\x00")

    def _item_findings(self, item_id: int, what: str, inv: Inventory) -> None:
        try:
            data = self.item_data(item_id)
        except (MalformedImage, UnsupportedImage):
            inv.add("other_metadata", f"{what} (unreadable)")
            return
        if what == "Exif item":
            if len(data) >= 4:
                skip = struct.unpack_from(">I", data)[0]
                inv.extend(
                    exif.findings(
                        data[4 + skip :] if 4 + skip <= len(data) else data[4:], "EXIF item"
                    )
                )
        elif what == "XMP item":
            inv.extend(xmp.findings(data, "XMP item"))
        elif what == "thumbnail image":
            ispe = self._prop(item_id, b"ispe")
            dims = ""
            if ispe is not None and ispe.end - ispe.body >= 12:
                w, h = struct.unpack_from(">II", self.data, ispe.body + 4)
                dims = f"{w}x{h} "
            inv.add("thumbnail", f"thumbnail {dims}({size_text(len(data))}, HEIF thmb item)")
        elif what != "thumbnail tile":
            inv.add("other_metadata", f"{what} ({size_text(len(data))})")

    # -- removal ----------------------------------------------------------------------------

    def padded(self, length: int) -> bytes:
        missing = self._missing(length)
        if missing < 8:  # too small for a box
            return self.data + bytes(missing)
        return self.data + _free_box(missing)  # a top-level free box: skipped by readers

    def strip(self, options: StripOptions) -> Stripped:
        removable = self._removable()
        removed = list(dict.fromkeys(removable.values()))
        removed += [
            f"box {printable(b.type)!r}" for b in self.boxes if b.type not in TOP_LEVEL_KEEP
        ]
        removed += [
            f"box {printable(b.type)!r} in meta"
            for b in self.meta.children
            if b.type not in META_KEEP
        ]
        icc_dropped = not options.keep_icc and self._has_icc()
        if icc_dropped:
            removed.append("ICC profile (colr)")
        if self.file_end < len(self.data):
            removed.append("data after the last box")
        moved = None
        if not options.size_preserving and not any(b.type == b"moov" for b in self.boxes):
            try:
                moved = self._strip_moving(set(removable), options)
            except UnsupportedImage:
                moved = None
        if moved is not None:
            return Stripped(moved, tuple(removed))
        try:
            return Stripped(self._strip_in_place(set(removable), options), tuple(removed))
        except UnsupportedImage:
            if options.size_preserving:
                raise
            return self.reencode(options)

    def reencode(self, options: StripOptions) -> Stripped:
        """The last resort when surgery is not possible: decode, and encode with nothing but
        the pixels (orientation applied, ICC per `keep_icc`). Not lossless, and says so."""
        from veil.formats import reencode

        data = reencode.heif(self.data, self.name, keep_icc=options.keep_icc)
        return Stripped(data, ("everything but the pixels (re-encoded)",), reencoded=True)

    def _has_icc(self) -> bool:
        return any(
            p.type == b"colr" and self.data[p.body : p.body + 4] in (b"prof", b"rICC")
            for p in self.meta.properties
        )

    def _cuts(self, removed: set[int]) -> list[tuple[int, int]]:
        """File ranges of removed items' data (construction method 0) not shared with kept ones."""
        kept_ranges = []
        cut: list[tuple[int, int]] = []
        for loc in self.meta.locations.values():
            if loc.method != 0:
                continue
            for ext in loc.extents:
                start = loc.base + ext.offset
                rng = (start, start + (ext.length or len(self.data) - start))
                (cut if loc.item in removed else kept_ranges).append(rng)
        return [
            c for c in sorted(set(cut)) if not any(a < c[1] and c[0] < b for a, b in kept_ranges)
        ]

    def _strip_moving(self, removed: set[int], options: StripOptions) -> bytes:
        data = self.data
        cuts = [c for c in self._cuts(removed) if self._inside_mdat(c)]
        kept_boxes = [b for b in self.boxes if b.type in TOP_LEVEL_KEEP]
        # Place every kept top-level box in the new file; meta's new size is known up front
        # because iloc keeps its field widths.
        meta_len = len(self._meta_bytes(removed, options, lambda off: off))
        new_start: dict[int, int] = {}
        pos = 0
        for box in kept_boxes:
            new_start[box.start] = pos
            if box.type == b"meta":
                pos += meta_len
            elif box.type == b"mdat":
                pos += box.end - box.start - sum(e - s for s, e in cuts if box.start <= s < box.end)
            else:
                pos += box.end - box.start

        def remap(offset: int) -> int:
            for box in kept_boxes:
                if box.start <= offset < box.end or (offset == box.end and box.type == b"mdat"):
                    if box.type == b"meta":
                        raise UnsupportedImage("HEIF item data inside the meta box")
                    before = sum(e - s for s, e in cuts if box.start <= s and e <= offset)
                    if any(s < offset < e for s, e in cuts):
                        raise UnsupportedImage("HEIF kept data overlaps removed data")
                    return new_start[box.start] + offset - box.start - before
            raise UnsupportedImage(f"HEIF item offset {offset} is outside every kept box")

        view = memoryview(data)
        pieces: list[bytes | memoryview] = []
        for box in kept_boxes:
            if box.type == b"meta":
                meta = self._meta_bytes(removed, options, remap)
                if len(meta) != meta_len:
                    raise UnsupportedImage("HEIF iloc offsets do not fit their fields")
                pieces.append(meta)
            elif box.type == b"mdat":
                pieces.extend(self._mdat_without(box, cuts, view))
            else:
                pieces.append(view[box.start : box.end])
        return b"".join(pieces)

    def _inside_mdat(self, rng: tuple[int, int]) -> bool:
        return any(b.type == b"mdat" and b.body <= rng[0] and rng[1] <= b.end for b in self.boxes)

    def _mdat_without(
        self, box: Box, cuts: list[tuple[int, int]], view: memoryview
    ) -> list[bytes | memoryview]:
        """The mdat box without the cut ranges: a new header, then views of what stays."""
        data = self.data
        inside = [(s, e) for s, e in cuts if box.start <= s < box.end]
        body: list[bytes | memoryview] = []
        pos = box.body
        for s, e in inside:
            body.append(view[pos:s])
            pos = e
        body.append(view[pos : box.end])
        payload_len = sum(map(len, body))
        size = box.header + payload_len
        if box.header == 16:
            header = struct.pack(">I4sQ", 1, b"mdat", size)
        elif struct.unpack_from(">I", data, box.start)[0] == 0:
            header = struct.pack(">I4s", 0, b"mdat")
        else:
            header = struct.pack(">I4s", size, b"mdat")
        return [header, *body]

    def _strip_in_place(self, removed: set[int], options: StripOptions) -> bytes:
        out = bytearray(self.data)
        meta_box = self.meta.box
        meta = self._meta_bytes(removed, options, lambda off: off)
        padding = (meta_box.end - meta_box.start) - len(meta)
        if 0 < padding < 8:  # too little room for a free box: zeros after the handler name
            meta = self._meta_bytes(removed, options, lambda off: off, slack=padding)
            padding = (meta_box.end - meta_box.start) - len(meta)
        if padding and padding < 8:
            raise UnsupportedImage("HEIF meta box cannot be rebuilt at the same length")
        if padding:
            meta = _with_free(meta, padding, meta_box.header)
        out[meta_box.start : meta_box.end] = meta
        for start, end in self._cuts(removed):
            out[start:end] = bytes(end - start)
        for box in self.boxes:
            if box.type not in TOP_LEVEL_KEEP:
                out[box.start : box.end] = _free_box(box.end - box.start)
        if self.file_end < len(self.data):
            out[self.file_end :] = bytes(len(self.data) - self.file_end)
        return bytes(out)

    # -- rebuilding the meta box ------------------------------------------------------------

    def _meta_bytes(self, removed: set[int], options: StripOptions, remap, slack: int = 0) -> bytes:
        data, meta = self.data, self.meta
        children: list[bytes] = []
        for child in meta.children:
            if child.type == b"iinf":
                children.append(self._iinf(removed))
            elif child.type == b"iloc":
                children.append(self._iloc(removed, remap))
            elif child.type == b"iref":
                children.append(self._iref(removed))
            elif child.type == b"iprp":
                children.append(self._iprp(child, removed, options))
            elif child.type == b"idat":
                children.append(self._idat(child, removed))
            elif child.type == b"hdlr":
                children.append(self._hdlr(child, slack))
            elif child.type in META_KEEP:
                children.append(data[child.start : child.end])
        payload = data[meta.box.body : meta.box.body + 4] + b"".join(c for c in children if c)
        return _box(b"meta", payload)

    def _iinf(self, removed: set[int]) -> bytes:
        kept = [i for i in self.meta.items.values() if i.id not in removed]
        version = self.meta.iinf_version
        count = struct.pack(">H" if version == 0 else ">I", len(kept))
        entries = b"".join(self._infe(i) for i in kept)
        return _box(b"iinf", bytes([version, 0, 0, 0]) + count + entries)

    def _infe(self, item: ItemInfo) -> bytes:
        # Coded-image items end at their name; other kinds keep their extra fields as they are.
        if item.type in (b"mime", b"uri ") or item.protection:
            return self.data[item.box.start : item.box.end]
        return item.without_name()

    def _hdlr(self, hdlr: Box, slack: int = 0) -> bytes:
        """The handler box with an empty name (a free-text field), plus `slack` zeros."""
        if hdlr.end - hdlr.body < 24:
            return self.data[hdlr.start : hdlr.end]
        return _box(b"hdlr", self.data[hdlr.body : hdlr.body + 24] + bytes(1 + slack))

    def _iloc(self, removed: set[int], remap) -> bytes:
        version, off_size, len_size, base_size, index_size = self.meta.iloc_head
        id_size = 2 if version < 2 else 4
        kept = [loc for loc in self.meta.locations.values() if loc.item not in removed]
        out = bytearray(
            [version, 0, 0, 0, (off_size << 4) | len_size, (base_size << 4) | index_size]
        )
        out += len(kept).to_bytes(id_size, "big")
        for loc in kept:
            base, extents = loc.base, loc.extents
            if loc.method == 0 and extents:
                starts = [remap(loc.base + e.offset) for e in extents]
                base = remap(loc.base) if base_size else 0
                extents = [
                    Extent(e.index, s - base, e.length)
                    for e, s in zip(extents, starts, strict=True)
                ]
            out += loc.item.to_bytes(id_size, "big")
            if version in (1, 2):
                out += loc.method.to_bytes(2, "big")
            out += loc.data_ref.to_bytes(2, "big") + _fit(base, base_size)
            out += len(extents).to_bytes(2, "big")
            for e in extents:
                if version in (1, 2) and index_size:
                    out += _fit(e.index, index_size)
                out += _fit(e.offset, off_size) + _fit(e.length, len_size)
        return _box(b"iloc", bytes(out))

    def _iref(self, removed: set[int]) -> bytes:
        id_size = 2 if self.meta.iref_version == 0 else 4
        refs = b""
        for rtype, src, dests in self.meta.refs:
            kept = [d for d in dests if d not in removed]
            if src in removed or not kept:
                continue
            body = src.to_bytes(id_size, "big") + len(kept).to_bytes(2, "big")
            body += b"".join(d.to_bytes(id_size, "big") for d in kept)
            refs += _box(rtype, body)
        if not refs:
            return b""
        return _box(b"iref", bytes([self.meta.iref_version, 0, 0, 0]) + refs)

    def _iprp(self, iprp: Box, removed: set[int], options: StripOptions) -> bytes:
        data, meta = self.data, self.meta
        neutral = self._neutralised_properties(options)
        parts: list[bytes] = []
        for child in parse_boxes(data, iprp.body, iprp.end):
            if child.type == b"ipco":
                props = [
                    neutral.get(i + 1, data[p.start : p.end]) for i, p in enumerate(meta.properties)
                ]
                parts.append(_box(b"ipco", b"".join(props)))
            elif child.type == b"ipma":
                parts.append(self._ipma(removed, set(neutral)))
            else:
                parts.append(data[child.start : child.end])
        return _box(b"iprp", b"".join(parts))

    def _neutralised_properties(self, options: StripOptions) -> dict[int, bytes]:
        """Property boxes replaced by an empty one of the same type (indices must not move)."""
        out: dict[int, bytes] = {}
        for i, prop in enumerate(self.meta.properties, start=1):
            colour_type = self.data[prop.body : prop.body + 4]
            if prop.type == b"colr" and colour_type in (b"prof", b"rICC") and not options.keep_icc:
                # nclx, everything "unspecified"; no item refers to it any more.
                out[i] = _box(b"colr", b"nclx" + struct.pack(">HHHB", 2, 2, 2, 0))
            elif prop.type == b"udes":
                out[i] = _box(b"udes", b"\x00" * 4 + b"\x00\x00\x00\x00")
        return out

    def _ipma(self, removed: set[int], dropped_props: set[int]) -> bytes:
        version, flags = self.meta.ipma_version_flags
        wide = flags & 1
        entries = [(i, a) for i, a in self.meta.associations.items() if i not in removed]
        out = bytearray([version, *flags.to_bytes(3, "big")])
        out += len(entries).to_bytes(4, "big")
        for item, assoc in entries:
            assoc = [(ess, idx) for ess, idx in assoc if idx not in dropped_props]
            out += item.to_bytes(2 if version < 1 else 4, "big") + bytes([len(assoc)])
            for essential, index in assoc:
                if wide:
                    out += ((essential << 15) | index).to_bytes(2, "big")
                else:
                    out += bytes([(essential << 7) | index])
        return _box(b"ipma", bytes(out))

    def _idat(self, idat: Box, removed: set[int]) -> bytes:
        body = bytearray(self.data[idat.body : idat.end])
        for item in removed:
            loc = self.meta.locations.get(item)
            if loc is None or loc.method != 1:
                continue
            for ext in loc.extents:
                start = loc.base + ext.offset
                end = start + (ext.length or len(body) - start)
                body[start:end] = bytes(max(0, min(end, len(body)) - start))
        return self.data[idat.start : idat.body] + bytes(body)


class Avif(Heif):
    name = "avif"
    mime = "image/avif"


def _parse_meta(data: bytes, box: Box) -> Meta:
    if box.end - box.body < 4:
        raise MalformedImage("HEIF meta box is truncated")
    children = parse_boxes(data, box.body + 4, box.end)
    meta = Meta(box, children)
    for child in children:
        r = Reader(data, child.body, child.end)
        if child.type == b"pitm":
            version = r.uint(1)
            r.uint(3)
            meta.primary = r.uint(2 if version == 0 else 4)
        elif child.type == b"iinf":
            _parse_iinf(data, child, r, meta)
        elif child.type == b"iloc":
            _parse_iloc(r, meta)
        elif child.type == b"iref":
            _parse_iref(data, child, r, meta)
        elif child.type == b"iprp":
            _parse_iprp(data, child, meta)
    return meta


def _parse_iinf(data: bytes, box: Box, r: Reader, meta: Meta) -> None:
    meta.iinf_version = r.uint(1)
    r.uint(3)
    r.uint(2 if meta.iinf_version == 0 else 4)
    for infe in parse_boxes(data, r.pos, box.end):
        if infe.type != b"infe":
            continue
        e = Reader(data, infe.body, infe.end)
        version = e.uint(1)
        flags = e.uint(3)
        if version < 2:
            raise UnsupportedImage("HEIF item info version 0/1 is not supported")
        item_id = e.uint(2 if version == 2 else 4)
        protection = e.uint(2)
        item_type = data[e.pos : e.pos + 4]
        e.uint(4)
        name = e.cstring()
        content_type = e.cstring() if item_type == b"mime" else b""
        meta.items[item_id] = ItemInfo(
            item_id, item_type, infe, content_type.lower(), version, flags, protection, name
        )
        if len(meta.items) > MAX_ITEMS:
            raise MalformedImage("HEIF lists too many items")


def _parse_iloc(r: Reader, meta: Meta) -> None:
    version = r.uint(1)
    r.uint(3)
    if version > 2:
        raise UnsupportedImage(f"HEIF iloc version {version} is not supported")
    sizes = r.uint(1)
    off_size, len_size = sizes >> 4, sizes & 15
    sizes = r.uint(1)
    base_size, index_size = sizes >> 4, (sizes & 15 if version in (1, 2) else 0)
    if any(s not in (0, 4, 8) for s in (off_size, len_size, base_size, index_size)):
        raise MalformedImage("HEIF iloc has invalid field sizes")
    meta.iloc_head = (version, off_size, len_size, base_size, index_size)
    count = r.uint(2 if version < 2 else 4)
    if count > MAX_ITEMS:
        raise MalformedImage("HEIF iloc lists too many items")
    for _ in range(count):
        item = r.uint(2 if version < 2 else 4)
        method = r.uint(2) & 15 if version in (1, 2) else 0
        data_ref = r.uint(2)
        base = r.uint(base_size)
        n = r.uint(2)
        extents = []
        for _ in range(n):
            index = r.uint(index_size) if version in (1, 2) else 0
            extents.append(Extent(index, r.uint(off_size), r.uint(len_size)))
        meta.locations[item] = Location(item, method, data_ref, base, extents)


def _parse_iref(data: bytes, box: Box, r: Reader, meta: Meta) -> None:
    meta.iref_version = r.uint(1)
    r.uint(3)
    id_size = 2 if meta.iref_version == 0 else 4
    for ref in parse_boxes(data, r.pos, box.end):
        rr = Reader(data, ref.body, ref.end)
        src = rr.uint(id_size)
        count = rr.uint(2)
        meta.refs.append((ref.type, src, [rr.uint(id_size) for _ in range(count)]))


def _parse_iprp(data: bytes, box: Box, meta: Meta) -> None:
    for child in parse_boxes(data, box.body, box.end):
        if child.type == b"ipco":
            meta.ipco = child
            meta.properties = parse_boxes(data, child.body, child.end)
        elif child.type == b"ipma":
            r = Reader(data, child.body, child.end)
            version = r.uint(1)
            flags = r.uint(3)
            meta.ipma_version_flags = (version, flags)
            for _ in range(r.uint(4)):
                item = r.uint(2 if version < 1 else 4)
                assoc = []
                for _ in range(r.uint(1)):
                    if flags & 1:
                        v = r.uint(2)
                        assoc.append((bool(v >> 15), v & 0x7FFF))
                    else:
                        v = r.uint(1)
                        assoc.append((bool(v >> 7), v & 0x7F))
                meta.associations.setdefault(item, []).extend(assoc)


def _box(btype: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), btype) + payload


def _free_box(size: int) -> bytes:
    return struct.pack(">I4s", size, b"free") + bytes(size - 8)


def _with_free(meta: bytes, padding: int, header: int) -> bytes:
    """The meta box grown by `padding` bytes: a free box inside it, sizes fixed."""
    if header != 8:
        raise UnsupportedImage("HEIF meta box with a 64-bit size cannot be rebuilt in place")
    body = meta[8:] + _free_box(padding)
    return _box(b"meta", body)


def _fit(value: int, size: int) -> bytes:
    if size == 0:
        if value:
            raise UnsupportedImage("HEIF iloc value does not fit its field")
        return b""
    if value < 0 or value >= 1 << (8 * size):
        raise UnsupportedImage("HEIF iloc value does not fit its field")
    return value.to_bytes(size, "big")
