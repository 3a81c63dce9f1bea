"""Properties of extraction and splicing, for every body shape, on random bodies.

1. Re-encoding a payload's own bytes gives back exactly the bytes it came from (the form is
   read exactly: alphabet, padding, wrapping, escapes), so a body whose payloads are handed
   back unchanged is byte-identical.
2. Replacing payloads puts the new bytes where the old ones were: extracting the new body
   finds exactly the replacements, and every byte outside the payloads is unchanged.

Random content includes CR/LF bytes, boundary-like sequences, quotes, backslashes,
percent signs and image prefixes that are not images.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from veil.extract import Extraction, extract
from veil.extract.layers import OffsetMap, UniformOffsetMap
from veil.formats import detect

MAGIC = [b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"II*\x00"]
TRICKY = [
    b"\r\n",
    b"\r",
    b"\n",
    b"--",
    b"\r\n--",
    b"\r\n\r\n",
    b'"',
    b"\\",
    b"\\/",
    b"=",
    b"&",
    b"%",
    b"%2F",
    b"+",
    b"/9j/ ",
    b"iVBORw0KGgo&",
    b"data:image/jpeg;base64,",
    b"\xff\xd8\xff",
]

PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("VEIL_HYPOTHESIS_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

images = st.builds(bytes.__add__, st.sampled_from(MAGIC), st.binary(min_size=40, max_size=300))
tricky_bytes = st.lists(
    st.one_of(st.binary(max_size=24), st.sampled_from(TRICKY)), max_size=12
).map(b"".join)
tricky_text = tricky_bytes.map(lambda b: b.decode("latin-1"))
BCHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'()+_,-./:=? "
boundaries = st.text(BCHARS, min_size=1, max_size=70).filter(lambda b: not b.endswith(" "))


@dataclass(frozen=True)
class Form:
    """One way a client writes base64: alphabet, padding, wrapping, data URL or bare."""

    urlsafe: bool
    padded: bool
    wrap: int | None
    newline: str
    data_url: bool

    def write(self, data: bytes) -> str:
        text = (base64.urlsafe_b64encode if self.urlsafe else base64.b64encode)(data).decode()
        if not self.padded:
            text = text.rstrip("=")
        if self.wrap:
            text = self.newline.join(
                text[i : i + self.wrap] for i in range(0, len(text), self.wrap)
            )
        return f"data:image/png;base64,{text}" if self.data_url else text


forms = st.builds(
    Form,
    st.booleans(),
    st.booleans(),
    st.sampled_from([None, 60, 64, 76]),
    st.sampled_from(["\n", "\r\n"]),
    st.booleans(),
)


@dataclass(frozen=True)
class Img:
    """An image placed in a generated document, written in some base64 form."""

    data: bytes
    form: Form


@dataclass(frozen=True)
class Nested:
    """A JSON document serialised into a string of the enclosing document."""

    value: object


def written_images(value) -> list[bytes]:
    """The images of a generated JSON value, in the order they appear in its text."""
    if isinstance(value, Img):
        return [value.data]
    if isinstance(value, Nested):
        return written_images(value.value)
    if isinstance(value, list):
        return [d for item in value for d in written_images(item)]
    if isinstance(value, dict):
        return [d for item in value.values() for d in written_images(item)]
    return []


def to_plain(value, dumps):
    if isinstance(value, Img):
        return value.form.write(value.data)
    if isinstance(value, Nested):
        return dumps(to_plain(value.value, dumps))
    if isinstance(value, list):
        return [to_plain(v, dumps) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v, dumps) for k, v in value.items()}
    return value


text_no_surrogates = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        text_no_surrogates,
        tricky_text,
        st.builds(Img, images, forms),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(text_no_surrogates, children, max_size=4),
        children.map(Nested),
    ),
    max_leaves=10,
)


@st.composite
def json_bodies(draw) -> tuple[bytes, list[bytes]]:
    value = draw(json_values)
    ensure_ascii = draw(st.booleans())
    indent = draw(st.sampled_from([None, 1]))
    escape_slashes = draw(st.booleans())

    def dumps(v) -> str:
        text = json.dumps(v, ensure_ascii=ensure_ascii, indent=indent)
        return text.replace("/", "\\/") if escape_slashes else text

    body = dumps(to_plain(value, dumps)).encode("utf-8")
    return body, written_images(value)


@st.composite
def multipart_bodies(draw) -> tuple[bytes, str, list[bytes]]:
    boundary = draw(boundaries)
    dash = b"--" + boundary.encode()
    delimiter = b"\r\n" + dash
    preamble = draw(tricky_bytes)
    assume(b"\n" + dash not in b"\n" + preamble + b"\r\n")
    body = preamble + b"\r\n" + dash if preamble else dash
    expected: list[bytes] = []
    for i in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["image", "base64", "binary", "text"]))
        headers = f'Content-Disposition: form-data; name="f{i}"'
        if kind == "image":
            content = draw(images)
            headers += f'; filename="p{i}.jpg"\r\nContent-Type: image/jpeg'
            expected.append(content)
        elif kind == "base64":
            image = draw(images)
            content = draw(forms).write(image).encode()
            expected.append(image)
        else:
            content = draw(tricky_bytes)
            assume(detect(content) is None)  # a part that starts like a file is that file
        framed = b"\r\n" + content + delimiter
        assume(framed.find(delimiter) == len(framed) - len(delimiter))
        body += b"\r\n" + headers.encode() + b"\r\n\r\n" + content + delimiter
    body += b"--" + draw(st.sampled_from([b"", b"\r\n", b"\r\nepilogue\r\n--x"]))
    return body, f'multipart/form-data; boundary="{boundary}"', expected


@st.composite
def form_bodies(draw) -> tuple[bytes, list[bytes]]:
    plus = draw(st.booleans())
    safe = draw(st.sampled_from(["", "/", "/:,;"]))
    fields, expected = [], []
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["image", "json", "text"]))
        if kind == "image":
            image = draw(images)
            value = draw(forms).write(image)
            expected.append(image)
        elif kind == "json":
            image = draw(images)
            value = json.dumps({"req": [None, draw(forms).write(image)]})
            expected.append(image)
        else:
            value = draw(tricky_text)
        encoded = quote_plus(value, safe=safe) if plus else quote(value, safe=safe)
        fields.append(f"field{i}={encoded}")
    return "&".join(fields).encode(), expected


@st.composite
def text_bodies(draw) -> tuple[bytes, list[bytes]]:
    pieces, expected = [], []
    for _ in range(draw(st.integers(1, 4))):
        pieces.append(draw(st.sampled_from([b"see ", b"\r\n: ", b'<img src="'])))
        image, form = draw(images), draw(forms)
        pieces.append(form.write(image).encode())
        # After wrapped base64 a line break or a quote: "...\nAA more" could be either.
        ends = [b"\r\n", b'"> ', b"\n\n"] + ([] if form.wrap else [b" ", b". "])
        pieces.append(draw(st.sampled_from(ends)))
        expected.append(image)
    return b"".join(pieces), expected


raw_bodies = st.builds(bytes.__add__, images, tricky_bytes)


def skeleton(extraction: Extraction) -> list[bytes]:
    """The body's bytes outside its payloads."""
    pieces, pos = [], 0
    for span in extraction.spans:
        pieces.append(extraction.body[pos : span.start])
        pos = span.end
    pieces.append(extraction.body[pos:])
    return pieces


