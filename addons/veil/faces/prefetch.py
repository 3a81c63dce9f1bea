"""Decode a photo's full pixels while its faces are still being looked for, on idle CPU only.

Blurring a 12 MP JPEG needs two decodes: a reduced one (draft mode) to find the faces, and
the full one to obliterate them. The full decode starts at once in one background thread at
the lowest scheduling priority (nice 19), and so uses the core that the single-threaded
canvas decode leaves idle; it is held while the detector runs on both cores, and goes on
only if faces were found (else it is abandoned where it stands). Measured on a 2-core
machine, runs interleaved: a 12 MP photo with faces 237 -> 203 ms, 246 -> 229; without
faces it costs 3-11 ms in most blocks (83 -> 87, 87 -> 90, 82 -> 93) and up to 23 on a slow
stretch. It cost more (32 ms in one block) while the canvas decode still took the GIL back
every 64 KiB: this thread, at nice 19, held it in between (`veil.pillow_codecs`).

Bounded on purpose: one prefetched image at a time, in flight or waiting to be taken; only
JPEGs (other formats are decoded in full for detection anyway) up to MAX_PIXELS; and nothing
at all where a thread's priority cannot be lowered (it would compete with detection).
If the pixels stop coming when needed, the caller decodes them itself: a busy machine must
not make an upload wait on idle-priority work.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor, wait

from PIL import Image

from veil.faces import pixels

logger = logging.getLogger(__name__)

PREFETCHED_FORMATS = frozenset({"jpeg"})
MAX_PIXELS = 50_000_000  # 150 MB of RGB held at most
LOWEST_PRIORITY = 19
# How long an unfinished decode may go without reading on before the caller decodes itself:
# a 64 KiB block of a 12 MP JPEG decodes in about 1.5 ms at full speed.
PATIENCE = 0.010  # seconds
# The decoder reads this much at a time (not the whole stream, as `pillow_codecs` has Pillow
# do elsewhere): a pause takes hold, and progress shows, block by block.
PAUSABLE_BLOCK = 64 * 1024
MAX_PAUSE = 2.0  # seconds a decode is held before it goes on regardless (still at idle priority)


class _Source(io.BytesIO):
    """The JPEG bytes as the decoder reads them: reading waits while paused, and stops the
    decode once abandoned."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.abandoned = False
        self.go = threading.Event()
        self.go.set()

    def read(self, size: int | None = -1, /) -> bytes:
        self.go.wait(MAX_PAUSE)  # bounded: a forgotten pause must not hold the thread for ever
        if self.abandoned:
            raise Abandoned
        if size is not None and size > PAUSABLE_BLOCK:  # a JPEG's segments are smaller
            size = PAUSABLE_BLOCK
        return super().read(size)


class Abandoned(Exception):
    """The pixels are no longer wanted: the background decode stops where it is."""


class Prefetched:
    """One background decode. `take()` once, or `close()`; dropping it closes it too."""

    def __init__(self, future: Future, source: _Source, release: threading.Semaphore) -> None:
        self._future = future
        self._source = source  # how far the decoder has read: its progress
        self._finalizer = weakref.finalize(self, _settle, future, source, release)

    def take(self) -> Image.Image | None:
        """The decoded image, once the decode is over, or None if it failed or stalls.

        An unfinished decode is waited for while it keeps moving (once detection is over, it
        usually has a core to itself); one that stops moving is starved by other work, and
        the caller is better off decoding at its own priority."""
        self._source.go.set()
        while not self._future.done():
            read = self._source.tell()
            wait([self._future], timeout=PATIENCE)
            if not self._future.done() and self._source.tell() == read:
                break
        ready = self._future.done() and not self._future.cancelled()
        image = self._future.result() if ready and self._future.exception() is None else None
        self.close()
        return image

    def pause(self) -> None:
        """Hold the decode at its next read (while detection has both cores to itself)."""
        self._source.go.clear()

    def close(self) -> None:
        self._finalizer()


def _settle(future: Future, source: _Source, release: threading.Semaphore) -> None:
    """Stop the decode, and free the slot once it is cancelled or over."""
    source.abandoned = True  # a decode under way stops at its next read (64 KiB at most)
    source.go.set()
    if future.cancel() or future.done():
        release.release()
    else:
        future.add_done_callback(lambda _: release.release())


class Prefetcher:
    def __init__(self) -> None:
        self._slot = threading.Semaphore(1)
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._usable: bool | None = None

    def start(self, data: bytes, fmt: str, width: int, height: int) -> Prefetched | None:
        """Begin decoding `data` in the background, or None when it is not worth it or the
        one slot is taken."""
        if fmt not in PREFETCHED_FORMATS or width * height > MAX_PIXELS:
            return None
        executor = self._background()
        if executor is None or not self._slot.acquire(blocking=False):
            return None
        source = _Source(data)
        try:
            future = executor.submit(_decode, source, fmt)
        except RuntimeError:  # shut down while the proxy stops
            self._slot.release()
            return None
        return Prefetched(future, source, self._slot)

    def _background(self) -> ThreadPoolExecutor | None:
        with self._lock:
            if self._usable is None:
                self._usable = _can_lower_priority()
                if self._usable:
                    self._executor = ThreadPoolExecutor(
                        1, thread_name_prefix="veil-prefetch", initializer=_lowest_priority
                    )
            return self._executor


def _decode(source: _Source, fmt: str) -> Image.Image:
    return pixels.load(pixels.open_still(source, fmt), fmt)


def _lowest_priority() -> None:
    # On Linux a thread has its own nice value: this lowers the prefetch thread only.
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)


def _can_lower_priority() -> bool:
    """Whether a thread's own priority can be set here (Linux), tried on a throwaway thread."""
    outcome: list[bool] = []

    def attempt() -> None:
        try:
            _lowest_priority()
            outcome.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) > 0)
        except (OSError, AttributeError):
            outcome.append(False)

    probe = threading.Thread(target=attempt, name="veil-prefetch-probe")
    probe.start()
    probe.join()
    if not outcome[0]:
        logger.info("thread priorities cannot be lowered here: no background decoding")
    return outcome[0]


_shared = Prefetcher()


def start(data: bytes, fmt: str, width: int, height: int) -> Prefetched | None:
    return _shared.start(data, fmt, width, height)
