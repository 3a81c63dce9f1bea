"""A copy of the photo with the face boxes drawn, for an administrator tuning the threshold.

Red: the box the detector found, with its confidence. Yellow: the enlarged region that
`blur` obliterates. The preview shows the faces themselves: it is written locally by
`veil scan --preview` and never sent anywhere.
"""

from __future__ import annotations

import io

from PIL import ImageDraw, ImageFont

from veil.faces import pixels
from veil.faces.obliteration import enlarged_box
from veil.findings import ImageReport
from veil.policy import Settings

FOUND = (255, 40, 40)
OBLITERATED = (255, 210, 0)


def preview(data: bytes, report: ImageReport, settings: Settings) -> bytes:
    image = pixels.open_still(data, report.format)
    image = pixels.loaded_upright(image, report.format, report.orientation).convert("RGB")
    line = max(2, round(max(image.size) / 500))
    font = ImageFont.load_default(size=max(12, line * 7))
    draw = ImageDraw.Draw(image)
    for face in report.faces or ():
        draw.rectangle(
            enlarged_box(face, settings.face_scale, image.size), outline=OBLITERATED, width=line
        )
        draw.rectangle(
            (face.x, face.y, face.x + face.w, face.y + face.h), outline=FOUND, width=line
        )
        draw.text((face.x, face.y + face.h + line), f"{face.confidence:.2f}", fill=FOUND, font=font)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, subsampling=0)  # 4:4:4 keeps thin lines red
    return out.getvalue()
