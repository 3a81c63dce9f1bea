"""Face recall and speed, through Veil's own inspect / transform code.

Recall, over ../shared/corpora/faces (labels.json, boxes [x, y, w, h]):
  covered   a labelled face has >= 80% of its box inside the obliterated region (the union of
            the enlarged boxes `blur` destroys): the privacy number
  IoU>=0.5  one-to-one greedy match of found boxes to labelled ones: the detector number
  both overall and for faces of >= 20 px (short side); false boxes on negatives/ (no faces).
  Rotation: every labelled photo turned a quarter round, once with an Orientation tag (must
  match upright) and once without one (face_rotations off, then on).

Speed: a 12 MP JPEG with faces (a corpus photo upscaled) and one without, end to end
(decode, detect, obliterate, re-encode, strip), repeated; wall and CPU time, median and
spread, and the machine's load while measuring.

  scripts/bench faces                       the default settings
  scripts/bench faces --sweep               several canvases and thresholds
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table
from veil import faces
from veil.faces import centerface, detector, obliteration, pixels
from veil.findings import Face, ImageReport
from veil.formats import StripOptions, open_image
from veil.formats.jpeg import minimal_exif_segment
from veil.inspect import inspect
from veil.policy import Settings
from veil.transform import transform

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("VEIL_CORPORA", ROOT.parent / "shared" / "corpora")) / "faces"
SMALL_FACE = 20  # px, short side
COVERED = 0.8
PHOTO_WITH_FACES = "wider/20_Family_Group_Family_Group_20_540.jpg"  # 29 labelled faces
PHOTO_WITHOUT_FACES = "negatives/neg_horses.jpg"
TWELVE_MP_PIXELS = 4032 * 3024


@dataclass
class Tally:
    faces: int = 0
    covered: int = 0
    matched: int = 0

    def add(self, covered: bool, matched: bool) -> None:
        self.faces += 1
        self.covered += covered
        self.matched += matched

    def share(self, what: str) -> str:
        value = getattr(self, what)
        return f"{value}/{self.faces} = {100 * value / max(1, self.faces):.1f}%"


@dataclass
class Recall:
    all: Tally = field(default_factory=Tally)
    large: Tally = field(default_factory=Tally)
    false_boxes: int = 0
    negatives_hit: int = 0
    negatives: int = 0
    missed_large: list[str] = field(default_factory=list)
    # The most confident box of each photo, with and without people (rules count faces from
    # face_match_threshold up, so it must fall between the two).
    top_with_people: list[float] = field(default_factory=list)
    top_without_people: list[float] = field(default_factory=list)


# Recall.


def labelled_photos() -> Iterator[tuple[str, bytes, list[list[int]]]]:
    labels = json.loads((CORPUS / "labels.json").read_text())
    for name, boxes in sorted(labels.items()):
        yield name, (CORPUS / name).read_bytes(), boxes


def found_faces(data: bytes, settings: Settings) -> tuple[ImageReport, list[Face]]:
    report = inspect(data, "jpeg", settings, want_faces=True)
    return report, report.faces or []


def displayed(report: ImageReport) -> tuple[int, int]:
    return pixels.displayed_size(report.width, report.height, report.orientation)


def without_orientation_tag(data: bytes) -> bytes:
    """The same JPEG without EXIF (lossless), so that face_rotations applies to it."""
    return open_image(data, "jpeg").strip(StripOptions(keep_orientation=False)).data


def obliterated_mask(found: list[Face], scale: float, size: tuple[int, int]) -> np.ndarray:
    mask = np.zeros((size[1], size[0]), dtype=bool)
    for face in found:
        x1, y1, x2, y2 = obliteration.enlarged_box(face, scale, size)
        mask[y1:y2, x1:x2] = True
    return mask


def coverage(mask: np.ndarray, box: list[int]) -> float:
    x, y, w, h = box
    region = mask[max(0, y) : y + h, max(0, x) : x + w]
    return float(region.mean()) if region.size else 0.0


def iou(a: list[float], b: list[float]) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    return inter / max(1e-9, a[2] * a[3] + b[2] * b[3] - inter)


def greedy_matches(labels: list[list[int]], found: list[Face]) -> set[int]:
    """Indexes of labelled boxes matched one-to-one at IoU >= 0.5, best pairs first."""
    pairs = sorted(
        (
            (iou(label, [f.x, f.y, f.w, f.h]), li, fi)
            for li, label in enumerate(labels)
            for fi, f in enumerate(found)
        ),
        reverse=True,
    )
    used_labels: set[int] = set()
    used_found: set[int] = set()
    for value, li, fi in pairs:
        if value < 0.5:
            break
        if li not in used_labels and fi not in used_found:
            used_labels.add(li)
            used_found.add(fi)
    return used_labels


def measure_recall(settings: Settings, photos, untagged: bool = False) -> Recall:
    result = Recall()
    for name, data, labels in photos:
        report, found = found_faces(without_orientation_tag(data) if untagged else data, settings)
        top = max((face.confidence for face in found), default=0.0)
        (result.top_with_people if labels else result.top_without_people).append(top)
        if not labels:
            result.negatives += 1
            result.false_boxes += len(found)
            result.negatives_hit += bool(found)
            continue
        score_photo(result, name, labels, found, settings, displayed(report))
    return result


def score_photo(
    result: Recall,
    name: str,
    labels: list[list[int]],
    found: list[Face],
    settings: Settings,
    size: tuple[int, int],
    scale: float = 1.0,
) -> None:
    """`scale`: how much larger than in the corpus the photo is (sizes are classed as there)."""
    mask = obliterated_mask(found, settings.face_scale, size)
    matched = greedy_matches(labels, found)
    for index, box in enumerate(labels):
        covered = coverage(mask, box) >= COVERED
        result.all.add(covered, index in matched)
        if min(box[2], box[3]) >= SMALL_FACE * scale:
            result.large.add(covered, index in matched)
            if not covered:
                result.missed_large.append(f"{name} {box}")


def turned_photo(data: bytes, tagged: bool) -> bytes:
    """The photo stored a quarter turn clockwise; with Orientation 8 it displays upright."""
    image = Image.open(io.BytesIO(data))
    stored = image.transpose(Image.Transpose.ROTATE_270)
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=95)
    jpeg = out.getvalue()
    return jpeg[:2] + minimal_exif_segment(8) + jpeg[2:] if tagged else jpeg


def turned_labels(labels: list[list[int]], height: int) -> list[list[int]]:
    """Labels of an upright photo, in the pixels of the same photo turned clockwise."""
    return [[height - y - h, x, h, w] for x, y, w, h in labels]


def measure_turned(settings: Settings, photos, *, tagged: bool) -> Recall:
    result = Recall()
    for name, data, labels in photos:
        if not labels:
            continue
        turned = turned_photo(data, tagged)
        report, found = found_faces(turned, settings)
        if not tagged:
            labels = turned_labels(labels, Image.open(io.BytesIO(data)).height)
        score_photo(result, name, labels, found, settings, displayed(report))
    return result


def measure_close_ups(settings: Settings, photos, margin: float = 0.15) -> Recall:
    """Every labelled face of >= 64 px cropped with a small margin: a face filling the frame,
    as in a selfie or a profile picture (the corpus itself has few of these)."""
    result = Recall()
    for name, data, labels in photos:
        image = Image.open(io.BytesIO(data))
        for x, y, w, h in labels:
            if min(w, h) < 64:
                continue
            left, top = max(0, int(x - w * margin)), max(0, int(y - h * margin))
            crop = image.crop(
                (
                    left,
                    top,
                    min(image.width, int(x + w * (1 + margin))),
                    min(image.height, int(y + h * (1 + margin))),
                )
            )
            out = io.BytesIO()
            crop.save(out, "JPEG", quality=90)
            report, found = found_faces(out.getvalue(), settings)
            box = [[x - left, y - top, w, h]]
            score_photo(result, f"{name} close-up", box, found, settings, displayed(report))
    return result


@functools.cache
def _upscaled_corpus_photo(name: str) -> bytes:
    return upscaled((CORPUS / name).read_bytes())


def measure_twelve_mp(settings: Settings, photos) -> Recall:
    """Every photo upscaled to 12 MP (labels scaled with it): the draft-mode decode and the
    downscaled canvas a phone photo goes through, which the ~1024 px corpus never exercises."""
    result = Recall()
    for name, data, labels in photos:
        big = _upscaled_corpus_photo(name)
        width = Image.open(io.BytesIO(data)).width
        factor = Image.open(io.BytesIO(big)).width / width
        report, found = found_faces(big, settings)
        if not labels:
            result.negatives += 1
            result.false_boxes += len(found)
            result.negatives_hit += bool(found)
            continue
        scaled = [[round(v * factor) for v in box] for box in labels]
        score_photo(result, name, scaled, found, settings, displayed(report), factor)
    return result


def recall_rows(label: str, r: Recall) -> list[object]:
    return [
        label,
        r.large.share("covered"),
        r.all.share("covered"),
        r.large.share("matched"),
        r.all.share("matched"),
        f"{r.false_boxes} on {r.negatives_hit}/{r.negatives}" if r.negatives else "-",
    ]


RECALL_HEADERS = [
    "settings",
    f"covered >={SMALL_FACE}px",
    "covered all",
    f"IoU.5 >={SMALL_FACE}px",
    "IoU.5 all",
    "false boxes (images)",
]


def recall_report(settings: Settings, sweep: bool) -> None:
    photos = list(labelled_photos())
    faces_total = sum(len(b) for _, _, b in photos)
    print(f"corpus: {len(photos)} photos, {faces_total} labelled faces ({CORPUS})\n")
    variants = [("default", settings)]
    if sweep:
        variants += [
            (f"canvas {c} thr {t}", replace(settings, face_canvas=c, face_threshold=t))
            for c in (1024, 1280, 1600)
            for t in (0.1, 0.2)
        ]
    rows = []
    default = None
    for label, variant in variants:
        r = measure_recall(variant, photos)
        default = default or r
        rows.append(recall_rows(f"{label} ({variant.face_canvas}px, {variant.face_threshold})", r))
    print(table(RECALL_HEADERS, rows))
    print(
        f"most confident box per photo: at least {min(default.top_with_people):.2f} on every "
        f"photo with people, at most {max(default.top_without_people):.2f} on those without "
        f"(face_match_threshold {settings.face_match_threshold})"
    )
    print("\nthe same photos upscaled to 12 MP (labels scaled; sizes as in the corpus):")
    rows = [
        recall_rows(
            f"{label} ({v.face_canvas}px, {v.face_threshold})", measure_twelve_mp(v, photos)
        )
        for label, v in variants
    ]
    print(table(RECALL_HEADERS, rows))
    assert default is not None
    if default.missed_large:
        print(f"\nfaces >= {SMALL_FACE}px not covered (default settings):")
        for miss in default.missed_large:
            print(f"  {miss}")
    close = measure_close_ups(settings, photos)
    print(
        f"\nclose-ups (each face >= 64 px cropped to fill the frame): {close.all.share('covered')}"
        f" covered, {close.all.share('matched')} matched at IoU >= 0.5"
    )
    print("\nphotos turned a quarter round (faces >= 20 px covered, all faces covered):")
    rows = []
    for label, variant, tagged in (
        ("Orientation tag 8, default", settings, True),
        ("no tag, face_rotations off", replace(settings, face_rotations=False), False),
        ("no tag, face_rotations on", replace(settings, face_rotations=True), False),
    ):
        r = measure_turned(variant, photos, tagged=tagged)
        rows.append([label, r.large.share("covered"), r.all.share("covered")])
    r = measure_recall(replace(settings, face_rotations=True), photos, untagged=True)
    rows.append(
        ["upright, no tag, face_rotations on", r.large.share("covered"), r.all.share("covered")]
    )
    rows[-1].append(f"{r.false_boxes} false boxes on {r.negatives_hit}/{r.negatives} negatives")
    for row in rows[:-1]:
        row.append("")
    print(table(["case", "covered >=20px", "covered all", "negatives"], rows))


# Speed.


def twelve_mp(name: str) -> bytes:
    return upscaled((CORPUS / name).read_bytes())


def upscaled(data: bytes) -> bytes:
    """A photo upscaled to 12 MP (its aspect kept), saved as a phone would (q92, 4:2:0)."""
    source = Image.open(io.BytesIO(data)).convert("RGB")
    factor = (TWELVE_MP_PIXELS / (source.width * source.height)) ** 0.5
    size = (round(source.width * factor), round(source.height * factor))
    out = io.BytesIO()
    source.resize(size, Image.Resampling.BICUBIC).save(out, "JPEG", quality=92)
    return out.getvalue()


def _size(jpeg: bytes) -> str:
    width, height = Image.open(io.BytesIO(jpeg)).size
    return f"{width}x{height} ({len(jpeg) // 1000} kB)"


def end_to_end(data: bytes, settings: Settings, ahead: bool = True) -> Callable[[], bytes]:
    """As the proxy does it under a blur rule: with `ahead`, the full pixels start decoding in
    the background at idle priority while faces are looked for (faces.prefetch)."""

    def run() -> bytes:
        report = inspect(data, "jpeg", settings, want_faces=True, may_blur=ahead)
        return transform(data, report, ("blur", "strip"), settings, size_preserving=False)

    return run


QUIET = 0.10  # a run counts as quiet when other processes used under 10% of the cores


@dataclass
class Timing:
    """Samples of one case; `others` is the share of the cores other processes used meanwhile."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    others: list[float] = field(default_factory=list)

    def row(self, label: str) -> list[object]:
        quiet = [w for w, o in zip(self.wall, self.others, strict=True) if o < QUIET]
        quiet_cpu = [c for c, o in zip(self.cpu, self.others, strict=True) if o < QUIET]
        wall = sorted(self.wall)
        return [
            label,
            f"{statistics.median(quiet):.0f} ({len(quiet)})" if quiet else "-",
            f"{statistics.median(quiet_cpu):.0f}" if quiet_cpu else "-",
            f"{statistics.median(wall):.0f}",
            f"{wall[0]:.0f}-{wall[-1]:.0f}",
            f"{100 * statistics.median(self.others):.0f}%",
        ]


