"""The interface every image format implements (one class per format, as in mat2's libmat2)."""

from __future__ import annotations

import functools
import struct
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
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


@dataclass(frozen=True)
class Stripped:
    """What `strip` produced: the bytes, what went (in words), and how it was done."""

    data: bytes
    removed: tuple[str, ...] = ()
    # The pixels were decoded and encoded again (no lossless path): the audit record says so.
    reencoded: bool = False


# What a bounded parser can still raise on input it did not foresee: turned into
# MalformedImage so that a hostile file is refused as "could not be inspected", never as a crash.
_PARSE_ERRORS = (struct.error, IndexError, KeyError, OverflowError, ValueError, zlib.error)
_GUARDED = ("__init__", "dimensions", "findings", "strip", "orientation")


def _guarded(method: Callable) -> Callable:
    @functools.wraps(method)
    def guard(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except ImageError:
            raise
        except _PARSE_ERRORS as exc:
            fmt = getattr(self, "name", "image")
            raise MalformedImage(f"{fmt} structure is invalid ({type(exc).__name__})") from exc

    guard.__veil_guarded__ = True  # type: ignore[attr-defined]
    return guard


class ImageFormat(ABC):
    """A parsed image container. Constructing one validates the structure (raises ImageError)."""

    name: ClassVar[str]
    mime: ClassVar[str]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for name in _GUARDED:
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "__veil_guarded__", False):
                setattr(cls, name, _guarded(method))

    def __init__(self, data: bytes) -> None:
        self.data = data

    @abstractmethod
    def dimensions(self) -> tuple[int, int]:
        """Width and height as stored, read from the header without decoding pixels."""

    @abstractmethod
    def findings(self) -> list[Finding]:
        """The metadata inventory."""

    @abstractmethod
    def strip(self, options: StripOptions) -> Stripped:
        """The image without its metadata, pixels untouched where the format allows.

        With `options.size_preserving` the result has exactly the input's length."""

    def orientation(self) -> int:
        """EXIF-style orientation (1..8) the viewer applies; 1 when there is none."""
        return 1

    def padded(self, length: int) -> bytes:
        """These bytes grown to exactly `length` with filler a decoder skips.

        For uploads whose size was announced before the bytes when the image had to be encoded
        again (faces blurred): the new image is padded back to the announced length."""
        missing = self._missing(length)
        return self.data + bytes(missing)

    def _missing(self, length: int) -> int:
        missing = length - len(self.data)
        if missing < 0:
            raise UnsupportedImage(
                f"the transformed {self.name} is {-missing} bytes longer than the size the "
                "upload announced before sending it, so it cannot be sent in its place"
            )
        return missing
