"""Audit trail costs: one durable write (JSON line + SQLite row, both fsynced), the perceptual
hash per image, and reading a large trail (verify, query, find, report).

    scripts/bench audit            (VEIL_BENCH_RECORDS=N for a bigger trail; default 20000)
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, time_it
from veil.audit import AuditLog
from veil.audit.phash import perceptual_hash
from veil.audit.query import Filters, find, query
from veil.audit.report import write_report
from veil.audit.verify import verify

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "metadata"
RECORDS = int(os.environ.get("VEIL_BENCH_RECORDS", "20000"))


def record(rng: random.Random, ts: datetime) -> dict:
    kinds = [k for k, p in (("gps", 0.3), ("serial", 0.2), ("device", 0.6)) if rng.random() < p]
    return {
        "ts": ts.isoformat(),
        "client": f"10.0.{rng.randint(0, 9)}.{rng.randint(2, 250)}",
        "user": f"user{rng.randint(1, 300)}",
        "service": rng.choice(["chatgpt", "claude", "gemini", "copilot", "openai-api"]),
        "host": "chatgpt.com",
        "method": "POST",
        "path": "/backend-api/files",
        "rule": rng.choice(["strip-everywhere", "no-location", "faces-warn"]),
        "actions": ["strip"],
        "verdict": rng.choice(["allowed", "transformed", "transformed", "warned", "blocked"]),
        "images": [
            {
                "format": "jpeg",
                "width": 4032,
                "height": 3024,
                "bytes_in": 3_000_000,
                "bytes_out": 2_990_000,
                "sha256_in": f"{rng.getrandbits(256):064x}",
                "sha256_out": f"{rng.getrandbits(256):064x}",
                "phash": f"{rng.getrandbits(64):016x}",
                "findings": [{"kind": k, "summary": k} for k in kinds],
                "faces": None,
            }
        ],
        "duration_ms": 25.0,
    }


def durable_writes(directory: Path, count: int = 300) -> dict[str, float]:
    rng = random.Random(1)
    log = AuditLog(directory)
    log.open()
    now = datetime.now(UTC)
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        log.write(record(rng, now))
        samples.append((time.perf_counter() - start) * 1000)
    log.close()
    samples.sort()
    return {"median_ms": samples[len(samples) // 2], "p90_ms": samples[int(0.9 * count)]}


def big_trail(directory: Path, count: int) -> float:
    """A trail of `count` records. Nothing is synced while building it (setup only)."""
    rng = random.Random(2)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    log = AuditLog(directory)
    log.open()
    log._stores.db.execute("PRAGMA synchronous=OFF")
    began = time.perf_counter()
    with mock.patch("os.fsync"):
        for n in range(count):
            log.write(record(rng, start + timedelta(minutes=n * 7)))
    log.close()
    return time.perf_counter() - began


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        writes = durable_writes(tmp_path / "writes")
        print(table(["durable write (fsync x2)", "median ms", "p90 ms"],
                    [["one record", writes["median_ms"], writes["p90_ms"]]]))  # fmt: skip
        print()
        rows = []
        for name in ("es_nikon_p6000_gps_DSCN0010.jpg", "es_nikon_d70s_gps_serial.jpg",
                     "dn_png_xmp_mwg_regions_names.png"):  # fmt: skip
            path = CORPUS / name
            if path.is_file():
                data = path.read_bytes()
                rows.append(
                    [name, len(data), time_it(lambda d=data: perceptual_hash(d), 10)["median_ms"]]
                )
        print(table(["perceptual hash", "bytes", "median ms"], rows))
        print()
        trail = tmp_path / "trail"
        build = big_trail(trail, RECORDS)
        size = sum(p.stat().st_size for p in trail.iterdir() if p.is_file())
        probe = bytes(range(256)) * 10  # an "image" that is in no record: a full scan
        report = tmp_path / "r.html"
        since = datetime(2025, 2, 1, tzinfo=UTC)
        steps = {
            "verify, both stores": lambda: verify(trail),
            "query user + finding": lambda: query(
                trail, Filters(users=["user7"], findings=["gps"])
            ),
            "query since + verdict": lambda: query(
                trail, Filters(since=since, verdicts=["blocked"])
            ),
            "find image (sha256 + phash scan)": lambda: find(trail, probe),
            "report --no-verify": lambda: write_report(trail, report, "b", check_integrity=False),
            "report (with verify)": lambda: write_report(trail, report, "b"),
        }
        timings = [["build (no sync)", build * 1000]]
        timings += [[name, _once(step)] for name, step in steps.items()]
        print(
            table([f"trail of {RECORDS} records ({size / 2**20:.1f} MiB on disk)", "ms"], timings)
        )


def _once(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


if __name__ == "__main__":
    main()
