"""A fake AI service for end-to-end tests: real HTTPS on 127.0.0.1, records what arrives.

Its certificate is issued by a throw-away test CA for every catalogue host (and a few non-AI
hosts), so the proxy verifies the upstream as it would in production.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# Hosts a test may ask for; the fake service answers for all of them.
NON_AI_HOSTS = ["example.org", "www.example.org", "downloads.example.net"]
EXTRA_AI_HOSTS = [
    "sdmntprwestus.oaiusercontent.com",
    "files.oaiusercontent.com",
    "us-central1-aiplatform.googleapis.com",
]


@dataclass
class Received:
    method: str
    path: str
    host: str
    headers: dict[str, str]
    body: bytes
    tls_version: str | None = None

    def part(self, name: str = "file") -> bytes:
        """The content of the multipart part `name` as it arrived (a plain split, independent
        of Veil's own parser)."""
        boundary = self.headers["content-type"].split("boundary=")[1].encode()
        for part in self.body.split(b"--" + boundary):
            head, _, content = part.partition(b"\r\n\r\n")
            if f'name="{name}"'.encode() in head:
                return content[:-2] if content.endswith(b"\r\n") else content
        raise AssertionError(f"no multipart part {name!r} arrived")


@dataclass
class TestPKI:
    ca_cert_pem: Path
    server_cert_pem: Path
    server_key_pem: Path


def make_pki(directory: Path, hosts: list[str]) -> TestPKI:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Veil test upstream CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.DNSName(h) for h in sorted(set(hosts)) if "*" not in h[1:]
    ]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake AI service")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pki = TestPKI(
        directory / "upstream-ca.pem", directory / "server.pem", directory / "server-key.pem"
    )
    pki.ca_cert_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.server_cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.server_key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


@dataclass
class FakeService:
    pki: TestPKI
    received: list[Received] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> FakeService:
        handler = _make_handler(self)
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.pki.server_cert_pem, self.pki.server_key_pem)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def record(self, item: Received) -> None:
        with self._lock:
            self.received.append(item)

    def clear(self) -> None:
        with self._lock:
            self.received.clear()

    def last(self) -> Received:
        with self._lock:
            assert self.received, "nothing reached the fake AI service"
            return self.received[-1]

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.received]


def _make_handler(service: FakeService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args) -> None:
            pass

        def _read_body(self) -> bytes:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("content-length") or 0))

        def _handle(self) -> None:
            body = self._read_body()
            sock = self.connection
            service.record(
                Received(
                    method=self.command,
                    path=self.path,
                    host=self.headers.get("host", ""),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    tls_version=sock.version() if isinstance(sock, ssl.SSLSocket) else None,
                )
            )
            if self.path.startswith("/sse"):
                self._stream_events()
                return
            if self.path.startswith("/download/"):
                self._send(
                    200, b"\x00" * int(self.path.rsplit("/", 1)[1]), "application/octet-stream"
                )
                return
            reply = json.dumps({"ok": True, "received_bytes": len(body)}).encode()
            self._send(200, reply, "application/json")

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            head = (
                f"HTTP/1.1 {status} OK\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nServer: fake-ai\r\n\r\n"
            ).encode()
            self.wfile.write(head + body)  # one write: no delayed-ACK stall on loopback

        def _stream_events(self) -> None:
            """Server-sent events, one every 300 ms: a client sees the first before the last."""
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n"
            )
            for n in range(4):
                event = f"data: {json.dumps({'n': n, 't': time.time()})}\n\n".encode()
                self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                self.wfile.flush()
                time.sleep(0.3)
            self.wfile.write(b"0\r\n\r\n")

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    return Handler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
