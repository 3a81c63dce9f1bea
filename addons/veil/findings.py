"""What inspection can say about an image: findings the policy matches and the audit records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# The finding kinds a policy may name in `has: [...]`.
FINDING_KINDS: frozenset[str] = frozenset(
    {
        "gps",
        "serial",
        "person_names",
        "datetime",
        "device",
        "thumbnail",
        "c2pa",
        "comment",
        "icc_profile",
        "maker_notes",
        "trailing_data",
        "xmp",
        "iptc",
        "exif",
        "other_metadata",
        "faces",
    }
)


@dataclass(frozen=True)
class Finding:
    kind: str
    summary: str

    def __post_init__(self) -> None:
        if self.kind not in FINDING_KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}")


@dataclass(frozen=True)
class Face:
    """A face box in the pixels of the displayed (orientation-applied) image."""

    x: int
    y: int
    w: int
    h: int
    confidence: float

    def as_list(self) -> list[float]:
        return [self.x, self.y, self.w, self.h, round(self.confidence, 3)]


@dataclass
class ImageReport:
    """Everything inspection learned about one image. Never holds pixels."""

    format: str
    width: int
    height: int
    findings: list[Finding] = field(default_factory=list)
    faces: list[Face] | None = None  # None: detection did not run
    orientation: int = 1
    # Set by stripping: what went (in words), and whether the pixels had to be re-encoded.
    removed: tuple[str, ...] | None = None
    reencoded: bool = False

    def kinds(self) -> set[str]:
        kinds = {f.kind for f in self.findings}
        if self.faces:
            kinds.add("faces")
        return kinds

    def to_record(self) -> dict:
        return {
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "findings": [asdict(f) for f in self.findings],
            "faces": None if self.faces is None else [f.as_list() for f in self.faces],
            **({"removed": list(self.removed)} if self.removed is not None else {}),
            **({"reencoded": True} if self.reencoded else {}),
        }
