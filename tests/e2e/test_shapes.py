"""Every body shape real clients use, through the real proxy: the image arrives cleaned and
every other byte of the body arrives as it was sent; bodies Veil cannot read are refused."""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, quote_plus, unquote_to_bytes

import httpx
import pytest
from PIL import Image

from tests.conftest import corpus_file

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

pytestmark = pytest.mark.e2e

GPS_JPEG = "es_nikon_p6000_gps_DSCN0010.jpg"
BOUNDARY = "----VeilShapesBoundary0123456789"


def has_gps(jpeg: bytes) -> bool:
    return bool(Image.open(io.BytesIO(jpeg)).getexif().get_ifd(0x8825))


@pytest.fixture(scope="module")
def proxy(start_module_proxy):
    # Metadata only: these tests are about where images sit in a body, not about faces.
    return start_module_proxy(STRIP_ALL)


@pytest.fixture(scope="module")
def photo() -> bytes:
    data = corpus_file(GPS_JPEG).read_bytes()
    assert has_gps(data)
    return data


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_url(data: bytes) -> str:
    return f"data:image/jpeg;base64,{b64(data)}"


@dataclass(frozen=True)
class Written:
    """How the image is written in the body."""

    encode: Callable[[bytes], bytes]
    decode: Callable[[bytes], bytes]


BASE64 = Written(base64.b64encode, base64.b64decode)
RAW = Written(bytes, bytes)
PERCENT_BASE64 = Written(
    lambda data: quote(base64.b64encode(data), safe="").encode(),
    lambda text: base64.b64decode(unquote_to_bytes(text)),
)


def cleaned_in_transit(sent: bytes, arrived: bytes, photo: bytes, written: Written) -> bytes:
    """The image as it arrived, after checking that it is the only thing that changed."""
    original = written.encode(photo)
    assert sent.count(original) == 1
    start = sent.index(original)
    tail = sent[start + len(original) :]
    assert arrived.startswith(sent[:start]) and arrived.endswith(tail)
    image = written.decode(arrived[start : len(arrived) - len(tail)])
    assert image.startswith(b"\xff\xd8\xff")
    assert not has_gps(image)
    assert b"NIKON" not in image
    assert arrived == sent.replace(original, written.encode(image))
    return image


def check_record(proxy, where: str) -> dict:
    record = proxy.last_record()
    assert record["verdict"] == "transformed"
    (image,) = record["images"]
    assert image["where"] == where
    assert "gps" in {f["kind"] for f in image["findings"]}
    return record


def post_json(proxy, url: str, document: dict, **headers) -> tuple[httpx.Response, bytes]:
    body = json.dumps(document).encode()
    with proxy.client() as client:
        response = client.post(
            url, content=body, headers={"content-type": "application/json", **headers}
        )
    return response, body


# JSON shapes of the AI APIs.


def test_openai_chat_image_url_data_url(proxy, upstream, photo):
    document = {
        "model": "gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Where was this taken?"},
                    {"type": "image_url", "image_url": {"url": data_url(photo), "detail": "high"}},
                ],
            }
        ],
    }
    response, sent = post_json(proxy, "https://api.openai.com/v1/chat/completions", document)
    assert response.status_code == 200
    arrived = upstream.last()
    assert int(arrived.headers["content-length"]) == len(arrived.body)
    cleaned_in_transit(sent, arrived.body, photo, BASE64)
    check_record(proxy, "json $.messages[0].content[1].image_url.url > data URL (base64)")


def test_openai_responses_input_image(proxy, upstream, photo):
    document = {
        "model": "gpt-4.1",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Describe"},
                    {"type": "input_image", "image_url": data_url(photo)},
                ],
            }
        ],
    }
    response, sent = post_json(proxy, "https://api.openai.com/v1/responses", document)
    assert response.status_code == 200
    cleaned_in_transit(sent, upstream.last().body, photo, BASE64)
    check_record(proxy, "json $.input[0].content[1].image_url > data URL (base64)")


