"""Put new bytes back into the request (step 6): body encoding and the headers that describe it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from veil.extract.encoding import decode_body, encode_body


@dataclass
class SplicedRequest:
    body: bytes  # as sent on the wire (Content-Encoding applied again)
    set_headers: dict[str, str] = field(default_factory=dict)
    remove_headers: list[str] = field(default_factory=list)


def decode(raw: bytes, headers: Mapping[str, str], max_size: int) -> bytes:
    return decode_body(raw, headers.get("content-encoding", ""), max_size)


def rebuild(new_body: bytes, headers: Mapping[str, str]) -> SplicedRequest:
    wire = encode_body(new_body, headers.get("content-encoding", ""))
    spliced = SplicedRequest(wire)
    if "transfer-encoding" not in headers:
        spliced.set_headers["content-length"] = str(len(wire))
    return spliced
