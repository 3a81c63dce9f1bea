"""The byte-offset multipart parser: offsets, headers, names, and what it refuses."""

from __future__ import annotations

import pytest
from veil.extract.multipart import (
    MalformedMultipart,
    boundary_from_content_type,
    parse,
    sniff_boundary,
)


def test_boundary_parameter_forms():
    assert boundary_from_content_type("multipart/form-data; boundary=abc") == b"abc"
    assert boundary_from_content_type('multipart/form-data; boundary="a b:c"') == b"a b:c"
    assert boundary_from_content_type("Multipart/Related;type=x;Boundary=q1; charset=x") == b"q1"
    assert boundary_from_content_type("application/json") is None
    with pytest.raises(MalformedMultipart):
        boundary_from_content_type("multipart/form-data")


def test_parts_by_offset_with_exact_content():
    body = (
        b"preamble\r\n--B\r\n"
        b'Content-Disposition: form-data; name="a"\r\n\r\n'
        b"one\r\ntwo\r\n"
        b"--B   \r\n"  # transport padding after the boundary
        b'Content-Disposition: form-data; name="f"; filename="x.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
        b"\r\n--Bx not a delimiter\r\n"
        b"--B--\r\nepilogue"
    )
    a, f = parse(body, b"B")
    assert body[a.start : a.end] == b"one\r\ntwo"
    assert body[f.start : f.end] == b"\r\n--Bx not a delimiter"
    assert f.header("content-type") == "application/octet-stream"
    assert f.describe() == 'multipart part "f" (x.bin)'


def test_empty_parts_and_parts_without_headers():
    body = b"--B\r\n\r\nno headers\r\n--B\r\nX-A: 1\r\n\r\n\r\n--B--"
    first, second = parse(body, b"B")
    assert body[first.start : first.end] == b"no headers"
    assert first.headers == b""
    assert second.start == second.end


def test_filename_star_and_escaped_quotes():
    body = (
        b'--B\r\nContent-Disposition: form-data; name="a\\"b"; '
        b"filename*=UTF-8''caf%C3%A9.jpg\r\n\r\nx\r\n--B--"
    )
    (part,) = parse(body, b"B")
    assert part.disposition() == {"name": 'a"b', "filename": "café.jpg"}


def test_sniffed_boundary_needs_the_close_delimiter():
    assert sniff_boundary(b"--xyz\r\nA: b\r\n\r\nc\r\n--xyz--\r\n") == b"xyz"
    assert sniff_boundary(b"--xyz\r\nA: b\r\n\r\nc") is None
    assert sniff_boundary(b"-- comment\n") is None
    assert sniff_boundary(b"hello") is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"nothing", "does not contain its boundary"),
        (b"--Bjunk\r\n", "first boundary line"),
        (b"--B\r\nA: 1\r\n\r\ncontent without end", "no closing boundary"),
        (b"--B\r\nA: 1 and no blank line", "no blank line"),
    ],
)
def test_malformed_bodies(body, message):
    with pytest.raises(MalformedMultipart, match=message):
        parse(body, b"B")
