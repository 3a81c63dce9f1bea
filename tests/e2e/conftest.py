"""The end-to-end rig: a fake AI service, the real proxy as a `veil run` subprocess, real clients.

Clients ask for the real host names (https://chatgpt.com/...); a test-only mitmproxy script
passed after `--` sends every upstream connection to the fake service, whose certificate the
proxy verifies against a throw-away test CA.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from veil.catalogue import Catalogue

from .fake_service import EXTRA_AI_HOSTS, NON_AI_HOSTS, FakeService, make_pki

ROOT = Path(__file__).resolve().parents[2]
VEIL = Path(sys.executable).with_name("veil")
SCRIPTS = Path(__file__).resolve().parent / "mitm_scripts"
# The audit record every decision leaves (DESIGN.md, "Audit record"), as users rely on it.
RECORD_FIELDS = frozenset(
    [
        "ts",
        "decision_id",
        "seq",
        "client",
        "user",
        "service",
        "host",
        "method",
        "path",
        "rule",
        "actions",
        "verdict",
        "images",
        "duration_ms",
        "prev_hash",
        "hash",
    ]
)
IMAGE_FIELDS = frozenset(
    [
        "format",
        "width",
        "height",
        "bytes_in",
        "bytes_out",
        "sha256_in",
        "sha256_out",
        "phash",
        "findings",
        "faces",
    ]
)
READY = re.compile(r"Veil is running\. Proxy: http://([\d.]+):(\d+)")


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    hosts = Catalogue.load().all_host_patterns() + EXTRA_AI_HOSTS + NON_AI_HOSTS
    return make_pki(tmp_path_factory.mktemp("pki"), hosts)


@pytest.fixture(scope="session")
def upstream(pki) -> Iterator[FakeService]:
    service = FakeService(pki).start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("certs")


@dataclass
class Proxy:
    process: subprocess.Popen
    url: str
    port: int
    ca_cert: Path
    audit_dir: Path
    policy: Path | None
    output: list[str] = field(default_factory=list)

    def client(self, **kwargs) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        return httpx.Client(proxy=self.url, verify=context, timeout=60, **kwargs)

    def records(self) -> list[dict]:
        path = self.audit_dir / "audit.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def last_record(self) -> dict:
        records = self.records()
        assert records, "no audit record was written"
        return records[-1]

    def log(self) -> str:
        return "".join(self.output)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextmanager
def proxy_starter(upstream, pki, certs_dir, tmp_path) -> Iterator:
    """Start `veil run` with a policy (YAML text or a path) and extra arguments."""
    started: list[Proxy] = []

    def start(
        policy: str | Path | None = None,
        *,
        args: list[str] = (),
        mitm_args: list[str] = (),
        audit_dir: Path | None = None,
        env: dict | None = None,
    ) -> Proxy:
        n = len(started)
        policy_path: Path | None = None
        if isinstance(policy, str):
            policy_path = tmp_path / f"policy-{n}.yaml"
            policy_path.write_text(policy)
        elif isinstance(policy, Path):
            policy_path = policy
        audit = audit_dir or tmp_path / f"audit-{n}"
        command = [
            str(VEIL),
            "run",
            "--listen-port",
            "0",
            "--certs",
            str(certs_dir),
            "--audit",
            str(audit),
            *(["--policy", str(policy_path)] if policy_path else []),
            *args,
            "--",
            "-s",
            str(SCRIPTS / "redirect_upstream.py"),
            "--set",
            f"test_upstream=127.0.0.1:{upstream.port}",
            "--set",
            f"ssl_verify_upstream_trusted_ca={pki.ca_cert_pem}",
            *mitm_args,
        ]
        process = subprocess.Popen(
            command,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        output: list[str] = []
        ready = threading.Event()
        address: list[tuple[str, int]] = []

        def drain() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                output.append(line)
                m = READY.search(line)
                if m and not ready.is_set():
                    address.append((m.group(1), int(m.group(2))))
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(60) or not address:
            process.kill()
            raise AssertionError("the proxy did not start:\n" + "".join(output))
        host, port = address[0]
        proxy = Proxy(
            process,
            f"http://{host}:{port}",
            port,
            certs_dir / "mitmproxy-ca-cert.pem",
            audit,
            policy_path,
            output,
        )
        started.append(proxy)
        return proxy

    try:
        yield start
    finally:
        for proxy in started:
            proxy.stop()


@pytest.fixture
def start_proxy(upstream, pki, certs_dir, tmp_path) -> Iterator:
    with proxy_starter(upstream, pki, certs_dir, tmp_path) as start:
        yield start


@pytest.fixture(scope="module")
def start_module_proxy(upstream, pki, certs_dir, tmp_path_factory) -> Iterator:
    """As start_proxy, for proxies shared by a module's tests (one start for many tests)."""
    with proxy_starter(upstream, pki, certs_dir, tmp_path_factory.mktemp("proxy")) as start:
        yield start


@pytest.fixture
def proxy(start_proxy) -> Proxy:
    """The proxy with the shipped default policy."""
    return start_proxy(ROOT / "policies" / "default.yaml")


@pytest.fixture(autouse=True)
def _clear_upstream(upstream) -> None:
    upstream.clear()


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