TIMING_HEADERS = [
    "case",
    "quiet runs: wall median ms (n)",
    "CPU median ms",
    "all runs: wall median",
    "range",
    "others busy (median)",
]


def wait_for_quiet(patience: float, window: float = 0.3) -> None:
    """Wait (at most `patience` s) until the machine has been idle for a moment."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        busy0, idle0 = cpu_ticks()
        time.sleep(window)
        busy1, idle1 = cpu_ticks()
        if (busy1 - busy0) <= 0.05 * max(1e-9, busy1 - busy0 + idle1 - idle0):
            return


def timed(
    fns: list[Callable[[], object]], repeat: int, patience: float = 0.0, warmup: int = 2
) -> list[Timing]:
    """Each function `repeat` times, taking turns (A B C A B C ...), so that the host's drift
    in speed, which reaches 1.5x within an hour here, falls on every case alike."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    timings = [Timing() for _ in fns]
    for _ in range(repeat):
        for fn, timing in zip(fns, timings, strict=True):
            wait_for_quiet(patience)
            machine = cpu_ticks()
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            own = time.process_time() - cpu
            timing.cpu.append(own * 1000)
            timing.wall.append((time.perf_counter() - wall) * 1000)
            busy, idle = (now - then for now, then in zip(cpu_ticks(), machine, strict=True))
            timing.others.append(max(0.0, busy - own) / max(1e-9, busy + idle))
    return timings


