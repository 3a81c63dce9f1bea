"""The foundation through a real proxy: only AI traffic is opened, uploads are cleaned and
recorded, failures are refused and recorded, responses stream."""

from __future__ import annotations

import io
import shutil
import ssl
import subprocess
import time

import httpx
import pytest
from PIL import Image
from veil.formats import open_image

from tests.conftest import corpus_file, require_tool

from .conftest import IMAGE_FIELDS, RECORD_FIELDS, SCRIPTS

pytestmark = pytest.mark.e2e

GPS_JPEG = "es_nikon_p6000_gps_DSCN0010.jpg"


def has_gps(jpeg: bytes) -> bool:
    return bool(Image.open(io.BytesIO(jpeg)).getexif().get_ifd(0x8825))


def test_curl_multipart_upload_arrives_without_gps_and_is_audited(proxy, upstream):
    curl = require_tool("curl")
    photo = corpus_file(GPS_JPEG)
    assert has_gps(photo.read_bytes())
    result = subprocess.run(
        [
            curl,
            "-sS",
            "-x",
            proxy.url,
            "--cacert",
            str(proxy.ca_cert),
            "-F",
            f"file=@{photo};type=image/jpeg",
            "-F",
            "use_case=multimodal",
            "https://chatgpt.com/backend-api/files",
        ],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    arrived = upstream.last()
    assert arrived.host == "chatgpt.com"
    assert arrived.path == "/backend-api/files"
    image = arrived.part("file")
    assert image.startswith(b"\xff\xd8")
    assert not has_gps(image)
    assert b"NIKON" not in image  # the camera's make and model went with the EXIF block
    assert arrived.part("use_case") == b"multimodal"
    assert int(arrived.headers["content-length"]) == len(arrived.body)

    record = proxy.last_record()
    assert record.keys() >= RECORD_FIELDS
    (entry,) = record["images"]
    # The default policy strips everything, and warns when it sees faces (a landscape can
    # show a false one: recall comes first).
    assert record["verdict"] == ("warned" if entry["faces"] else "transformed")
    assert record["service"] == "chatgpt"
    assert record["host"] == "chatgpt.com"
    assert record["path"] == "/backend-api/files"
    assert record["client"] == "127.0.0.1"
    assert record["rule"] == ("warn-on-faces" if entry["faces"] else "strip-everywhere")
    assert entry.keys() >= IMAGE_FIELDS
    assert entry["format"] == "jpeg"
    assert (entry["width"], entry["height"]) == (640, 480)
    assert entry["bytes_in"] == photo.stat().st_size
    assert entry["bytes_out"] == len(image)
    assert "gps" in {f["kind"] for f in entry["findings"]}


def test_non_ai_host_is_tunnelled_untouched(proxy, upstream, pki):
    # Trusting only the real server's CA works: the proxy did not intercept TLS.
    context = ssl.create_default_context(cafile=str(pki.ca_cert_pem))
    body = b"\xff\xd8\xff\xe1 not inspected " * 100
    with httpx.Client(proxy=proxy.url, verify=context, timeout=30) as client:
        response = client.post("https://example.org/upload", content=body)
    assert response.status_code == 200
    assert upstream.last().body == body
    assert proxy.records() == []

    # Trusting only Veil's CA fails for the same host: Veil did not forge its certificate.
    with proxy.client() as client, pytest.raises(httpx.ConnectError):
        client.get("https://example.org/")


def test_ai_host_is_intercepted_with_veils_certificate(proxy, upstream):
    with proxy.client() as client:
        response = client.get("https://claude.ai/api/organizations")
    assert response.status_code == 200
    assert upstream.last().host == "claude.ai"


def test_forced_inspection_error_is_refused_and_recorded(start_proxy, upstream):
    proxy = start_proxy(mitm_args=["-s", str(SCRIPTS / "inspection_raises.py")])
    photo = corpus_file(GPS_JPEG).read_bytes()
    with proxy.client() as client:
        response = client.post(
            "https://api.openai.com/v1/files",
            files={"file": ("photo.jpg", photo, "image/jpeg")},
            data={"purpose": "vision"},
        )
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "veil_internal_error"
    record = proxy.last_record()
    assert record["decision_id"] == error["decision_id"]
    assert record["verdict"] == "error"
    assert record["error"]["type"] == "RuntimeError"
    assert upstream.received == []


def test_a_request_that_cannot_be_routed_is_stopped_not_sent_on(start_proxy, upstream):
    proxy = start_proxy(mitm_args=["-s", str(SCRIPTS / "routing_raises.py")])
    photo = corpus_file(GPS_JPEG).read_bytes()
    with proxy.client() as client:
        response = client.post(
            "https://chatgpt.com/backend-api/files", files={"file": ("p.jpg", photo)}
        )
    assert response.status_code == 502
    assert "could not check where this request goes" in response.json()["error"]["message"]
    assert upstream.received == []
    assert "Veil could not route a request to chatgpt.com" in proxy.log()


def test_oversize_upload_is_refused_with_413_and_recorded(start_proxy, upstream):
    proxy = start_proxy(args=["--max-upload", "100KB"])
    with proxy.client() as client:
        response = client.put(
            "https://files.oaiusercontent.com/file-abc?sig=secret",
            content=b"\xff\xd8\xff" + bytes(200_000),
        )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "upload_too_large"
    record = proxy.last_record()
    assert record["verdict"] == "blocked"
    assert record["path"] == "/file-abc"  # the signature in the query is never recorded
    assert upstream.received == []


def test_chunked_upload_past_the_buffer_bound_is_refused(start_proxy, upstream):
    proxy = start_proxy(args=["--max-upload", "100KB"])

    def chunks():
        yield b"\xff\xd8\xff"
        for _ in range(50):
            yield bytes(10_000)

    with proxy.client() as client:
        try:
            response = client.put("https://files.oaiusercontent.com/file-abc", content=chunks())
            status = response.status_code
        except httpx.HTTPError:
            status = None  # the proxy may close the connection instead of answering
    assert status in (None, 413)
    assert upstream.received == []


def test_responses_stream(proxy, upstream):
    with proxy.client() as client, client.stream("GET", "https://chatgpt.com/sse") as response:
        arrivals = []
        for line in response.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic())
    assert len(arrivals) == 4
    # Buffered, all four events would arrive together; streamed, they are ~300 ms apart.
    assert arrivals[-1] - arrivals[0] > 0.6


