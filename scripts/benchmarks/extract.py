"""Extraction and splicing of large bodies: how long finding images and putting them back takes.

Bodies of about 20 MB in the shapes clients send: JSON with five ~3 MB photos as data URLs,
the same with every slash escaped (PHP-style JSON, the worst case for unescaping), gzip- and
zstd-encoded JSON, multipart with raw photos, 20 MB of chat JSON with no image at all (the
prefilter's cost), and the same where every fifth word is an image prefix quoted as text (the
prefilter's worst case). "extract" is extract() alone; "extract+splice" also replaces every
payload with new bytes of the same size and rebuilds the body; "wire round trip" adds
Content-Encoding decode and encode. Peak memory is measured in a separate run (tracemalloc).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import random
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import table, time_it
from PIL import Image
from veil import splice
from veil.extract import extract

PHOTOS = 5
MB = 1_000_000


def photo(seed: int) -> bytes:
    """A ~3 MB JPEG of noise (noise does not compress, so the file stays large)."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (2000, 1400), rng.randbytes(2000 * 1400 * 3))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    return out.getvalue()


def json_body(images: list[bytes], escape_slashes: bool = False) -> bytes:
    content = [{"type": "text", "text": "lorem ipsum " * 2000}]
    for data in images:
        url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
        content.append({"type": "image_url", "image_url": {"url": url}})
    text = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]})
    return (text.replace("/", "\\/") if escape_slashes else text).encode()


def multipart_body(images: list[bytes]) -> tuple[bytes, str]:
    boundary = "----VeilBench7MA4YWxkTrZu0gW"
    out = b""
    for i, data in enumerate(images):
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file{i}"; '
                f'filename="p{i}.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    out += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nvision\r\n'.encode()
    )
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


CHAT_WORDS = [
    "the",
    "a",
    "photo",
    "of",
    "my",
    "cat",
    "on",
    "the",
    "sofa,",
    "please",
    "describe",
    "it",
    "in",
    "detail",
]
PREFIX_WORDS = ["/9j/", "iVBORw0KGgo", "R0lGOD", "data:image/png;base64,", "\\/9j\\/"]


def text_only_body(size: int, words: list[str]) -> bytes:
    """A long chat conversation as JSON, without any image."""
    rng = random.Random(1)
    messages = []
    total = 0
    while total < size:
        text = " ".join(rng.choice(words) for _ in range(200))
        messages.append({"role": "user", "content": text})
        total += len(text) + 40
    return json.dumps({"messages": messages}).encode()


def replace_all(body: bytes, content_type: str, new: list[bytes]) -> bytes:
    extraction = extract(body, content_type)
    for payload, data in zip(extraction.payloads, new, strict=True):
        payload.replace(data)
    return extraction.splice()


def wire_round_trip(wire: bytes, encoding: str, new: list[bytes]) -> bytes:
    headers = {"content-encoding": encoding, "content-type": "application/json"}
    body = splice.decode(wire, headers, 64 * 2**20)
    return splice.rebuild(replace_all(body, "application/json", new), headers).body


def peak_mib(fn) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    images = [photo(i) for i in range(PHOTOS)]
    new = [bytes([0xFF, 0xD8, 0xFF]) + os.urandom(len(d) - 3) for d in images]
    body = json_body(images)
    escaped = json_body(images, escape_slashes=True)
    multipart, multipart_type = multipart_body(images)
    text_only = text_only_body(len(body), CHAT_WORDS)
    # Every fifth word an image prefix, quoted as text: the prefilter's worst case.
    adversarial = text_only_body(len(body), CHAT_WORDS + PREFIX_WORDS * 4)
    gzipped = gzip.compress(body, compresslevel=6)
    zstd_wire = splice.rebuild(body, {"content-encoding": "zstd"}).body

    cases = [
        ("json data URLs", "extract", lambda: extract(body, "application/json"), body),
        ("json data URLs", "extract+splice", lambda: replace_all(body, "", new), body),
        ("json, escaped \\/", "extract", lambda: extract(escaped, ""), escaped),
        ("json, escaped \\/", "extract+splice", lambda: replace_all(escaped, "", new), escaped),
        ("multipart raw", "extract", lambda: extract(multipart, multipart_type), multipart),
        (
            "multipart raw",
            "extract+splice",
            lambda: replace_all(multipart, multipart_type, new),
            multipart,
        ),
        ("json chat, no image", "extract", lambda: extract(text_only, ""), text_only),
        ("json, prefixes as words", "extract", lambda: extract(adversarial, ""), adversarial),
        ("json gzip", "wire round trip", lambda: wire_round_trip(gzipped, "gzip", new), gzipped),
        (
            "json zstd",
            "wire round trip",
            lambda: wire_round_trip(zstd_wire, "zstd", new),
            zstd_wire,
        ),
    ]
    rows = []
    for shape, step, fn, wire in cases:
        timing = time_it(fn, repeat=5, warmup=1)
        rows.append(
            [
                shape,
                step,
                f"{len(wire) / MB:.1f}",
                timing["median_ms"],
                timing["p90_ms"],
                f"{peak_mib(fn):.0f}",
            ]
        )
    size = sum(map(len, images)) / PHOTOS / MB
    print(f"{PHOTOS} photos of {size:.1f} MB each; Python {sys.version.split()[0]}")
    print(table(["body", "step", "wire MB", "median ms", "p90 ms", "peak MiB"], rows))


if __name__ == "__main__":
    main()
