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
    """The new bytes for an image (the same object when nothing had to change).

    With `size_preserving` the result has exactly the input's length: metadata is overwritten
    in place, and an image encoded again to blur faces is padded back to the announced size."""
    announced = len(data)
    blurred = "blur" in actions and bool(report.faces)
    if blurred:
        data = faces.obliterate(data, report, settings)
    if "strip" in actions or "blur" in actions:
        in_place = size_preserving and not blurred
        options = StripOptions(keep_icc=settings.keep_icc, size_preserving=in_place)
        stripped = _parsed(data, report).strip(options)
        report.removed, report.reencoded = stripped.removed, stripped.reencoded
        data = stripped.data
    if size_preserving and blurred:
        data = formats.open_image(data, report.format).padded(announced)
    return data


def _parsed(data: bytes, report: ImageReport) -> formats.ImageFormat:
    """The container inspection parsed, when these are still its bytes (not blurred)."""
    container = report.container
    if container is not None and container.data is data:
        return container
    return formats.open_image(data, report.format)
