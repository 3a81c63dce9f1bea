"""extract(): every image in a body whatever its shape, and splicing new bytes back in place."""

from __future__ import annotations

import base64
import io
import json
import re
from urllib.parse import quote, quote_plus

import pytest
from PIL import Image
from veil.extract import Extraction, ExtractionLimitExceeded, Limits, SpliceError, extract
from veil.extract.multipart import MalformedMultipart

from tests.conftest import corpus_file

GPS_JPEG = "es_nikon_p6000_gps_DSCN0010.jpg"


def make_image(fmt: str = "JPEG", size: tuple[int, int] = (24, 16), colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, fmt)
    return out.getvalue()


JPEG = make_image()
NEW_JPEG = make_image(colour=(10, 200, 10), size=(20, 20))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_url(data: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64,{b64(data)}"


def only(extraction: Extraction):
    assert len(extraction.payloads) == 1, [p.locator for p in extraction.payloads]
    return extraction.payloads[0]


def replaced(extraction: Extraction, new: bytes = NEW_JPEG) -> bytes:
    for payload in extraction.payloads:
        payload.replace(new)
    return extraction.splice()


# Raw bodies.


def test_raw_body_is_one_payload_whatever_the_content_type():
    for content_type in ("application/x-www-form-urlencoded", "application/octet-stream", ""):
        payload = only(extract(JPEG, content_type))
        assert (payload.format, payload.locator, payload.data) == ("jpeg", "raw body", JPEG)


def test_raw_body_keeps_size_declared_and_splices_to_the_new_bytes():
    extraction = extract(JPEG, "image/jpeg", size_declared=True)
    assert extraction.shape == "raw"
    assert only(extraction).size_declared
    assert replaced(extraction) == NEW_JPEG


def test_a_file_labelled_multipart_is_still_the_file():
    assert only(extract(JPEG, "multipart/form-data; boundary=x")).locator == "raw body"


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "WEBP", "TIFF", "BMP"])
def test_other_formats_are_recognised_by_their_bytes(fmt):
    data = make_image(fmt)
    assert only(extract(data, "application/octet-stream")).format == fmt.lower()
    assert only(extract(json.dumps({"x": b64(data)}).encode(), "")).format == fmt.lower()


def test_non_image_bodies_have_no_payloads():
    for body in (b"", b"hello", b'{"a": "b"}', bytes(range(256)) * 4, b"a=1&b=2"):
        extraction = extract(body, "application/json")
        assert extraction.payloads == []
        assert extraction.splice() == body


def test_pdf_is_noted_not_extracted():
    pdf = b"%PDF-1.7\n" + bytes(200)
    extraction = extract(pdf, "application/pdf")
    assert extraction.payloads == []
    assert extraction.shape == "raw"
    assert [(d.format, d.locator) for d in extraction.documents] == [("pdf", "raw body")]
    body = json.dumps({"type": "input_file", "file_data": data_url(pdf, "application/pdf")})
    (document,) = extract(body.encode(), "application/json").documents
    assert document.format == "pdf" and document.size == len(pdf)
    assert document.locator == "json $.file_data > data URL (base64)"


# JSON shapes of the AI APIs.


def openai_chat(url: str) -> dict:
    return {
        "model": "gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this photo? (/9j/ starts a JPEG)"},
                    {"type": "image_url", "image_url": {"url": url, "detail": "high"}},
                ],
            }
        ],
    }


