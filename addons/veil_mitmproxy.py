"""Entry script for running Veil inside a plain mitmdump: `mitmdump -s addons/veil_mitmproxy.py`.

`veil run` is the supported way to start the proxy; this script exists for deployments that
already manage mitmdump themselves.
"""

from veil.addon import Veil

addons = [Veil()]
