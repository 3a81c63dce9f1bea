"""The interface every image format implements (one class per format, as in mat2's libmat2)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from veil.findings import Finding


class ImageError(ValueError):
    """The bytes cannot be inspected safely: corrupt, truncated, hostile or unsupported."""


class MalformedImage(ImageError):
    """The container is broken (truncated segment, length past the end, bad CRC, ...)."""


class UnsupportedImage(ImageError):
    """A format (or a variant of one) that Veil cannot clean; uploads of it fail closed."""


@dataclass(frozen=True)
class StripOptions:
    keep_icc: bool = True
    keep_orientation: bool = True
    # The protocol announced the byte length before these bytes: overwrite metadata in place
    # with neutral filler so the output has exactly the input's length.
    size_preserving: bool = False


class ImageFormat(ABC):
    """A parsed image container. Constructing one validates the structure (raises ImageError)."""

    name: ClassVar[str]
    mime: ClassVar[str]

    def __init__(self, data: bytes) -> None:
        self.data = data

    @classmethod
    @abstractmethod
    def sniff(cls, head: bytes) -> bool:
        """Whether these leading bytes (at least 32 when available) start this format."""

    @abstractmethod
    def dimensions(self) -> tuple[int, int]:
        """Width and height as stored, read from the header without decoding pixels."""

    @abstractmethod
    def findings(self) -> list[Finding]:
        """The metadata inventory."""

    @abstractmethod
    def strip(self, options: StripOptions) -> bytes:
        """The image without its metadata, pixels untouched where the format allows."""

    def orientation(self) -> int:
        """EXIF-style orientation (1..8) the viewer applies; 1 when there is none."""
        return 1