API_SHAPES = {
    "openai chat": (openai_chat(data_url(JPEG)), "$.messages[0].content[1].image_url.url"),
    "openai responses": (
        {
            "input": [
                {"role": "user", "content": [{"type": "input_image", "image_url": data_url(JPEG)}]}
            ]
        },
        "$.input[0].content[0].image_url",
    ),
    "anthropic": (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/jpeg",
                                "data": b64(JPEG),
                            },
                        }
                    ],
                }
            ]
        },
        "$.messages[0].content[0].source.data",
    ),
    "gemini camelCase": (
        {
            "contents": [
                {
                    "parts": [
                        {"text": "hi"},
                        {"inlineData": {"mimeType": "image/jpeg", "data": b64(JPEG)}},
                    ]
                }
            ]
        },
        "$.contents[0].parts[1].inlineData.data",
    ),
    "gemini snake_case": (
        {
            "contents": [
                {"parts": [{"inline_data": {"mime_type": "image/jpeg", "data": b64(JPEG)}}]}
            ]
        },
        "$.contents[0].parts[0].inline_data.data",
    ),
    "grok upload": ({"fileName": "a.jpg", "content": b64(JPEG)}, "$.content"),
}


@pytest.mark.parametrize("name", API_SHAPES)
def test_api_json_shapes(name):
    document, path = API_SHAPES[name]
    body = json.dumps(document).encode()
    extraction = extract(body, "application/json")
    payload = only(extraction)
    assert payload.data == JPEG and payload.format == "jpeg"
    assert payload.locator.startswith(f"json {path} > ")
    new_body = replaced(extraction)
    assert new_body.replace(b64(NEW_JPEG).encode(), b64(JPEG).encode()) == body


def test_everything_but_the_string_keeps_its_bytes():
    # Odd spacing, key order and escapes that re-serialising would change.
    body = (
        b'{ "z" :1.50e+1,\n  "text":"caf\\u00e9 \\ud83d\\ude00 \\"q\\"",'
        b'"img"  :  "' + data_url(JPEG).encode() + b'" ,"tail":[ ] }'
    )
    new = replaced(extract(body, "application/json"))
    head, tail = body.split(b64(JPEG).encode())
    assert new.startswith(head) and new.endswith(tail)
    assert json.loads(new)["img"] == data_url(NEW_JPEG)


def test_escaped_slashes_are_found_and_written_back_escaped():
    body = json.dumps({"u": data_url(JPEG)}).replace("/", "\\/").encode()
    extraction = extract(body, "")
    assert only(extraction).data == JPEG
    new = replaced(extraction)
    assert json.loads(new)["u"] == data_url(NEW_JPEG)
    assert b"/" not in new.replace(b"\\/", b"")  # every slash still escaped


def test_escapes_before_the_image_in_the_same_string_are_mapped_back():
    text = "caf\\u00e9 \\ud83d\\ude00 \\\\ \\/ \\n " + data_url(JPEG)
    body = ('{"t": "' + text + '"}').encode()
    extraction = extract(body, "")
    assert only(extraction).data == JPEG
    new = replaced(extraction)
    assert new == body.replace(b64(JPEG).encode(), b64(NEW_JPEG).encode())
    assert json.loads(new)["t"].startswith("café 😀 \\ / \n data:")


def test_unicode_escaped_plus_and_slash_as_dotnet_writes_them():
    text = b64(JPEG).replace("+", "\\u002B").replace("/", "\\u002F")
    body = b'{"FileBase64":"' + text.encode() + b'"}'
    extraction = extract(body, "")
    assert only(extraction).data == JPEG
    new = replaced(extraction)
    assert json.loads(new)["FileBase64"] == b64(NEW_JPEG)
    assert b"+" not in new and b"/" not in new


@pytest.mark.parametrize("urlsafe", [False, True])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize(("wrap", "newline"), [(None, ""), (64, "\n"), (76, "\r\n")])
def test_bare_base64_forms_round_trip_in_the_same_form(urlsafe, padded, wrap, newline):
    photo = corpus_file(GPS_JPEG).read_bytes()

    def encode(data: bytes) -> str:
        text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode()
        text = text if padded else text.rstrip("=")
        if wrap:
            text = newline.join(text[i : i + wrap] for i in range(0, len(text), wrap))
        return text

    body = json.dumps({"data": encode(photo), "n": 1}).encode()
    extraction = extract(body, "application/json")
    assert only(extraction).data == photo
    new_image = photo[:5000] + b"x"  # lengths chosen so padding is needed in both
    assert json.loads(replaced(extraction, new_image))["data"] == encode(new_image)