def test_anthropic_source_base64(proxy, upstream, photo):
    source = {"type": "base64", "media_type": "image/jpeg", "data": b64(photo)}
    document = {
        "model": "claude-test",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": [{"type": "image", "source": source}]}],
    }
    response, sent = post_json(
        proxy,
        "https://api.anthropic.com/v1/messages",
        document,
        **{"anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200
    cleaned_in_transit(sent, upstream.last().body, photo, BASE64)
    check_record(proxy, "json $.messages[0].content[0].source.data > text (base64)")


@pytest.mark.parametrize(
    ("part", "mime"), [("inlineData", "mimeType"), ("inline_data", "mime_type")]
)
def test_gemini_inline_data(proxy, upstream, photo, part, mime):
    document = {
        "contents": [
            {
                "role": "user",
                "parts": [{"text": "hi"}, {part: {mime: "image/jpeg", "data": b64(photo)}}],
            }
        ]
    }
    url = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    response, sent = post_json(proxy, url, document, **{"x-goog-api-key": "test"})
    assert response.status_code == 200
    cleaned_in_transit(sent, upstream.last().body, photo, BASE64)
    check_record(proxy, f"json $.contents[0].parts[1].{part}.data > text (base64)")


# Content-Encoding.


def test_gzip_encoded_json_body(proxy, upstream, photo):
    sent = json.dumps(
        {"messages": [{"content": [{"image_url": {"url": data_url(photo)}}]}]}
    ).encode()
    with proxy.client() as client:
        response = client.post(
            "https://api.openai.com/v1/chat/completions",
            content=gzip.compress(sent),
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
    assert response.status_code == 200
    arrived = upstream.last()
    assert arrived.headers["content-encoding"] == "gzip"
    assert int(arrived.headers["content-length"]) == len(arrived.body)
    cleaned_in_transit(sent, gzip.decompress(arrived.body), photo, BASE64)


def test_zstd_encoded_json_body_as_codex_sends_it(proxy, upstream, photo):
    document = {
        "model": "gpt-5-codex",
        "input": [
            {"type": "message", "content": [{"type": "input_image", "image_url": data_url(photo)}]}
        ],
    }
    sent = json.dumps(document).encode()
    with proxy.client() as client:
        response = client.post(
            "https://chatgpt.com/backend-api/codex/responses",
            content=zstd.compress(sent),
            headers={"content-type": "application/json", "content-encoding": "zstd"},
        )
    assert response.status_code == 200
    arrived = upstream.last()
    assert arrived.headers["content-encoding"] == "zstd"
    cleaned_in_transit(sent, zstd.decompress(arrived.body), photo, BASE64)
    check_record(proxy, "json $.input[0].content[0].image_url > data URL (base64)")


def test_compressed_body_without_images_passes_untouched(proxy, upstream):
    wire = gzip.compress(json.dumps({"messages": [{"content": "just text"}]}).encode(), mtime=1)
    with proxy.client() as client:
        response = client.post(
            "https://api.openai.com/v1/chat/completions",
            content=wire,
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
    assert response.status_code == 200
    assert upstream.last().body == wire


# Multipart.


def disposition(name: str, filename: str | None = None) -> str:
    text = f'Content-Disposition: form-data; name="{name}"'
    return f'{text}; filename="{filename}"' if filename else text


def test_multipart_image_binary_part_and_text_fields(proxy, upstream, photo):
    binary = bytes(range(256)) * 3 + b"\r\n--" + BOUNDARY.encode()[:-2] + b"\r\n\r\n\x00\xff"
    body = b"".join(
        [
            f"--{BOUNDARY}\r\n{disposition('purpose')}\r\n\r\nvision\r\n".encode(),
            f"--{BOUNDARY}\r\n{disposition('file', 'DSCN0010.jpg')}\r\n".encode(),
            b"Content-Type: image/jpeg\r\n\r\n",
            photo,
            f"\r\n--{BOUNDARY}\r\n{disposition('extra', 'blob.bin')}\r\n".encode(),
            b"Content-Type: application/octet-stream\r\n\r\n",
            binary,
            f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="note"\r\n\r\n'.encode(),
            "café\r\n -- two lines".encode(),
            f"\r\n--{BOUNDARY}--\r\n".encode(),
        ]
    )
    with proxy.client() as client:
        response = client.post(
            "https://claude.ai/api/organizations/o1/conversations/c1/wiggle/upload-file",
            content=body,
            headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
    assert response.status_code == 200
    arrived = upstream.last().body
    image = cleaned_in_transit(body, arrived, photo, RAW)
    assert binary in arrived and "café\r\n -- two lines".encode() in arrived
    assert len(image) < len(photo)
    check_record(proxy, 'multipart part "file" (DSCN0010.jpg)')


def test_multipart_text_field_carrying_a_data_url_m365_copilot(proxy, upstream, photo):
    files = {
        "scenario": (None, "UploadImage"),
        "conversationId": (None, "c-1"),
        "FileBase64": (None, data_url(photo)),
        "FileName": (None, "DSCN0010.jpg"),
    }
    with proxy.client() as client:
        request = client.build_request(
            "POST", "https://substrate.office.com/m365Copilot/UploadFile", files=files
        )
        sent = request.read()
        response = client.send(request)
    assert response.status_code == 200
    cleaned_in_transit(sent, upstream.last().body, photo, BASE64)
    check_record(proxy, 'multipart part "FileBase64" > data URL (base64)')


def test_multipart_file_part_holding_base64_text_huggingchat(proxy, upstream, photo):
    files = [
        ("data", (None, json.dumps({"inputs": "what is this?", "id": "m1"}))),
        ("files", ("base64;DSCN0010.jpg", b64(photo).encode(), "image/jpeg")),
    ]
    with proxy.client() as client:
        request = client.build_request(
            "POST", "https://huggingface.co/chat/conversation/abc", files=files
        )
        sent = request.read()
        response = client.send(request)
    assert response.status_code == 200
    cleaned_in_transit(sent, upstream.last().body, photo, BASE64)
    check_record(proxy, 'multipart part "files" (base64;DSCN0010.jpg) > text (base64)')


# Raw bodies and forms.


@pytest.mark.parametrize(
    ("method", "url", "content_type"),
    [
        ("PUT", "https://files.oaiusercontent.com/file-Ab12?sig=secret", "application/json"),
        (  # Gemini web: the photo's bytes, labelled as a form
            "POST",
            "https://content-push.googleapis.com/upload/?upload_id=abc",
            "application/x-www-form-urlencoded;charset=UTF-8",
        ),
    ],
)
def test_raw_body_with_a_wrong_content_type_keeps_its_length(
    proxy, upstream, photo, method, url, content_type
):
    with proxy.client() as client:
        response = client.request(
            method, url, content=photo, headers={"content-type": content_type}
        )
    assert response.status_code == 200
    arrived = upstream.last()
    assert len(arrived.body) == len(photo)  # the size was announced before the bytes
    assert not has_gps(arrived.body)
    assert b"NIKON" not in arrived.body
    check_record(proxy, "raw body")


def test_raw_azure_blob_put_gets_a_fresh_content_md5(proxy, upstream, photo):
    with proxy.client() as client:
        response = client.put(
            "https://sdmntprwestus.oaiusercontent.com/files/f1/raw?se=2026&sig=secret",
            content=photo,
            headers={
                "content-type": "application/octet-stream",
                "x-ms-blob-type": "BlockBlob",
                "content-md5": base64.b64encode(hashlib.md5(photo).digest()).decode(),
            },
        )
    assert response.status_code == 200
    arrived = upstream.last()
    assert arrived.body != photo and not has_gps(arrived.body)
    assert (
        arrived.headers["content-md5"]
        == base64.b64encode(hashlib.md5(arrived.body).digest()).decode()
    )
    assert proxy.last_record()["path"] == "/files/f1/raw"


def test_urlencoded_form_carrying_a_data_url(proxy, upstream, photo):
    sent = f"purpose=vision&image={quote_plus(data_url(photo))}&note=caf%C3%A9+au+lait".encode()
    with proxy.client() as client:
        response = client.post(
            "https://grok.com/rest/app-chat/upload-file",
            content=sent,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 200
    cleaned_in_transit(sent, upstream.last().body, photo, PERCENT_BASE64)
    check_record(proxy, 'form field "image" > data URL (base64)')


# Bodies Veil cannot read are refused and recorded, never forwarded.


def refused(proxy, upstream, response: httpx.Response, reason: str) -> dict:
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["type"] == "upload_uninspectable"
    assert reason in error["message"]
    record = proxy.last_record()
    assert record["decision_id"] == error["decision_id"]
    assert record["verdict"] == "error"
    assert upstream.received == []
    return record


def test_a_body_claiming_an_encoding_it_does_not_have_is_refused(proxy, upstream, photo):
    body = json.dumps(
        {"messages": [{"content": [{"image_url": {"url": data_url(photo)}}]}]}
    ).encode()
    with proxy.client() as client:
        response = client.post(
            "https://api.openai.com/v1/chat/completions",
            content=body,
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
    record = refused(proxy, upstream, response, "is not gzip data")
    assert record["error"]["type"] == "EncodingError"


def test_a_compression_bomb_is_refused(proxy, upstream):
    bomb = zstd.compress(b"[" + b" " * (65 * 2**20) + b"]")  # 65 MiB of JSON, 2 KiB on the wire
    with proxy.client() as client:
        response = client.post(
            "https://chatgpt.com/backend-api/codex/responses",
            content=bomb,
            headers={"content-type": "application/json", "content-encoding": "zstd"},
        )
    record = refused(proxy, upstream, response, "decompresses to more than")
    assert record["error"]["type"] == "DecodedTooLarge"


def test_a_truncated_image_is_refused(proxy, upstream, photo):
    document = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/jpeg",
                            "data": b64(photo[: len(photo) // 2]),
                        },
                    }
                ],
            }
        ]
    }
    response, _ = post_json(proxy, "https://api.anthropic.com/v1/messages", document)
    refused(proxy, upstream, response, "truncated")


# The official SDKs, pointed through the proxy.


@pytest.fixture
def http_client(proxy):
    context = ssl.create_default_context(cafile=str(proxy.ca_cert))
    with httpx.Client(proxy=proxy.url, verify=context, timeout=60) as client:
        yield client


def arrived_document(upstream) -> dict:
    return json.loads(upstream.last().body)


def test_openai_sdk(proxy, upstream, photo):
    from openai import DefaultHttpxClient, OpenAI

    context = ssl.create_default_context(cafile=str(proxy.ca_cert))
    http_client = DefaultHttpxClient(proxy=proxy.url, verify=context)
    client = OpenAI(api_key="sk-test", http_client=http_client, max_retries=0)
    client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": data_url(photo)}}],
            }
        ],
    )
    url = arrived_document(upstream)["messages"][0]["content"][0]["image_url"]["url"]
    prefix, _, text = url.partition(",")
    assert prefix == "data:image/jpeg;base64"
    assert not has_gps(base64.b64decode(text))
    assert proxy.last_record()["service"] == "openai-api"


