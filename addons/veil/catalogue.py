"""The service catalogue: which hosts belong to which AI service (step 1, "match").

Only catalogue hosts are TLS-intercepted. On those hosts every request body is inspected by
content; an endpoint entry only adds what the protocol says about the body (for instance that
its size was announced earlier, so transforms must keep the length).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from veil import resources


class CatalogueError(ValueError):
    """The catalogue file is malformed."""


def compile_host_pattern(pattern: str) -> re.Pattern[str]:
    """`*.example.com` matches any subdomain; a `*` inside a label stays inside that label."""
    pattern = pattern.strip().lower().rstrip(".")
    if pattern.startswith("*."):
        rest = pattern[2:]
        return re.compile(r"(?:[a-z0-9-]+\.)+" + _label_glob(rest) + r"\Z")
    return re.compile(_label_glob(pattern) + r"\Z")


def _label_glob(pattern: str) -> str:
    return "".join("[a-z0-9-]*" if ch == "*" else re.escape(ch) for ch in pattern)


def normalise_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: re.Pattern[str]
    host: re.Pattern[str] | None = None
    size_declared: bool = False
    note: str = ""

    def matches(self, method: str, host: str, path: str) -> bool:
        if self.method != "*" and self.method != method.upper():
            return False
        if self.host is not None and not self.host.match(host):
            return False
        return self.path.search(path.split("?", 1)[0]) is not None


@dataclass(frozen=True)
class Service:
    id: str
    name: str
    vendor: str
    kind: str
    hosts: tuple[str, ...]
    host_patterns: tuple[re.Pattern[str], ...]
    paths: tuple[re.Pattern[str], ...] = ()
    endpoints: tuple[Endpoint, ...] = ()

    def owns_host(self, host: str) -> bool:
        return any(p.match(host) for p in self.host_patterns)

    def covers_path(self, path: str) -> bool:
        """A service that shares its host with non-AI content names the paths that are its own."""
        if not self.paths:
            return True
        bare = path.split("?", 1)[0]
        return any(p.search(bare) for p in self.paths)

    def endpoint(self, method: str, host: str, path: str) -> Endpoint | None:
        for ep in self.endpoints:
            if ep.matches(method, host, path):
                return ep
        return None


@dataclass(frozen=True)
class Match:
    """What the catalogue knows about one request."""

    service: Service
    endpoint: Endpoint | None

    @property
    def size_declared(self) -> bool:
        return bool(self.endpoint and self.endpoint.size_declared)


@dataclass
class Catalogue:
    services: dict[str, Service] = field(default_factory=dict)
    source: str = "<built-in>"

    @classmethod
    def load(cls, path: str | Path | None = None) -> Catalogue:
        path = Path(path) if path else resources.policy_file("services.yaml")
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise CatalogueError(f"{path}: cannot read the service catalogue: {exc}") from exc
        return cls.from_document(doc, str(path))

    @classmethod
    def from_document(cls, doc: object, source: str) -> Catalogue:
        if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
            raise CatalogueError(f"{source}: expected a mapping with a 'services' mapping")
        services = {sid: _parse_service(sid, spec, source) for sid, spec in doc["services"].items()}
        return cls(services=services, source=source)

    def service_for_host(self, host: str) -> Service | None:
        host = normalise_host(host)
        for service in self.services.values():
            if service.owns_host(host):
                return service
        return None

    def match(self, method: str, host: str, path: str) -> Match | None:
        """The service a request belongs to, or None when Veil should leave it alone."""
        host = normalise_host(host)
        service = self.service_for_host(host)
        if service is None or not service.covers_path(path):
            return None
        return Match(service, service.endpoint(method, host, path))

    @property
    def vendors(self) -> dict[str, list[str]]:
        by_vendor: dict[str, list[str]] = {}
        for service in self.services.values():
            by_vendor.setdefault(service.vendor, []).append(service.id)
        return by_vendor

    def all_host_patterns(self) -> list[str]:
        return sorted({h for s in self.services.values() for h in s.hosts})


def _parse_service(sid: str, spec: object, source: str) -> Service:
    if not isinstance(spec, dict):
        raise CatalogueError(f"{source}: service {sid!r} must be a mapping")
    hosts = spec.get("hosts")
    if not hosts or not isinstance(hosts, list):
        raise CatalogueError(f"{source}: service {sid!r} needs a list of hosts")
    try:
        endpoints = tuple(_parse_endpoint(ep) for ep in spec.get("endpoints") or ())
        paths = tuple(re.compile(p) for p in spec.get("paths") or ())
    except (re.error, KeyError, TypeError) as exc:
        raise CatalogueError(f"{source}: service {sid!r}: bad endpoint: {exc}") from exc
    return Service(
        id=sid,
        name=str(spec.get("name", sid)),
        vendor=str(spec.get("vendor", sid)),
        kind=str(spec.get("kind", "app")),
        hosts=tuple(str(h) for h in hosts),
        host_patterns=tuple(compile_host_pattern(str(h)) for h in hosts),
        paths=paths,
        endpoints=endpoints,
    )


def _parse_endpoint(spec: dict) -> Endpoint:
    host = spec.get("host")
    return Endpoint(
        method=str(spec.get("method", "*")).upper(),
        path=re.compile(spec["path"]),
        host=compile_host_pattern(host) if host else None,
        size_declared=bool(spec.get("size_declared", False)),
        note=str(spec.get("note", "")),
    )