def test_corrupt_image_is_refused_and_recorded(proxy, upstream):
    photo = corpus_file(GPS_JPEG).read_bytes()
    with proxy.client() as client:
        response = client.put(
            "https://sdmntprwestus.oaiusercontent.com/files/abc/raw",
            content=photo[: len(photo) // 2],
            headers={"content-type": "image/jpeg", "x-ms-blob-type": "BlockBlob"},
        )
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "upload_uninspectable"
    assert proxy.last_record()["verdict"] == "error"
    assert upstream.received == []


def test_sigterm_shuts_down_cleanly(proxy):
    assert proxy.stop() == 0


def test_veil_ca_and_pac(tmp_path):
    veil = shutil.which("veil") or str(SCRIPTS.parents[2] / ".venv" / "bin" / "veil")
    ca = subprocess.run([veil, "ca", "--certs", str(tmp_path)], capture_output=True, text=True)
    assert ca.returncode == 0
    assert str(tmp_path / "mitmproxy-ca-cert.pem") in ca.stdout
    assert "update-ca-certificates" in ca.stdout
    pac = subprocess.run(
        [veil, "pac", "--proxy", "proxy.corp:3128"], capture_output=True, text=True
    )
    assert 'return "PROXY proxy.corp:3128"' in pac.stdout
    assert "*.oaiusercontent.com" in pac.stdout
    assert "DIRECT" in pac.stdout


def test_jpeg_strip_keeps_pixels(metadata_corpus):
    data = corpus_file(GPS_JPEG).read_bytes()
    from veil.formats import StripOptions

    stripped = open_image(data).strip(StripOptions()).data
    assert Image.open(io.BytesIO(stripped)).tobytes() == Image.open(io.BytesIO(data)).tobytes()


def test_http2_upload_is_cleaned(start_proxy, upstream):
    # Lazy upstream connections let the client negotiate HTTP/2 with the proxy even though the
    # fake service speaks only HTTP/1.1 (real AI services speak HTTP/2 themselves).
    curl = require_tool("curl")
    proxy = start_proxy(
        mitm_args=["--set", "connection_strategy=lazy", "--set", "upstream_cert=false"]
    )
    photo = corpus_file(GPS_JPEG)
    result = subprocess.run(
        [
            curl,
            "-sS",
            "-v",
            "--http2",
            "-x",
            proxy.url,
            "--cacert",
            str(proxy.ca_cert),
            "-F",
            f"file=@{photo};type=image/jpeg",
            "https://api.anthropic.com/v1/files",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "< HTTP/2 200" in result.stderr
    arrived = upstream.last()
    assert not has_gps(arrived.part("file"))
    assert proxy.last_record()["verdict"] in ("transformed", "warned")


def test_path_outside_a_shared_hosts_service_is_left_alone(proxy, upstream):
    photo = corpus_file(GPS_JPEG).read_bytes()
    with proxy.client() as client:
        response = client.put("https://huggingface.co/api/datasets/x/upload", content=photo)
    assert response.status_code == 200
    assert upstream.last().body == photo
    assert proxy.records() == []


def test_invalid_policy_refuses_to_start(tmp_path):
    veil = SCRIPTS.parents[2] / ".venv" / "bin" / "veil"
    policy = tmp_path / "bad.yaml"
    policy.write_text("version: 1\nrules:\n  - name: x\n    action: explode\n")
    result = subprocess.run(
        [
            str(veil),
            "run",
            "--policy",
            str(policy),
            "--listen-port",
            "0",
            "--certs",
            str(tmp_path / "certs"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "explode" in result.stderr


def test_a_pdf_is_noted_in_the_audit_and_passes_unchanged(proxy, upstream):
    pdf = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n" + bytes(range(256))
    with proxy.client() as client:
        response = client.post(
            "https://api.anthropic.com/v1/files",
            files={"file": ("report.pdf", pdf, "application/pdf")},
        )
    assert response.status_code == 200
    assert upstream.last().part("file") == pdf
    record = proxy.last_record()
    assert record["verdict"] == "allowed" and record["images"] == []
    (document,) = record["documents"]
    assert document["format"] == "pdf" and document["bytes"] == len(pdf)