def stages(data: bytes, settings: Settings) -> list[tuple[str, Callable[[], object]]]:
    report = inspect(data, "jpeg", settings, want_faces=True)
    canvas = detector.detection_canvas(data, report, settings.face_canvas)
    model = centerface.load(settings.face_precision)

    def full_decode() -> Image.Image:
        return pixels.upright(pixels.load(pixels.open_still(data, "jpeg"), "jpeg"), 1)

    decoded = full_decode()

    def encode() -> bytes:
        out = io.BytesIO()
        decoded.save(out, "JPEG", **obliteration.encode_options(decoded, "jpeg", data))
        return out.getvalue()

    def obliterate_only() -> None:
        image = decoded.copy()
        rng = np.random.default_rng()
        for face in report.faces or []:
            box = obliteration.enlarged_box(face, settings.face_scale, image.size)
            obliteration.obliterate_box(image, box, settings.blur_style, rng)

    shape = canvas.rgb.shape
    return [
        (
            "inspect without faces (parse, metadata)",
            lambda: inspect(data, "jpeg", settings, want_faces=False),
        ),
        (
            f"canvas: draft decode + resize to {shape[1]}x{shape[0]}",
            lambda: detector.detection_canvas(data, report, settings.face_canvas),
        ),
        ("CenterFace on the canvas", lambda: model.detect(canvas.rgb, settings.face_threshold)),
        ("full decode", full_decode),
        (
            f"obliterate {len(report.faces or [])} faces ({settings.blur_style}, copy included)",
            obliterate_only,
        ),
        ("re-encode (original tables)", encode),
    ]


