"""Images written as base64 text: a cheap prefilter, then the run, its form, and its bytes.

The prefilter looks for the base64 spelling of image magic numbers at the start of a base64
run (after a quote, a comma, an equals sign, a line break ...) before anything is decoded.
It tolerates the ways an enclosing layer may have escaped the text (`\\/` in JSON, `%2F` in a
form, both nested), so that one pass over the whole body says whether any layer below it can
hold an image. A run is decoded only where the prefilter matched, and a replacement is written
back in the same form: the same alphabet, padding and line wrapping.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass

# Wrapped base64 uses a fixed line length, a multiple of 4 (MIME 76, PEM 64); lines that do not
# follow it end the run (a run and a line of text after it are not one run).
MIN_LINE_LENGTH = 40
MAX_LINE_LENGTH = 128
_RUN_ENDS = frozenset(b"\r\n\"'<>)]},;&\\")
# Fewer decoded bytes than this are never treated as an image: "/9j/" quoted in a chat
# message is not a JPEG. The smallest real images (GIF, WebP) are a few dozen bytes.
MIN_IMAGE_BYTES = 32

_SLASH = rb"(?:_|(?:\\|%5[cC])*(?:/|%2[fF])|(?:\\|%5[cC])+u002[fF])"
_B64 = rb"[A-Za-z0-9+/_-]"
_BMP = rb"Qk" + _B64 + rb"{6}AAAA"
# Base64 of each format's first bytes (aligned at the start of the data).
_MAGIC = [
    _SLASH + rb"9j" + _SLASH,  # JPEG  FF D8 FF
    rb"iVBORw0KGg",  # PNG   89 "PNG" 0D 0A 1A 0A (what follows varies)
    rb"R0lGOD",  # GIF   'GIF8'
    rb"UklGR",  # RIFF (WebP is confirmed on the decoded bytes)
    rb"AAAA" + _B64 + rb"GZ0eX",  # ISO-BMFF 'ftyp' (HEIF, AVIF) with a box shorter than 256
    rb"SUkqA",  # TIFF  'II*' 00
    rb"SUkrA",  # BigTIFF 'II+' 00
    rb"TU0AK",  # TIFF / BigTIFF 'MM' 00 2A|2B
    _BMP,  # BMP 'BM', size, zero reserved bytes
    rb"JVBERi0",  # PDF '%PDF-' (noted, not an image)
]
_PREFIX = rb"(?P<prefix>" + rb"|".join(_MAGIC) + rb")"
# An image's run is at least this long, escapes included (MIN_IMAGE_BYTES, and wrapped
# lines are at least MIN_LINE_LENGTH): shorter mentions of a prefix are skipped by the scan.
_LONG_ENOUGH = rb"(?=[A-Za-z0-9+/=_%\\-]{40})"
# What may stand before the run: anything that is not base64, a percent-escape (`%2C`,
# `%22`) or a JSON escape (`\n`). One pattern each: a pattern that starts with a character
# class or a literal is scanned fast.
_CANDIDATE = re.compile(rb"[^A-Za-z0-9+/_-]" + _LONG_ENOUGH + _PREFIX)
_CANDIDATE_AFTER_PERCENT = re.compile(rb"%[0-9A-Fa-f]{2}" + _LONG_ENOUGH + _PREFIX)
_CANDIDATE_AFTER_ESCAPE = re.compile(rb"\\[nrtbf]" + _LONG_ENOUGH + _PREFIX)
_CANDIDATE_AT_START = re.compile(_LONG_ENOUGH + _PREFIX)

_STD = rb"A-Za-z0-9+/"
_URL = rb"A-Za-z0-9_-"
_RUN = {
    urlsafe: re.compile(rb"[%s]+(?:(?:\r\n|\n)[%s]+)*(?:==?)?" % (chars, chars))
    for urlsafe, chars in ((False, _STD), (True, _URL))
}
_LINE_BREAK = re.compile(rb"(\r?\n)")
_ALPHABET = {False: frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
_ALPHABET[True] = (_ALPHABET[False] - frozenset(b"+/")) | frozenset(b"-_")


# A literal part of each prefix, and how far before it the prefix may start. `bytes.find`
# scans for these at memory speed; the patterns then run only in a small window around each.
# Short anchors are frequent inside any base64; a quick look at their neighbours (the slash
# before JPEG's "9j", BMP's zero bytes) drops most of them before the patterns run.
_ANCHORS: list[tuple[bytes, int, re.Pattern[bytes] | None]] = [
    (b"9j", 16, re.compile(rb"(?<=[/_fF])9j")),  # JPEG: `/9j`, `\\/9j`, `%2F9j`, `_9j`
    (b"iVBORw0KGg", 0, None),
    (b"R0lGOD", 0, None),
    (b"UklGR", 0, None),
    (b"GZ0eX", 5, None),
    (b"SUkqA", 0, None),
    (b"SUkrA", 0, None),
    (b"TU0AK", 0, None),
    (b"Qk", 0, re.compile(_BMP)),
    (b"JVBERi0", 0, None),
]
_WINDOW_AFTER = 48  # covers the lookahead of _LONG_ENOUGH
_TAIL = re.compile(rb"[A-Za-z0-9+/=_%\\-]{24}")  # what _LONG_ENOUGH needs after any anchor
_LEAD_LENGTH = 3  # the longest lead, a percent-escape
_MAX_BACK = max(back for _, back, _ in _ANCHORS)


def candidates(data: bytes, near: list[int] | None = None) -> list[int]:
    """Offsets where the base64 of an image (or PDF) may start, in this text or below it.

    `near`: where the enclosing layer's scan saw them (mapped into this text); only those
    places are looked at again, instead of the whole text.
    """
    found: set[int] = set()
    patterns = [_CANDIDATE]
    if b"%" in data:
        patterns.append(_CANDIDATE_AFTER_PERCENT)
    if b"\\" in data:
        patterns.append(_CANDIDATE_AFTER_ESCAPE)
    windows = _anchor_windows(data) if near is None else _near_windows(near)
    for low, high in windows:
        for pattern in patterns:
            found.update(m.start("prefix") for m in pattern.finditer(data, max(0, low), high))
    if _CANDIDATE_AT_START.match(data):
        found.add(0)
    return sorted(found)


def _anchor_windows(data: bytes) -> Iterator[tuple[int, int]]:
    for anchor, back, shape in _ANCHORS:
        at = data.find(anchor)
        while at >= 0:
            # Too short to be an image ("/9j/" in a sentence), or not shaped like the prefix.
            if _TAIL.match(data, at) and (shape is None or shape.match(data, at)):
                yield at - back - _LEAD_LENGTH, at + _WINDOW_AFTER
            at = data.find(anchor, at + 1)


def _near_windows(near: list[int]) -> Iterator[tuple[int, int]]:
    for at in near:
        yield at - _MAX_BACK - _LEAD_LENGTH, at + _MAX_BACK + _WINDOW_AFTER


@dataclass(frozen=True)
class Base64Form:
    """How a run was written, so a replacement is written the same way."""

    urlsafe: bool = False
    padded: bool = True
    line_length: int | None = None  # wrapped at this many characters
    newline: bytes = b"\n"

    def encode(self, data: bytes) -> bytes:
        text = base64.urlsafe_b64encode(data) if self.urlsafe else base64.b64encode(data)
        if not self.padded:
            text = text.rstrip(b"=")
        if self.line_length:
            n = self.line_length
            text = self.newline.join(text[i : i + n] for i in range(0, len(text), n))
        return text

    def describe(self) -> str:
        words = ["base64url" if self.urlsafe else "base64"]
        if not self.padded:
            words.append("unpadded")
        if self.line_length:
            words.append(f"wrapped at {self.line_length}")
        return " ".join(words)


@dataclass(frozen=True)
class Run:
    start: int
    end: int
    form: Base64Form
    data: bytes  # the decoded bytes

    def is_data_url(self, text: bytes) -> bool:
        head = text[max(0, self.start - 200) : self.start].lower()
        return head.endswith(b";base64,") and b"data:" in head


def find_run(text: bytes, start: int) -> Run | None:
    """The base64 run that starts at `start`, decoded; None when there is none."""
    best = None
    for urlsafe in (False, True):
        m = _RUN[urlsafe].match(text, start)
        if m and (best is None or m.end() > best[1].end()):
            best = (urlsafe, m)
    if best is None:
        return None
    urlsafe, m = best
    if start > 0 and text[start - 1] in _ALPHABET[urlsafe]:
        return None  # the middle of a longer run: not where an image starts
    raw = m.group()
    wrapped = b"\n" in raw
    if wrapped:
        raw = raw[: _wrapped_length(raw, text, start)]
        wrapped = b"\n" in raw
    if len(raw) < MIN_IMAGE_BYTES * 4 // 3:
        return None
    form = _form(raw, urlsafe, wrapped)
    data = _decode(raw, urlsafe, wrapped)
    if data is None:
        return None
    return Run(start, start + len(raw), form, data)


def _wrapped_length(raw: bytes, text: bytes, start: int) -> int:
    """How much of a run with line breaks is one consistently wrapped run."""
    pieces = _LINE_BREAK.split(raw)  # line, break, line, break, ..., line
    width = len(pieces[0])
    if width % 4 or not MIN_LINE_LENGTH <= width <= MAX_LINE_LENGTH:
        return width
    length = width
    for i in range(2, len(pieces), 2):
        line, line_break = pieces[i], pieces[i - 1]
        if line_break != pieces[1] or len(line.rstrip(b"=")) > width:
            break
        if len(line) < width:  # the last line, unless it is text that follows the run
            end = start + length + len(line_break) + len(line)
            if line.endswith(b"=") or end == len(text) or text[end] in _RUN_ENDS:
                length += len(line_break) + len(line)
            break
        length += len(line_break) + len(line)
    return length


def _form(raw: bytes, urlsafe: bool, wrapped: bool) -> Base64Form:
    newline = b"\r\n" if wrapped and b"\r\n" in raw else b"\n"
    line_length = None
    chars = len(raw)
    if wrapped:
        line_length = len(raw.split(newline, 1)[0])
        chars -= raw.count(b"\n") + raw.count(b"\r")
    if raw.endswith(b"="):
        padded = True
    elif chars % 4:
        padded = False
    else:  # no padding was needed: the usual habit of each alphabet
        padded = not urlsafe
    return Base64Form(urlsafe, padded, line_length, newline)


def _decode(raw: bytes, urlsafe: bool, wrapped: bool) -> bytes | None:
    chars = raw.translate(None, b"\r\n=") if wrapped else raw.rstrip(b"=")
    if len(chars) % 4 == 1:
        chars = chars[:-1]  # a cut-off run: decode what is there (inspection will judge it)
    chars += b"=" * (-len(chars) % 4)
    try:
        return base64.b64decode(chars, altchars=b"-_" if urlsafe else None, validate=True)
    except (binascii.Error, ValueError):
        return None
