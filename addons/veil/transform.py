"""Apply a decision's transforms to one image: strip metadata, blur faces (step 5)."""

from __future__ import annotations

from veil import faces, formats
from veil.findings import ImageReport
from veil.formats import StripOptions
from veil.policy import Settings


def transform(
    data: bytes,
    report: ImageReport,
    actions: tuple[str, ...],
    settings: Settings,
    *,
    size_preserving: bool,
) -> bytes:
    """The new bytes for an image (the same object when nothing had to change)."""
    if "blur" in actions and report.faces:
        data = faces.obliterate(data, report, settings)
    if "strip" in actions or "blur" in actions:
        options = StripOptions(keep_icc=settings.keep_icc, size_preserving=size_preserving)
        stripped = formats.open_image(data, report.format).strip(options)
        report.removed, report.reencoded = stripped.removed, stripped.reencoded
        data = stripped.data
    return data