def test_anthropic_sdk(proxy, upstream, photo):
    from anthropic import Anthropic, DefaultHttpxClient  # its own HTTP package (httpx2)

    context = ssl.create_default_context(cafile=str(proxy.ca_cert))
    http_client = DefaultHttpxClient(proxy=proxy.url, verify=context)
    client = Anthropic(api_key="sk-ant-test", http_client=http_client, max_retries=0)
    client.messages.with_raw_response.create(
        model="claude-test",
        max_tokens=16,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/jpeg",
                            "data": b64(photo),
                        },
                    }
                ],
            }
        ],
    )
    data = arrived_document(upstream)["messages"][0]["content"][0]["source"]["data"]
    assert not has_gps(base64.b64decode(data))
    assert proxy.last_record()["service"] == "anthropic-api"


def test_google_genai_sdk_url_safe_base64(proxy, upstream, photo, http_client):
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="test", http_options=types.HttpOptions(httpx_client=http_client))
    with contextlib.suppress(Exception):  # the fake answer is not a GenerateContentResponse
        client.models.generate_content(
            model="gemini-2.5-flash",
            contents=[types.Part.from_bytes(data=photo, mime_type="image/jpeg"), "Where is this?"],
        )
    part = arrived_document(upstream)["contents"][0]["parts"][0]
    image = base64.urlsafe_b64decode(part["inlineData"]["data"])
    assert not has_gps(image)
    assert "base64url" in proxy.last_record()["images"][0]["where"]