def test_json_inside_a_json_string():
    inner = json.dumps([[None, [data_url(JPEG), "photo.jpg"]]])
    body = json.dumps({"f.req": json.dumps([None, inner])}).encode()
    extraction = extract(body, "")
    payload = only(extraction)
    assert payload.locator == "json $['f.req'] > json $[1] > json $[0][1][0] > data URL (base64)"
    new = replaced(extraction)
    outer = json.loads(json.loads(json.loads(new)["f.req"])[1])
    assert outer[0][1][0] == data_url(NEW_JPEG)


def test_jspb_arrays_of_arrays_and_ndjson():
    jspb = json.dumps([[[None, [[b64(JPEG), 1]]]], [b64(JPEG)]]).encode()
    assert len(extract(jspb, "").payloads) == 2
    ndjson = b"\n".join(json.dumps({"i": i, "d": b64(JPEG)}).encode() for i in range(3))
    extraction = extract(ndjson, "application/x-ndjson")
    assert len(extraction.payloads) == 3
    assert replaced(extraction).count(b64(NEW_JPEG).encode()) == 3


def test_text_that_only_mentions_a_prefix_is_not_an_image():
    body = json.dumps({"text": "JPEG base64 starts with /9j/4AAQ and PNG with iVBORw0KGgo"})
    assert extract(body.encode(), "application/json").payloads == []