def check_round_trips(body: bytes, content_type: str, expected: list[bytes], new_images) -> None:
    extraction = extract(body, content_type)
    assert [p.data for p in extraction.payloads] == expected
    # 1. The form of every payload is read exactly.
    for span in extraction.spans:
        assert span.encode(span.payload.data) == body[span.start : span.end]
    for payload in extraction.payloads:
        payload.replace(payload.data)
    assert extraction.splice() == body
    # 2. Replacements land where the payloads were; nothing else moves.
    for payload, new in zip(extraction.payloads, new_images, strict=False):
        payload.replace(new)
    replacements = [p.output for p in extraction.payloads]
    new_body = extraction.splice()
    again = extract(new_body, content_type)
    assert [p.data for p in again.payloads] == replacements
    assert skeleton(again) == skeleton(extraction)


new_image_lists = st.lists(images, min_size=8, max_size=8)


@PROPERTY_SETTINGS
@given(json_bodies(), new_image_lists)
def test_json_bodies(generated, new_images):
    body, expected = generated
    check_round_trips(body, "application/json", expected, new_images)


@PROPERTY_SETTINGS
@given(multipart_bodies(), new_image_lists)
def test_multipart_bodies(generated, new_images):
    body, content_type, expected = generated
    boundary = content_type.split('boundary="')[1][:-1].encode()
    assume(all(b"--" + boundary not in n for n in new_images))
    check_round_trips(body, content_type, expected, new_images)


@PROPERTY_SETTINGS
@given(form_bodies(), new_image_lists)
def test_urlencoded_bodies(generated, new_images):
    body, expected = generated
    check_round_trips(body, "application/x-www-form-urlencoded", expected, new_images)


@PROPERTY_SETTINGS
@given(text_bodies(), new_image_lists)
def test_text_bodies(generated, new_images):
    body, expected = generated
    check_round_trips(body, "text/plain", expected, new_images)


@PROPERTY_SETTINGS
@given(raw_bodies, new_image_lists)
def test_raw_bodies(body, new_images):
    check_round_trips(body, "application/octet-stream", [body], new_images)


@PROPERTY_SETTINGS
@given(st.lists(st.sampled_from([b"a", b"/", b"\\/", b"xyz"]), max_size=40).map(b"".join))
def test_the_fast_map_for_escaped_slashes_matches_the_general_one(raw):
    chunks = raw.split(b"\\/")
    fast = UniformOffsetMap(list(map(len, chunks)), 2)
    general = OffsetMap([(m.start(), m.end(), 1) for m in re.finditer(rb"\\/", raw)])
    decoded = b"/".join(chunks)
    for offset in range(len(decoded) + 1):
        assert fast.to_raw(offset) == general.to_raw(offset)
    assert general.to_raw(len(decoded)) == len(raw)