# Images the policy leaves alone reach the service byte-identical, whatever the shape.

STRIP_ALL = "version: 1\nrules:\n  - name: strip-everywhere\n    action: strip\n"
ALLOW_ALL = "version: 1\nrules:\n  - name: allow-all\n    action: allow\n"


@pytest.fixture(scope="module")
def allowing_proxy(start_module_proxy):
    return start_module_proxy(ALLOW_ALL)


def test_allowed_images_arrive_byte_identical_in_every_shape(allowing_proxy, upstream, photo):
    json_body = json.dumps({"messages": [{"content": [{"image_url": {"url": data_url(photo)}}]}]})
    sends = [
        ("https://api.openai.com/v1/chat/completions", json_body.encode(), {}),
        (
            "https://chatgpt.com/backend-api/codex/responses",
            zstd.compress(json_body.encode()),
            {"content-encoding": "zstd"},
        ),
        (
            "https://api.openai.com/v1/files",
            b"".join(
                [
                    f"--{BOUNDARY}\r\n{disposition('file', 'a.jpg')}\r\n\r\n".encode(),
                    photo,
                    f"\r\n--{BOUNDARY}\r\n{disposition('purpose')}\r\n\r\nvision\r\n".encode(),
                    f"--{BOUNDARY}--\r\n".encode(),
                ]
            ),
            {"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
        ),
        (
            "https://grok.com/rest/app-chat/upload-file",
            f"img={quote_plus(data_url(photo))}".encode(),
            {},
        ),
        ("https://files.oaiusercontent.com/file-1", photo, {"content-type": "image/jpeg"}),
    ]
    with allowing_proxy.client() as client:
        for url, body, headers in sends:
            response = client.post(url, content=body, headers=headers)
            assert response.status_code == 200, url
            assert upstream.last().body == body, url
            record = allowing_proxy.last_record()
            assert record["verdict"] == "allowed", url
            assert record["images"][0]["sha256_in"] == hashlib.sha256(photo).hexdigest()