def cpu_ticks() -> tuple[float, float]:
    """Seconds the whole machine was busy and idle since boot (all cores, /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK"), idle / os.sysconf("SC_CLK_TCK")


def others_busy(before: tuple[float, float], own_before: float) -> str:
    """How much of the machine other processes used while we measured."""
    busy, idle = cpu_ticks()
    busy, idle = busy - before[0], idle - before[1]
    own = time.process_time() - own_before
    others = max(0.0, busy - own) / max(1e-9, busy + idle)
    return f"other processes kept {100 * others:.0f}% of the {os.cpu_count()} cores busy"


def speed_report(settings: Settings, repeat: int, sweep: bool, patience: float) -> None:
    with_faces, without_faces = twelve_mp(PHOTO_WITH_FACES), twelve_mp(PHOTO_WITHOUT_FACES)
    faces.prepare(settings)
    load_before = os.getloadavg()
    machine_before, own_before = cpu_ticks(), time.process_time()
    variants = [("", settings)]
    if sweep:
        variants += [
            (f"canvas {canvas}: ", replace(settings, face_canvas=canvas))
            for canvas in (1024, 1600)
            if canvas != settings.face_canvas
        ]
    cases: list[tuple[str, Callable[[], object]]] = []
    for prefix, variant in variants:
        for photo, what in ((with_faces, "with faces"), (without_faces, "without faces")):
            found = len(inspect(photo, "jpeg", variant, want_faces=True).faces or [])
            cases.append(
                (f"{prefix}12 MP {what} ({found} found), end to end", end_to_end(photo, variant))
            )
            cases.append(
                ("  the same, no background decode", end_to_end(photo, variant, ahead=False))
            )
    cases += [(f"  stage: {label}", fn) for label, fn in stages(with_faces, settings)]
    timings = timed([fn for _, fn in cases], repeat, patience)
    rows = [timing.row(label) for (label, _), timing in zip(cases, timings, strict=True)]
    load_after = os.getloadavg()
    noise = others_busy(machine_before, own_before)
    print(
        f"\n12 MP JPEGs (q92): {_size(with_faces)} and {_size(without_faces)}; {repeat} runs "
        f"of each, the cases taking turns, after 2 warm-ups; detector threads "
        f"{centerface.detector_threads()}; canvas {settings.face_canvas}, threshold "
        f"{settings.face_threshold}, style {settings.blur_style}, {settings.face_precision}"
    )
    print(table(TIMING_HEADERS, rows))
    print(
        f"Each run waited up to {patience:.0f} s for an idle moment; a run is quiet when other "
        f"processes used < {100 * QUIET:.0f}% of the cores during it. Load average before "
        f"{load_before[0]:.2f}, after {load_after[0]:.2f}; over the whole measurement {noise}."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", action="store_true", help="also other canvases/thresholds")
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per case")
    parser.add_argument(
        "--patience",
        type=float,
        default=10.0,
        help="seconds to wait for a quiet moment before each timed run (0: never wait)",
    )
    parser.add_argument("--canvas", type=int, help="face_canvas to use instead of the default")
    parser.add_argument("--threshold", type=float, help="face_threshold instead of the default")
    parser.add_argument("--style", choices=("blur", "pixelate", "solid"), help="blur_style")
    parser.add_argument("--precision", choices=("int8", "float32"), help="face_precision")
    parser.add_argument("--skip-recall", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    if not (CORPUS / "labels.json").is_file():
        print(f"the face corpus is absent: {CORPUS}", file=sys.stderr)
        return 2
    settings = Settings()
    if args.canvas:
        settings = replace(settings, face_canvas=args.canvas)
    if args.threshold:
        settings = replace(settings, face_threshold=args.threshold)
    if args.style:
        settings = replace(settings, blur_style=args.style)
    if args.precision:
        settings = replace(settings, face_precision=args.precision)
    if not args.skip_recall:
        recall_report(settings, args.sweep)
    if not args.skip_speed:
        speed_report(settings, args.repeat, args.sweep, args.patience)
    return 0


if __name__ == "__main__":
    sys.exit(main())
