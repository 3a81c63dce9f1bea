"""`veil scan` with faces: it lists the boxes, --out writes the blurred photo, --preview
the photo with the boxes drawn."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image
from veil.cli import main

from tests.test_faces import COUPLE, assert_obliterated, decode, faces_photo, turned_clockwise

BLUR_POLICY = "version: 1\nrules:\n  - name: blur-all\n    action: blur\n"


def test_scan_blurs_faces_and_draws_a_preview(tmp_path, capsys):
    data, labels = faces_photo(COUPLE)
    photo = tmp_path / "couple.jpg"
    photo.write_bytes(turned_clockwise(data, orientation=8, thumbnail=True))
    policy = tmp_path / "blur.yaml"
    policy.write_text(BLUR_POLICY)
    out = tmp_path / "out"

    assert main(["scan", str(photo), "--policy", str(policy), "--out", str(out), "--preview"]) == 0

    text = capsys.readouterr().out
    assert "rule: blur-all (line 3) -> blur, strip" in text
    blurred = (out / "couple.jpg").read_bytes()
    result = Image.open(io.BytesIO(blurred))
    assert result.size == Image.open(io.BytesIO(data)).size  # shown upright, as before
    assert not result.getexif()  # no EXIF left, so no thumbnail of the faces either
    result_json = _scan_json(photo, policy, capsys)
    faces_json = result_json["faces"] + result_json.get("unsure_face_boxes", [])
    assert f"faces: {len(result_json['faces'])}" in text
    for x, y, w, h, _ in faces_json:
        assert f"{w}x{h} at {x},{y}  confidence " in text
    found = [_face(f) for f in faces_json]
    assert_obliterated(decode(data), decode(blurred), found, labels)

    preview = Image.open(out / "couple.faces.jpg")
    assert preview.format == "JPEG" and preview.size == result.size
    x, y, w, _, _ = faces_json[0]
    # The found box is outlined in red on the preview.
    edge = np.asarray(preview.convert("RGB"))[y, x + w // 4 : x + 3 * w // 4].astype(int)
    assert (edge[:, 0] - edge[:, 1] > 100).mean() > 0.8


def test_preview_without_out_says_what_to_type(tmp_path, capsys):
    data, _ = faces_photo(COUPLE)
    photo = tmp_path / "couple.jpg"
    photo.write_bytes(data)
    assert main(["scan", str(photo), "--preview"]) == 2
    assert "add --out DIR" in capsys.readouterr().err


def _scan_json(photo, policy, capsys) -> dict:
    assert main(["scan", str(photo), "--policy", str(policy), "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    return entry


def _face(values: list[float]):
    from veil.findings import Face

    return Face(*values)
