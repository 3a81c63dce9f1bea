"""Optional quarantine: the original bytes of blocked images, encrypted to the operator's key.

The proxy holds only a public key (X25519), so the quarantine cannot be read on the proxy
machine, not even by someone who takes it over; incident responders decrypt with the private
key (`veil audit show DECISION_ID --extract --key quarantine.key`). Each file is an ephemeral
X25519 exchange, HKDF-SHA-256 and AES-256-GCM, bound to its decision id and image index:

    b"VEILQ1\\n" | ephemeral public key (32) | nonce (12) | ciphertext and tag
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"VEILQ1\n"
SUFFIX = ".veilq"
_INFO = b"veil quarantine v1"
_DECISION_ID = re.compile(r"^[0-9a-f]{32}$")


class QuarantineError(ValueError):
    """A key cannot be used, or a quarantined file cannot be decrypted."""


def generate_keypair() -> tuple[bytes, bytes]:
    """(private key PEM, public key PEM) for a new quarantine."""
    private = X25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def load_public_key(path: str | Path) -> X25519PublicKey:
    data = _read_key(path)
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        key = None
    if not isinstance(key, X25519PublicKey):
        raise QuarantineError(
            f"{path}: not an X25519 public key in PEM form (make one with "
            "'veil audit keygen quarantine OUT')"
        )
    return key


def load_private_key(path: str | Path) -> X25519PrivateKey:
    data = _read_key(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, X25519PrivateKey):
        raise QuarantineError(
            f"{path}: not an X25519 private key in PEM form (the file that "
            "'veil audit keygen quarantine' wrote without .pub)"
        )
    return key


def _read_key(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise QuarantineError(f"{path}: cannot read the key: {exc.strerror}") from exc


def encrypt(public_key: X25519PublicKey, data: bytes, context: bytes) -> bytes:
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    key = _derive(ephemeral.exchange(public_key), ephemeral_public, public_key)
    nonce = os.urandom(12)
    return MAGIC + ephemeral_public + nonce + AESGCM(key).encrypt(nonce, data, context)


def decrypt(private_key: X25519PrivateKey, blob: bytes, context: bytes) -> bytes:
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 32 + 12 + 16:
        raise QuarantineError("not a Veil quarantine file")
    body = blob[len(MAGIC) :]
    ephemeral_public, nonce, ciphertext = body[:32], body[32:44], body[44:]
    shared = private_key.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    key = _derive(shared, ephemeral_public, private_key.public_key())
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, context)
    except InvalidTag:
        raise QuarantineError(
            "cannot decrypt: wrong key, or the file was altered or belongs to another decision"
        ) from None


def _derive(shared: bytes, ephemeral_public: bytes, recipient: X25519PublicKey) -> bytes:
    salt = ephemeral_public + recipient.public_bytes_raw()
    return HKDF(hashes.SHA256(), 32, salt, _INFO).derive(shared)


def _context(decision_id: str, index: int) -> bytes:
    return f"{decision_id}:{index}".encode()


class Quarantine:
    """Writes encrypted originals to `<audit dir>/quarantine/<decision_id>.<n>.veilq`."""

    def __init__(self, directory: Path, public_key: X25519PublicKey) -> None:
        self.directory = directory
        self.public_key = public_key

    def store(self, decision_id: str, images: list[bytes]) -> list[dict]:
        """Encrypt and write each image; the entries go into the audit record."""
        self.directory.mkdir(mode=0o700, exist_ok=True)
        entries = []
        for index, data in enumerate(images):
            name = f"{decision_id}.{index}{SUFFIX}"
            blob = encrypt(self.public_key, data, _context(decision_id, index))
            _write_durably(self.directory / name, blob)
            entries.append({"file": name, "sha256": hashlib.sha256(data).hexdigest()})
        return entries


def extract(
    directory: Path, record: dict, private_key: X25519PrivateKey
) -> list[tuple[str, bytes]]:
    """Decrypt the quarantined images of one record, checked against the record's sha256."""
    decision_id = str(record.get("decision_id", ""))
    if not _DECISION_ID.match(decision_id):
        raise QuarantineError(f"not a decision id: {decision_id!r}")
    out = []
    for index, entry in enumerate(record.get("quarantine") or ()):
        name = Path(str(entry.get("file", ""))).name  # never a path outside the quarantine
        try:
            blob = (directory / name).read_bytes()
        except OSError as exc:
            raise QuarantineError(f"{directory / name}: {exc.strerror}") from exc
        data = decrypt(private_key, blob, _context(decision_id, index))
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise QuarantineError(f"{name}: the decrypted bytes do not match the record's sha256")
        out.append((name.removesuffix(SUFFIX), data))
    return out


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
