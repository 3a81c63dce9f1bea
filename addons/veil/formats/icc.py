"""ICC colour profiles: what to call one in a finding (its description and creation date).

A standard profile (sRGB, Display P3, Adobe RGB) says little; a calibrated display profile can
identify a machine. Either way it is reported, and kept or dropped per `keep_icc`.
"""

from __future__ import annotations

import struct

from veil.findings import Finding
from veil.formats.inventory import size_text
from veil.formats.tiffdata import printable


def finding(profile: bytes, where: str) -> Finding:
    name = description(profile)
    label = f"ICC profile {name!r}" if name else "ICC profile"
    created = _created(profile)
    when = f", created {created}" if created else ""
    return Finding("icc_profile", f"{label} ({size_text(len(profile))}{when}, {where})")


def description(profile: bytes) -> str:
    """The profile's `desc` text, or '' when absent or unreadable."""
    try:
        count = struct.unpack_from(">I", profile, 128)[0]
        for i in range(min(count, 256)):
            sig, offset, size = struct.unpack_from(">4sII", profile, 132 + 12 * i)
            if sig == b"desc":
                return _text(profile[offset : offset + size])
    except struct.error:
        return ""
    return ""


def _text(tag: bytes) -> str:
    if tag[:4] == b"desc" and len(tag) >= 12:
        n = struct.unpack_from(">I", tag, 8)[0]
        return printable(tag[12 : 12 + min(n, 256)])
    if tag[:4] == b"mluc" and len(tag) >= 28:
        length, offset = struct.unpack_from(">II", tag, 20)
        raw = tag[offset : offset + min(length, 512)]
        return printable(raw.decode("utf-16-be", "replace").encode())
    return ""


def _created(profile: bytes) -> str:
    if len(profile) < 36:
        return ""
    year, month, day = struct.unpack_from(">HHH", profile, 24)
    return f"{year:04d}-{month:02d}-{day:02d}" if year else ""
