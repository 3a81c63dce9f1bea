"""What an image reveals: format, size, metadata inventory and faces (step 3, "inspect")."""

from __future__ import annotations

from veil import formats
from veil.findings import ImageReport
from veil.formats import ImageError, MalformedImage
from veil.policy import Settings


class DecompressionBomb(MalformedImage):
    """The header claims more pixels than Veil will ever decode."""


def inspect(
    data: bytes, fmt: str, settings: Settings, *, want_faces: bool, may_blur: bool = False
) -> ImageReport:
    """Raises ImageError (or a subclass) when the image cannot be inspected safely.

    `may_blur`: the image may be blurred afterwards, so its full pixels start decoding in the
    background while faces are looked for (see `faces.prefetch`)."""
    image = formats.open_image(data, fmt)
    width, height = image.dimensions()
    if width <= 0 or height <= 0:
        raise MalformedImage(f"{fmt} header gives an empty image ({width}x{height})")
    if width * height > settings.max_pixels:
        raise DecompressionBomb(
            f"{fmt} header claims {width}x{height} pixels; "
            f"Veil decodes at most {settings.max_pixels} pixels"
        )
    report = ImageReport(
        format=fmt,
        width=width,
        height=height,
        findings=image.findings(),
        orientation=image.orientation(),
        face_match_threshold=settings.face_match_threshold,
        container=image,
    )
    if want_faces:
        from veil import faces
        from veil.faces import prefetch

        if may_blur:
            report.pixels_ahead = prefetch.start(data, fmt, width, height)
        report.faces = faces.detect(data, report, settings)
    return report


__all__ = ["DecompressionBomb", "ImageError", "inspect"]
