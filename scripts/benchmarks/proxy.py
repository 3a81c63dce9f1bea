"""Latency and throughput through a real `veil run`, against the fake AI service on loopback.

The same rig as the end-to-end tests: the fake service answers HTTPS for every catalogue host,
a test-only mitmproxy script sends the proxy's upstream connections to it, clients ask for the
real host names. The fake service writes head and body in one write with TCP_NODELAY, so the
numbers are the proxy's, not a delayed-ACK stall (DESIGN.md).
"""

from __future__ import annotations

import functools
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import table, time_it  # noqa: E402
from faces import PHOTO_WITH_FACES, PHOTO_WITHOUT_FACES, twelve_mp  # noqa: E402
from metadata import camera_jpeg  # noqa: E402
from veil.catalogue import Catalogue  # noqa: E402

from tests.e2e.fake_service import EXTRA_AI_HOSTS, NON_AI_HOSTS, FakeService, make_pki  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "metadata"
PHOTO = CORPUS / "es_nikon_p6000_gps_DSCN0010.jpg"
READY = re.compile(r"Veil is running\. Proxy: (http://[\d.]+:\d+)")
POLICY = """version: 1
rules:
  - name: blur-for-claude
    match: {services: [claude]}
    action: blur
  - name: strip-everywhere
    action: strip
"""
FACES = (
    ROOT.parent
    / "shared"
    / "corpora"
    / "faces"
    / "wider"
    / "20_Family_Group_Family_Group_20_540.jpg"
)


def start_proxy(work: Path, upstream: FakeService, pki) -> tuple[subprocess.Popen, str]:
    policy = work / "policy.yaml"
    policy.write_text(POLICY)
    command = [
        str(Path(sys.executable).with_name("veil")), "run", "--listen-port", "0",
        "--policy", str(policy), "--certs", str(work / "certs"), "--audit", str(work / "audit"),
        "--", "-s", str(ROOT / "tests/e2e/mitm_scripts/redirect_upstream.py"),
        "--set", f"test_upstream=127.0.0.1:{upstream.port}",
        "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert_pem}",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        m = READY.search(line)
        if m:
            threading.Thread(target=lambda: [*process.stdout], daemon=True).start()
            return process, m.group(1)
    raise SystemExit("the proxy did not start")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="veil-bench-") as tmp:
        work = Path(tmp)
        # The same photos as the metadata and faces benchmarks: a 12 MP camera JPEG with GPS,
        # maker note and thumbnail, a 12 MP group photo and a 12 MP photo without people.
        photo, small = camera_jpeg(work).read_bytes(), PHOTO.read_bytes()
        group, no_faces = twelve_mp(PHOTO_WITH_FACES), twelve_mp(PHOTO_WITHOUT_FACES)
        hosts = Catalogue.load().all_host_patterns() + EXTRA_AI_HOSTS + NON_AI_HOSTS
        pki = make_pki(work / "pki", hosts)
        upstream = FakeService(pki).start()
        process, proxy = start_proxy(work, upstream, pki)
        try:
            veil_ca = ssl.create_default_context(cafile=str(work / "certs/mitmproxy-ca-cert.pem"))
            real_ca = ssl.create_default_context(cafile=str(pki.ca_cert_pem))
            clients = {
                "direct": httpx.Client(verify=real_ca, timeout=60),
                "via Veil": httpx.Client(proxy=proxy, verify=veil_ca, timeout=60),
                "tunnelled": httpx.Client(proxy=proxy, verify=real_ca, timeout=60),
            }
            print(
                table(
                    ["request", "n", "median ms", "p90 ms"],
                    latency(clients, upstream, photo, small, group, no_faces),
                )
            )
            print()
            print(
                table(
                    ["clients", "uploads", "uploads/s", "MiB/s"], throughput(proxy, veil_ca, photo)
                )
            )
        finally:
            process.terminate()
            process.wait(timeout=20)
            upstream.stop()


def latency(
    clients: dict, upstream: FakeService, photo: bytes, small: bytes, group: bytes, no_faces: bytes
) -> list[list]:
    fake = f"https://127.0.0.1:{upstream.port}"
    cases = [  # (label, client, method, url, body, repeat)
        ("small GET, direct to the service", "direct", "GET", fake, None, 200),
        ("small GET, AI host via Veil", "via Veil", "GET", "https://claude.ai/x", None, 200),
        ("small GET, other host tunnelled", "tunnelled", "GET", "https://example.org/", None, 200),
        ("160 KB photo, stripped", "via Veil", "POST", UPLOAD_URL, small, 50),
        ("4 MB 12 MP photo, direct", "direct", "POST", fake + "/upload", photo, 20),
        ("4 MB 12 MP photo, stripped", "via Veil", "POST", UPLOAD_URL, photo, 20),
        ("4 MB photo, tunnelled", "tunnelled", "POST", "https://example.org/u", photo, 20),
        ("12 MP group photo, faces blurred", "via Veil", "POST", BLUR_URL, group, 20),
        ("12 MP photo without faces, blur rule", "via Veil", "POST", BLUR_URL, no_faces, 20),
    ]  # fmt: skip
    rows = []
    for label, name, method, url, body, repeat in cases:
        client = clients[name]
        files = {"file": ("photo.jpg", body, "image/jpeg")} if body else None
        request = functools.partial(client.request, method, url, files=files)
        timing = time_it(request, repeat=repeat, warmup=1)  # warm-up: TLS handshakes, first decode
        rows.append([label, repeat, timing["median_ms"], timing["p90_ms"]])
    return rows


UPLOAD_URL = "https://chatgpt.com/backend-api/files"
BLUR_URL = "https://claude.ai/api/org/upload"
PER_CLIENT = 8


def throughput(proxy: str, veil_ca: ssl.SSLContext, photo: bytes) -> list[list]:
    """Uploads per second with several clients at once (each its own connection)."""
    files = {"file": ("photo.jpg", photo, "image/jpeg")}
    rows = []
    for count in (1, 2, 4, 8):
        pool = [httpx.Client(proxy=proxy, verify=veil_ca, timeout=120) for _ in range(count)]
        for client in pool:  # connections and TLS sessions up before the clock starts
            client.get("https://api.openai.com/v1/models")

        def uploads(client: httpx.Client) -> None:
            for _ in range(PER_CLIENT):
                client.post("https://api.openai.com/v1/files", files=files).raise_for_status()

        start = time.perf_counter()
        with ThreadPoolExecutor(count) as executor:
            list(executor.map(uploads, pool))
        elapsed = time.perf_counter() - start
        total = count * PER_CLIENT
        rows.append([count, total, total / elapsed, len(photo) * total / elapsed / 2**20])
        for client in pool:
            client.close()
    return rows


if __name__ == "__main__":
    main()
