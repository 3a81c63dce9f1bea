"""Test-only mitmproxy script: every upstream connection goes to the fake AI service.

Host names stay as the client asked (SNI, Host header, the proxy's routing), only the TCP
destination changes, so Veil sees `https://chatgpt.com/...` exactly as in production.
"""

from mitmproxy import ctx
from mitmproxy.proxy import server_hooks


class RedirectUpstream:
    def load(self, loader) -> None:
        loader.add_option("test_upstream", str, "", "HOST:PORT every connection goes to")

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        host, port = ctx.options.test_upstream.rsplit(":", 1)
        data.server.address = (host, int(port))


addons = [RedirectUpstream()]
