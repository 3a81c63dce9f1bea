"""Decoding a photo's pixels in the background while faces are looked for (faces.prefetch):
at the lowest priority, one at a time, identical to a decode on the spot, never in the way."""

from __future__ import annotations

import gc
import io
import os
import threading
import time
from concurrent.futures import Future, wait

import numpy as np
import pytest
from PIL import Image
from veil.faces import obliteration, prefetch
from veil.inspect import inspect
from veil.policy import Settings
from veil.transform import transform

from tests.test_coach import pipeline_for, upload
from tests.test_faces import GROUP, faces_photo

SETTINGS = Settings()

pytestmark = pytest.mark.skipif(
    not prefetch._can_lower_priority(), reason="thread priorities cannot be lowered here"
)


def jpeg(size: tuple[int, int] = (1600, 1200)) -> bytes:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).resize(size).save(out, "JPEG", quality=90)
    return out.getvalue()


def test_the_background_thread_runs_at_the_lowest_priority_and_the_caller_keeps_its_own() -> None:
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    prefetcher = prefetch.Prefetcher()  # its thread lives as long as it does
    pending = prefetcher.start(jpeg(), "jpeg", 1600, 1200)
    assert pending is not None
    assert pending._future.result(timeout=30) is not None
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
    niceness = [
        os.getpriority(os.PRIO_PROCESS, t.native_id)
        for t in threading.enumerate()
        if t.name.startswith("veil-prefetch") and t.native_id is not None
    ]
    assert niceness and all(n == prefetch.LOWEST_PRIORITY for n in niceness)
    pending.close()


def test_the_prefetched_pixels_are_those_a_decode_on_the_spot_gives() -> None:
    data, prefetcher = jpeg(), prefetch.Prefetcher()
    pending = prefetcher.start(data, "jpeg", 1600, 1200)
    assert pending is not None
    pending._future.result(timeout=30)
    image = pending.take()
    assert image is not None
    on_the_spot = Image.open(io.BytesIO(data))
    assert image.size == on_the_spot.size
    assert np.array_equal(np.asarray(image), np.asarray(on_the_spot))
    assert image.quantization == on_the_spot.quantization  # what the re-encoder keeps


def test_one_image_at_a_time_and_the_slot_comes_back_when_taken_closed_or_dropped() -> None:
    prefetcher, data = prefetch.Prefetcher(), jpeg()
    first = prefetcher.start(data, "jpeg", 1600, 1200)
    assert first is not None
    assert prefetcher.start(data, "jpeg", 1600, 1200) is None  # memory stays bounded
    assert first.take() is not None
    second = prefetcher.start(data, "jpeg", 1600, 1200)
    assert second is not None
    second.close()  # cancelled, or its pixels dropped when done
    wait([second._future], timeout=30)
    third = prefetcher.start(data, "jpeg", 1600, 1200)
    assert third is not None
    third._future.result(timeout=30)
    del third  # an upload that ended without using its pixels
    gc.collect()
    assert prefetcher.start(data, "jpeg", 1600, 1200) is not None


def test_pixels_no_longer_wanted_stop_being_decoded() -> None:
    prefetcher = prefetch.Prefetcher()
    pending = prefetcher.start(jpeg((6000, 4000)), "jpeg", 6000, 4000)
    assert pending is not None
    future = pending._future
    while not (future.running() or future.done()):
        time.sleep(0.001)  # until the decode is under way (too late to cancel it then)
    pending.close()
    wait([future], timeout=30)
    assert future.cancelled() or isinstance(future.exception(), prefetch.Abandoned)


def test_a_paused_decode_holds_until_its_pixels_are_asked_for() -> None:
    data, prefetcher = jpeg((6000, 4000)), prefetch.Prefetcher()
    pending = prefetcher.start(data, "jpeg", 6000, 4000)
    assert pending is not None
    pending.pause()
    time.sleep(0.2)  # a read under way when paused may still finish
    held_at = pending._source.tell()
    time.sleep(0.2)
    assert pending._source.tell() == held_at < len(data)
    assert not pending._future.done()
    image = pending.take()
    assert image is not None and image.size == (6000, 4000)


def test_only_jpegs_within_the_pixel_budget_are_decoded_ahead() -> None:
    prefetcher = prefetch.Prefetcher()
    out = io.BytesIO()
    Image.new("RGB", (64, 64)).save(out, "PNG")
    assert prefetcher.start(out.getvalue(), "png", 64, 64) is None
    assert prefetcher.start(jpeg(), "jpeg", 10_000, 10_000) is None  # 100 MP: too much held


def test_a_corrupt_jpeg_gives_no_pixels_and_the_caller_decodes_and_reports_it() -> None:
    data, prefetcher = jpeg(), prefetch.Prefetcher()
    pending = prefetcher.start(data[: len(data) // 2], "jpeg", 1600, 1200)
    assert pending is not None
    pending._future.exception(timeout=30)
    assert pending.take() is None


def test_a_decode_that_stops_moving_is_abandoned_instead_of_waited_for() -> None:
    starved: Future = Future()  # never runs: as a decode starved by other work
    slot = threading.Semaphore(0)
    pending = prefetch.Prefetched(starved, prefetch._Source(b"x" * 100), slot)
    assert pending.take() is None
    assert starved.cancelled()
    assert slot.acquire(blocking=False)  # the slot was given back


def test_a_blur_with_pixels_decoded_ahead_changes_only_the_faces_as_before() -> None:
    data, _ = faces_photo(GROUP)
    ahead = inspect(data, "jpeg", SETTINGS, want_faces=True, may_blur=True)
    plain = inspect(data, "jpeg", SETTINGS, want_faces=True)
    assert ahead.pixels_ahead is not None and plain.pixels_ahead is None
    assert ahead.faces == plain.faces
    blurred = [
        transform(data, r, ("blur", "strip"), SETTINGS, size_preserving=False)
        for r in (ahead, plain)
    ]
    assert ahead.pixels_ahead is None  # taken
    a, b = (np.asarray(Image.open(io.BytesIO(x)).convert("RGB")) for x in blurred)
    assert a.shape == b.shape
    outside = np.ones(a.shape[:2], dtype=bool)
    boxes = obliteration.merged_boxes(
        [
            obliteration.enlarged_box(f, SETTINGS.face_scale, (a.shape[1], a.shape[0]))
            for f in plain.faces
        ]
    )
    for x1, y1, x2, y2 in boxes:  # JPEG blocks next to a face share its 16 px MCU
        outside[max(0, y1 - 16) : y2 + 16, max(0, x1 - 16) : x2 + 16] = False
    assert outside.mean() > 0.5
    assert np.array_equal(a[outside], b[outside])


def test_uploads_through_the_pipeline_leave_the_slot_free(tmp_path) -> None:
    data, _ = faces_photo(GROUP)
    with pipeline_for(
        "version: 1\nrules:\n  - name: faces\n    match: {has: [faces]}\n    action: warn\n"
        "  - name: blur-the-rest\n    action: blur\n",
        tmp_path,
    ) as pipeline:
        outcome = pipeline.process(upload("127.0.0.1", data))
    assert outcome.verdict == "warned"  # faces found: warned, so the pixels were not needed
    assert outcome.record["rule"] == "faces"
    assert prefetch.start(data, "jpeg", 1, 1) is not None  # the one slot is free again
