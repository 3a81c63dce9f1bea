"""Real camera files through the real proxy under the shipped default (strip) policy: what
arrives at the AI service has no metadata, the same pixels and orientation, and the exact
length where the protocol declared it; broken files are refused as uninspectable."""

from __future__ import annotations

import base64
import io
import json

import pillow_heif
import pytest
from PIL import Image, ImageOps
from veil.formats import open_image

from tests.conftest import corpus_file

pytestmark = pytest.mark.e2e
pillow_heif.register_heif_opener()

# file -> strings that must not arrive (names, serials, places, software)
UPLOADS = {
    "dn_png_xmp_mwg_regions_names.png": [b"Denise Wood", b"Jonathan Pfeifer"],
    "dn_webp_htc_gps_icc.webp": [b"HTC Desire"],
    "dn_heic_iphonexr_gps_rot90.heic": [b"iPhone XR"],
    "c2_nikon_z9_c2pa_gps_serial_mpf.jpg": [b"0030079", b"Andy Parsons", b"c2pa"],
    "dn_gif_xmp_comment.gif": [b"this is a comment", b"foobarisawesome"],
    "es_tiff_artist_icc_colorlcd.tif": [b"Russell Leavitt"],
}


def shown(data: bytes) -> tuple:
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    return image.size, image.mode, image.tobytes()


def assert_clean_copy(original: bytes, arrived: bytes, secrets: list[bytes]) -> None:
    assert shown(arrived) == shown(original)
    assert open_image(arrived).orientation() == open_image(original).orientation()
    kinds = {f.kind for f in open_image(arrived).findings()}
    assert kinds <= {"icc_profile", "exif"}, kinds
    for secret in secrets:
        assert secret not in arrived


def test_multipart_uploads_of_every_format_arrive_clean_and_are_audited(proxy, upstream):
    with proxy.client() as client:
        for name, secrets in UPLOADS.items():
            original = corpus_file(name).read_bytes()
            response = client.post(
                "https://chatgpt.com/backend-api/files",
                files={"file": (name, original, "application/octet-stream")},
                data={"use_case": "multimodal"},
            )
            assert response.status_code == 200, response.text
            arrived = upstream.last()
            image = arrived.part("file")
            assert_clean_copy(original, image, secrets)
            assert len(image) < len(original)

            record = proxy.last_record()
            (entry,) = record["images"]
            # The default policy strips everything and also warns when a photo shows faces.
            assert record["verdict"] == ("warned" if entry["faces"] else "transformed")
            assert entry["bytes_in"] == len(original) and entry["bytes_out"] == len(image)
            assert entry["removed"] and not entry.get("reencoded")
            assert {f["kind"] for f in entry["findings"]} - {"icc_profile", "exif"}


def test_size_declared_put_keeps_the_exact_length(proxy, upstream):
    """ChatGPT's raw PUT after announcing file_size: same length, nothing sensitive."""
    with proxy.client() as client:
        for name in ("dn_heic_iphonexr_gps_rot90.heic", "c2_nikon_z9_c2pa_gps_serial_mpf.jpg"):
            original = corpus_file(name).read_bytes()
            response = client.put(
                "https://files.oaiusercontent.com/file-abc?se=2026&sig=x",
                content=original,
                headers={"x-ms-blob-type": "BlockBlob", "content-type": "image/heic"},
            )
            assert response.status_code == 200, response.text
            arrived = upstream.last().body
            assert len(arrived) == len(original)
            assert arrived != original
            assert_clean_copy(original, arrived, UPLOADS[name])
            (entry,) = proxy.last_record()["images"]
            assert entry["bytes_out"] == entry["bytes_in"]


def test_base64_image_in_an_api_request_is_cleaned(proxy, upstream):
    original = corpus_file("dn_webp_htc_gps_icc.webp").read_bytes()
    url = "data:image/webp;base64," + base64.b64encode(original).decode()
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
        ],
    }
    with proxy.client() as client:
        response = client.post("https://api.openai.com/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    sent = json.loads(upstream.last().body)
    arrived_url = sent["messages"][0]["content"][0]["image_url"]["url"]
    assert arrived_url.startswith("data:image/webp;base64,")
    arrived = base64.b64decode(arrived_url.split(",", 1)[1])
    assert_clean_copy(original, arrived, UPLOADS["dn_webp_htc_gps_icc.webp"])
    assert "gps" in {f["kind"] for f in proxy.last_record()["images"][0]["findings"]}


def test_a_broken_png_is_refused_as_uninspectable(proxy, upstream):
    original = bytearray(corpus_file("dn_png_exif_sample.png").read_bytes())
    original[original.find(b"IDAT") + 10] ^= 0xFF  # the chunk's CRC no longer matches
    with proxy.client() as client:
        response = client.post(
            "https://chatgpt.com/backend-api/files",
            files={"file": ("broken.png", bytes(original), "image/png")},
        )
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["type"] == "upload_uninspectable"
    assert "bad CRC" in error["message"]
    record = proxy.last_record()
    assert record["verdict"] == "error" and record["error"]["type"] == "MalformedImage"
    assert upstream.received == []
