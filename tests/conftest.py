"""Shared test fixtures: where the real test images are, and how missing tools are treated."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPORA = Path(os.environ.get("VEIL_CORPORA", ROOT.parent / "shared" / "corpora"))
METADATA_CORPUS = CORPORA / "metadata"
FACES_CORPUS = CORPORA / "faces"

# In CI (VEIL_REQUIRE_ALL=1) a missing tool or corpus fails the run instead of skipping.
REQUIRE_ALL = os.environ.get("VEIL_REQUIRE_ALL") == "1"


def require(condition: bool, reason: str) -> None:
    """Skip when something external is missing; fail instead when CI requires everything."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required for this run (VEIL_REQUIRE_ALL=1): {reason}")
    pytest.skip(reason)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed")
    assert path is not None
    return path


def corpus_file(name: str) -> Path:
    path = METADATA_CORPUS / name
    require(path.is_file(), f"test image {path} is absent (../shared/corpora)")
    return path


@pytest.fixture
def metadata_corpus() -> Path:
    require(METADATA_CORPUS.is_dir(), f"{METADATA_CORPUS} is absent")
    return METADATA_CORPUS


@pytest.fixture
def faces_corpus() -> Path:
    require(FACES_CORPUS.is_dir(), f"{FACES_CORPUS} is absent")
    return FACES_CORPUS
