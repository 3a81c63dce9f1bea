"""What extraction hands to the rest of Veil: payloads, where they sit, and the splice back."""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Callable
from dataclasses import dataclass, field

from veil.extract.layers import Encoder, Layer, Misaligned
from veil.extract.limits import Limits


class SpliceError(ValueError):
    """New bytes cannot be put back without breaking the body's structure."""


@dataclass
class Payload:
    """One embedded image: its bytes, what they are, and where they sit in the body."""

    data: bytes
    format: str
    locator: str  # for people: 'multipart part "file" (photo.jpg)', 'json $.messages[0]...'
    size_declared: bool = False  # the protocol announced this length before the bytes
    replacement: bytes | None = None

    def replace(self, new: bytes) -> None:
        """Hand back bytes for this image; the same bytes as before count as no change."""
        self.replacement = None if new == self.data else new

    @property
    def output(self) -> bytes:
        return self.data if self.replacement is None else self.replacement


@dataclass(frozen=True)
class Document:
    """A non-image file seen in the body (a PDF): noted, never transformed."""

    format: str
    locator: str
    size: int


@dataclass(frozen=True)
class Span:
    """A byte range of the body whose content is produced from a payload by `encode`."""

    start: int
    end: int
    payload: Payload
    encode: Callable[[bytes], bytes]


@dataclass
class Extraction:
    body: bytes
    spans: list[Span] = field(default_factory=list)
    shape: str = "none"  # raw, multipart, json, urlencoded, text, none
    documents: list[Document] = field(default_factory=list)
    # Run on a spliced body; raise SpliceError when the new body would not parse as the old.
    checks: list[Callable[[bytes], None]] = field(default_factory=list)

    @property
    def payloads(self) -> list[Payload]:
        return [s.payload for s in self.spans]

    @property
    def changed(self) -> bool:
        return any(p.replacement is not None for p in self.payloads)

    def splice(self) -> bytes:
        """The body with every replaced payload put back in place, in its original form."""
        if not self.changed:
            return self.body
        out = bytearray()
        pos = 0
        for span in self.spans:  # sorted, never overlapping
            out += self.body[pos : span.start]
            payload = span.payload
            if payload.replacement is None:
                out += self.body[span.start : span.end]
            else:
                out += span.encode(payload.replacement)
            pos = span.end
        out += self.body[pos:]
        body = bytes(out)
        for check in self.checks:
            check(body)
        return body


@dataclass
class Collector:
    """Gathers what the scan finds, keeping ranges sorted and the limits enforced."""

    limits: Limits
    size_declared: bool = False
    spans: list[Span] = field(default_factory=list)
    documents: list[Document] = field(default_factory=list)
    checks: list[Callable[[bytes], None]] = field(default_factory=list)
    _ranges: list[tuple[int, int]] = field(default_factory=list)  # every found range, sorted

    def add_image(
        self, layer: Layer, start: int, end: int, payload: Payload, leaf: Encoder
    ) -> None:
        root_start, root_end = self._locate(layer, start, end, payload.locator)
        self._claim(root_start, root_end)
        insort(
            self.spans,
            Span(root_start, root_end, payload, layer.encoder(leaf)),
            key=lambda s: s.start,
        )
        self.limits.check_count(len(self.spans))

    def add_document(self, layer: Layer, start: int, end: int, document: Document) -> None:
        self._claim(*self._locate(layer, start, end, document.locator))
        self.documents.append(document)

    def covers(self, layer: Layer, offset: int) -> bool:
        """Whether this offset of a layer lies inside something already found."""
        try:
            root = layer.to_root(offset)
        except Misaligned:
            return False
        i = bisect_right(self._ranges, (root, float("inf"))) - 1
        return i >= 0 and self._ranges[i][0] <= root < self._ranges[i][1]

    def _locate(self, layer: Layer, start: int, end: int, locator: str) -> tuple[int, int]:
        try:
            return layer.to_root(start), layer.to_root(end)
        except Misaligned as exc:
            raise SpliceError(f"cannot locate the bytes of {locator} in the body") from exc

    def _claim(self, start: int, end: int) -> None:
        i = bisect_right(self._ranges, (start, float("inf")))
        before = self._ranges[i - 1] if i > 0 else None
        after = self._ranges[i] if i < len(self._ranges) else None
        if (before and before[1] > start) or (after and after[0] < end):
            raise SpliceError(f"two payloads overlap at bytes {start}-{end} of the body")
        self._ranges.insert(i, (start, end))
