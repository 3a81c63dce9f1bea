"""Test-only mitmproxy script: matching a request against the catalogue raises, to prove that
a request Veil cannot route is stopped rather than sent on unexamined."""

import veil.catalogue


def _broken_match(*args, **kwargs):
    raise RuntimeError("routing exploded (injected by a test)")


veil.catalogue.Catalogue.match = _broken_match
addons: list = []
