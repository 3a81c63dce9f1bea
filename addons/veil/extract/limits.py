"""Bounds on what extraction will look at. Past a bound the upload is refused, never passed."""

from __future__ import annotations

from dataclasses import dataclass


class ExtractionLimitExceeded(ValueError):
    """The body is beyond what Veil inspects; the upload fails closed."""


@dataclass(frozen=True)
class Limits:
    max_images: int = 32
    # Encoding layers inside each other: a multipart part, a JSON string, a form field, JSON
    # inside a JSON string ... (the structure of one JSON document does not count).
    max_depth: int = 8
    max_decoded: int = 256 * 1024 * 1024  # bytes, after Content-Encoding

    def check_body(self, size: int) -> None:
        if size > self.max_decoded:
            raise ExtractionLimitExceeded(
                f"the decoded body is {size} bytes; Veil inspects at most {self.max_decoded}"
            )

    def check_count(self, count: int) -> None:
        if count > self.max_images:
            raise ExtractionLimitExceeded(f"the upload carries more than {self.max_images} images")

    def check_depth(self, depth: int) -> None:
        if depth > self.max_depth:
            raise ExtractionLimitExceeded(
                f"containers are nested more than {self.max_depth} levels deep"
            )
