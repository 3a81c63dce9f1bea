"""Collects findings while a container is walked: deduplicated, in the order first seen."""

from __future__ import annotations

from veil.findings import Finding


class Inventory:
    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], Finding] = {}

    def add(self, kind: str, summary: str) -> None:
        key = (kind, summary)
        if key not in self._seen:
            self._seen[key] = Finding(kind, summary)

    def extend(self, findings: list[Finding]) -> None:
        for finding in findings:
            self.add(finding.kind, finding.summary)

    def findings(self) -> list[Finding]:
        return list(self._seen.values())


def size_text(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / (1024 * 1024):.1f} MB"
