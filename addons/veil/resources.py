"""Where the files shipped with Veil live: inside the installed package, or in the checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def policies_dir() -> Path:
    """`veil/policies` in a wheel; the repository's `policies/` in an editable checkout."""
    installed = _PACKAGE_DIR / "policies"
    if installed.is_dir():
        return installed
    return _PACKAGE_DIR.parent.parent / "policies"


def policy_file(name: str) -> Path:
    return policies_dir() / name


def project_root() -> Path | None:
    """The checkout Veil runs from, when it runs from one (for default certs/ and audit/)."""
    root = _PACKAGE_DIR.parent.parent
    return root if (root / "pyproject.toml").is_file() else None
