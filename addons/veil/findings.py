"""What inspection can say about an image: findings the policy matches and the audit records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

    from veil.faces.prefetch import Prefetched
    from veil.formats.base import ImageFormat

THUMBNAIL_SIDE = 64  # px: twice the perceptual hash's 32, so that its box filter averages

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
    """Everything inspection learned about one image. Never holds its pixels: at most a grey
    thumbnail (`thumbnail`) and, while a blur may follow, a handle on their decoding in the
    background (`pixels_ahead`)."""

    format: str
    width: int
    height: int
    findings: list[Finding] = field(default_factory=list)
    faces: list[Face] | None = None  # None: detection did not run
    # Every box in `faces` is obliterated by blur (recall first); only boxes the detector is at
    # least this sure of count as faces for rules (`has: [faces]`, `faces: ">=N"`), so that a
    # landscape with a face-like bush is not reported as a photo of people.
    face_match_threshold: float = 0.0
    orientation: int = 1
    # Set by stripping: what went (in words), and whether the pixels had to be re-encoded.
    removed: tuple[str, ...] | None = None
    reencoded: bool = False
    pixels_ahead: Prefetched | None = field(default=None, repr=False, compare=False)
    # The parsed container, so that stripping the same bytes does not parse them again.
    container: ImageFormat | None = field(default=None, repr=False, compare=False)
    # The displayed (upright) image, grey, THUMBNAIL_SIDE px square, when face detection
    # decoded the pixels: the audit's perceptual hash uses it instead of decoding them again.
    thumbnail: Image.Image | None = field(default=None, repr=False, compare=False)

    @property
    def confident_faces(self) -> list[Face]:
        return [f for f in self.faces or () if f.confidence >= self.face_match_threshold]

    def kinds(self) -> set[str]:
        kinds = {f.kind for f in self.findings}
        if self.confident_faces:
            kinds.add("faces")
        return kinds

    def _unsure_boxes(self) -> dict:
        """Boxes below the match threshold: not counted as faces, but blurred all the same."""
        threshold = self.face_match_threshold
        unsure = [f.as_list() for f in self.faces or () if f.confidence < threshold]
        return {"unsure_face_boxes": unsure} if unsure else {}

    def to_record(self) -> dict:
        return {
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "findings": [asdict(f) for f in self.findings],
            "faces": None if self.faces is None else [f.as_list() for f in self.confident_faces],
            **self._unsure_boxes(),
            **({"removed": list(self.removed)} if self.removed is not None else {}),
            **({"reencoded": True} if self.reencoded else {}),
        }
