"""Test-only mitmproxy script: image inspection raises, to prove that Veil fails closed."""

import veil.pipeline


def _broken_inspect(*args, **kwargs):
    raise RuntimeError("inspection exploded (injected by a test)")


veil.pipeline.inspect = _broken_inspect
addons: list = []