def test_truncated_base64_image_is_still_extracted_for_inspection_to_judge():
    text = b64(JPEG)[: len(b64(JPEG)) // 2 + 1]  # cut off mid-quantum
    payload = only(extract(json.dumps({"d": text}).encode(), ""))
    assert payload.format == "jpeg" and JPEG.startswith(payload.data)


# Forms.


def test_urlencoded_form_with_a_data_url():
    body = f"purpose=vision&image={quote_plus(data_url(JPEG))}&note=a+b%21".encode()
    extraction = extract(body, "application/x-www-form-urlencoded")
    assert extraction.shape == "urlencoded"
    payload = only(extraction)
    assert payload.locator == 'form field "image" > data URL (base64)'
    new = replaced(extraction)
    assert new == f"purpose=vision&image={quote_plus(data_url(NEW_JPEG))}&note=a+b%21".encode()


def test_urlencoded_form_keeps_the_escaping_it_had():
    # quote() with safe='/' leaves slashes literal and writes lower-case hex nowhere.
    body = ("img=" + quote(b64(JPEG), safe="/")).encode()
    new = replaced(extract(body, "application/x-www-form-urlencoded"))
    assert new == ("img=" + quote(b64(NEW_JPEG), safe="/")).encode()


def test_gemini_web_f_req_form_field_holding_json_inside_json():
    f_req = json.dumps([None, json.dumps([[["hi", 0, None, [[[data_url(JPEG)], "a.jpg"]]]]])])
    body = f"f.req={quote(f_req, safe='')}&at=AJ8x%3A1&".encode()
    extraction = extract(body, "application/x-www-form-urlencoded;charset=UTF-8")
    assert only(extraction).locator.startswith('form field "f.req" > json $[1] > json $[0][0][3]')
    new_f_req = f_req.replace(b64(JPEG), b64(NEW_JPEG))
    assert replaced(extraction) == f"f.req={quote(new_f_req, safe='')}&at=AJ8x%3A1&".encode()


# Multipart.

BOUNDARY = "----WebKitFormBoundary7MA4YWxkTrZu0gW"


def multipart(parts: list[tuple[bytes, bytes]], boundary: str = BOUNDARY) -> bytes:
    dash = b"--" + boundary.encode()
    out = b"preamble ignored\r\n"
    for headers, content in parts:
        out += dash + b"\r\n" + headers + b"\r\n\r\n" + content + b"\r\n"
    return out + dash + b"--\r\nepilogue"


def disposition(name: str, filename: str | None = None, ctype: str | None = None) -> bytes:
    text = f'Content-Disposition: form-data; name="{name}"'
    if filename:
        text += f'; filename="{filename}"'
    if ctype:
        text += f"\r\nContent-Type: {ctype}"
    return text.encode()


def test_multipart_image_part_binary_part_and_text_fields():
    binary = bytes(range(256)) + b"\r\n--" + BOUNDARY[:-1].encode() + b"\r\n\r\n\n\r"
    body = multipart(
        [
            (disposition("purpose"), b"vision"),
            (disposition("file", "photo.jpg", "image/jpeg"), JPEG),
            (disposition("blob", "data.bin", "application/octet-stream"), binary),
            (disposition("caption"), "café\r\nline two".encode()),
        ]
    )
    ctype = f"multipart/form-data; boundary={BOUNDARY}"
    extraction = extract(body, ctype)
    assert extraction.shape == "multipart"
    payload = only(extraction)
    assert payload.locator == 'multipart part "file" (photo.jpg)'
    new = replaced(extraction)
    assert new == body.replace(JPEG, NEW_JPEG)


def test_multipart_file_parts_of_a_size_declared_request_keep_their_length():
    body = multipart(
        [(disposition("data", "blob"), JPEG), (disposition("d"), data_url(JPEG).encode())]
    )
    extraction = extract(body, f"multipart/form-data; boundary={BOUNDARY}", size_declared=True)
    raw_part, text_part = extraction.payloads
    assert raw_part.size_declared  # its bytes are the ones the protocol counted
    assert not text_part.size_declared


def test_bigtiff_is_an_image():
    bigtiff = b"II+\x00\x08\x00\x00\x00" + bytes(100)
    assert only(extract(bigtiff, "")).format == "tiff"
    assert only(extract(json.dumps({"d": b64(bigtiff)}).encode(), "")).format == "tiff"


def test_multipart_text_field_with_a_data_url_m365_filebase64():
    body = multipart(
        [
            (disposition("scenario"), b"UploadImage"),
            (disposition("FileBase64"), data_url(JPEG).encode()),
        ]
    )
    extraction = extract(body, f'multipart/form-data; boundary="{BOUNDARY}"')
    assert only(extraction).locator == 'multipart part "FileBase64" > data URL (base64)'
    assert replaced(extraction) == body.replace(b64(JPEG).encode(), b64(NEW_JPEG).encode())


def test_multipart_file_part_holding_base64_text_huggingchat():
    wrapped = base64.encodebytes(JPEG)  # MIME style: 76 columns, trailing newline
    body = multipart(
        [
            (disposition("data"), b'{"inputs":"hi"}'),
            (disposition("files", "base64;photo.jpg", "image/jpeg"), wrapped),
        ]
    )
    extraction = extract(body, f"multipart/form-data; boundary={BOUNDARY}")
    payload = only(extraction)
    assert payload.data == JPEG and "wrapped at 76" in payload.locator
    assert replaced(extraction) == body.replace(wrapped, base64.encodebytes(NEW_JPEG))


def test_multipart_json_part_holding_an_image():
    query = json.dumps({"variables": {"attachments": [data_url(JPEG)]}}).encode()
    body = multipart([(disposition("queryInfo"), query)])
    payload = only(extract(body, f"multipart/form-data; boundary={BOUNDARY}"))
    assert (
        payload.locator
        == 'multipart part "queryInfo" > json $.variables.attachments[0] > data URL (base64)'
    )


def test_multipart_with_lf_line_ends_and_no_preamble():
    body = (
        f'--{BOUNDARY}\nContent-Disposition: form-data; name="file"; filename="a.jpg"\n\n'.encode()
        + JPEG
        + f"\n--{BOUNDARY}--\n".encode()
    )
    extraction = extract(body, f"multipart/form-data; boundary={BOUNDARY}")
    assert only(extraction).data == JPEG
    assert replaced(extraction) == body.replace(JPEG, NEW_JPEG)


def test_multipart_is_recognised_by_its_bytes_when_the_content_type_lies():
    body = multipart([(disposition("file", "a.jpg"), JPEG)])[len(b"preamble ignored\r\n") :]
    assert only(extract(body, "application/octet-stream")).data == JPEG


def test_multipart_replacement_containing_the_boundary_is_refused():
    body = multipart([(disposition("file", "a.jpg"), JPEG)])
    extraction = extract(body, f"multipart/form-data; boundary={BOUNDARY}")
    only(extraction).replace(JPEG + b"\r\n--" + BOUNDARY.encode() + b"\r\n")
    with pytest.raises(SpliceError):
        extraction.splice()


@pytest.mark.parametrize(
    "body",
    [
        b"no boundary anywhere",
        b"--" + BOUNDARY.encode() + b"\r\nContent-Disposition: form-data; name=a\r\n\r\nvalue",
        b"--" + BOUNDARY.encode() + b"\r\nno blank line after headers",
    ],
)
def test_malformed_multipart_is_refused(body):
    with pytest.raises(MalformedMultipart):
        extract(body, f"multipart/form-data; boundary={BOUNDARY}")


def test_multipart_without_boundary_parameter_is_refused():
    with pytest.raises(MalformedMultipart):
        extract(b"x", "multipart/form-data")


# Text that is neither JSON nor a form.


def test_plain_text_body_holding_base64():
    body = b"Here is the picture:\r\n" + base64.encodebytes(JPEG) + b"\r\nthanks"
    extraction = extract(body, "text/plain")
    assert extraction.shape == "text"
    assert only(extraction).data == JPEG


# Limits.


def test_too_many_images_is_refused():
    body = json.dumps({"images": [data_url(JPEG)] * 4}).encode()
    assert len(extract(body, "", limits=Limits(max_images=4)).payloads) == 4
    with pytest.raises(ExtractionLimitExceeded, match="more than 3 images"):
        extract(body, "", limits=Limits(max_images=3))


def test_nesting_past_the_depth_limit_is_refused():
    value = data_url(JPEG)
    for _ in range(5):
        value = json.dumps([value])
    body = json.dumps({"x": value}).encode()
    assert len(extract(body, "", limits=Limits(max_depth=6)).payloads) == 1
    with pytest.raises(ExtractionLimitExceeded, match="nested more than 5 levels"):
        extract(body, "", limits=Limits(max_depth=5))


def test_deep_json_structure_is_not_nesting():
    body = ("[" * 5000 + json.dumps(b64(JPEG)) + "]" * 5000).encode()
    payload = only(extract(body, "", limits=Limits(max_depth=2)))
    assert payload.locator == "json $…" + "[0]" * 12 + " > text (base64)"  # shortened


def test_body_past_the_decoded_limit_is_refused():
    with pytest.raises(ExtractionLimitExceeded):
        extract(bytes(1001), "", limits=Limits(max_decoded=1000))


def test_unchanged_payloads_give_the_identical_body():
    body = json.dumps(openai_chat(data_url(JPEG))).encode()
    extraction = extract(body, "")
    only(extraction).replace(JPEG)
    assert not extraction.changed
    assert extraction.splice() is body


def test_real_photo_in_every_container():
    photo = corpus_file(GPS_JPEG).read_bytes()
    bodies = [
        json.dumps(openai_chat(data_url(photo))).encode(),
        multipart([(disposition("file", "p.jpg"), photo)]),
        f"img={quote_plus(data_url(photo))}".encode(),
    ]
    for body in bodies:
        extraction = extract(
            body, f"multipart/form-data; boundary={BOUNDARY}" if body.startswith(b"pre") else ""
        )
        assert only(extraction).data == photo
        assert re.search(rb"NIKON", replaced(extraction)) is None
