"""The base64 prefilter and runs: what is looked at, how a run's form is read and written."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from veil.extract.base64text import Base64Form, candidates, find_run

from tests.test_extract import make_image

IMAGES = {fmt: make_image(fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")}


@pytest.mark.parametrize("fmt", list(IMAGES))
def test_every_format_is_a_candidate_in_both_alphabets(fmt):
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        text = b'{"d":"' + encode(IMAGES[fmt]) + b'"}'
        assert candidates(text) == [6], fmt


def test_heif_and_avif_ftyp_boxes_are_candidates():
    for brand in (b"heic", b"avif", b"mif1"):
        box = (24).to_bytes(4, "big") + b"ftyp" + brand + bytes(4) + b"mif1" + brand
        assert candidates(b"," + base64.b64encode(box + bytes(100))) == [1]


def test_escaped_spellings_of_the_jpeg_prefix_are_candidates():
    text = base64.b64encode(IMAGES["JPEG"])
    assert text.startswith(b"/9j/")
    spellings = [
        b'"' + text.replace(b"/", b"\\/"),  # JSON with escaped slashes
        b'\\"' + text.replace(b"/", b"\\\\\\/"),  # the same, inside another JSON string
        b'"' + text.replace(b"/", b"\\u002F"),  # .NET's encoder
        b"=" + quote(text, safe="").encode(),  # a form value
        b"%2C" + quote(text, safe="").encode(),  # after a percent-escaped comma
        b"%22" + quote(text.replace(b"/", b"\\/"), safe="").encode(),  # JSON in a form
        b"\\n" + text,  # after an escaped line break
    ]
    for spelling in spellings:
        assert candidates(spelling), spelling[:20]


def test_a_prefix_in_the_middle_of_a_run_is_not_a_candidate():
    assert candidates(b"AAAA/9j/4AAQ") == []
    assert find_run(b"AAAA/9j/4AAQ" + b"A" * 100, 4) is None


def test_the_start_of_the_text_counts():
    assert candidates(base64.b64encode(IMAGES["PNG"])) == [0]


def test_runs_shorter_than_an_image_are_ignored():
    assert find_run(b"/9j/4AAQSkZJRg==", 0) is None


@pytest.mark.parametrize(
    ("text", "form"),
    [
        (base64.b64encode(IMAGES["JPEG"]), Base64Form()),
        (
            base64.urlsafe_b64encode(IMAGES["JPEG"]).rstrip(b"="),
            Base64Form(urlsafe=True, padded=False),
        ),
        (base64.encodebytes(IMAGES["JPEG"]).rstrip(b"\n"), Base64Form(line_length=76)),
        (
            base64.encodebytes(IMAGES["JPEG"]).replace(b"\n", b"\r\n").rstrip(b"\r\n"),
            Base64Form(line_length=76, newline=b"\r\n"),
        ),
    ],
)
def test_a_runs_form_is_read_and_written_back(text, form):
    run = find_run(text + b'"', 0)
    assert run is not None
    assert run.data == IMAGES["JPEG"]
    assert (run.start, run.end) == (0, len(text))
    assert run.form.urlsafe == form.urlsafe
    assert run.form.line_length == form.line_length
    assert run.form.newline == form.newline
    assert run.form.encode(run.data) == text


def test_a_run_stops_at_the_alphabet_it_started_in():
    text = base64.b64encode(IMAGES["JPEG"])
    run = find_run(text + b"-_ more", 0)
    assert run is not None and run.end == len(text)


def test_data_urls_are_told_apart_from_bare_base64():
    text = b"data:image/jpeg;base64," + base64.b64encode(IMAGES["JPEG"])
    run = find_run(text, 23)
    assert run is not None and run.is_data_url(text)
    bare = find_run(base64.b64encode(IMAGES["JPEG"]), 0)
    assert bare is not None and not bare.is_data_url(base64.b64encode(IMAGES["JPEG"]))
