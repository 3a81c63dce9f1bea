"""`veil ca`: where the proxy's CA certificate is, and how to make clients trust it."""

from __future__ import annotations

import argparse
from pathlib import Path

from veil.cli.run import CA_CERT, ensure_ca


def add_parser(commands) -> None:
    p = commands.add_parser("ca", help="where the CA certificate is and how to install it")
    p.add_argument("--certs", default="certs", help="directory of the proxy's CA")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    certs = Path(args.certs).resolve()
    ensure_ca(certs)
    pem = certs / CA_CERT
    cer = certs / "mitmproxy-ca-cert.cer"
    print(
        f"""CA certificate: {pem}
(also as {cer.name} and mitmproxy-ca-cert.p12 in the same directory; the private key is in
mitmproxy-ca.pem: keep it secret, mode 0600)

Trust it on the machines whose uploads Veil inspects:
  Debian/Ubuntu: sudo cp {pem} /usr/local/share/ca-certificates/veil.crt
                 sudo update-ca-certificates
  macOS:         sudo security add-trusted-cert -d -p ssl -p basic \\
                   -k /Library/Keychains/System.keychain {pem}
  Windows:       certutil -addstore root {cer}
  Chrome/Chromium on Linux (NSS):
                 certutil -d sql:$HOME/.local/share/pki/nssdb -A -t "C,," -n veil -i {pem}
  Firefox:       enterprise policy "Certificates": {{"ImportEnterpriseRoots": true}}, or
                 Settings > Certificates > Import
  Python SDKs:   SSL_CERT_FILE={pem} (httpx, openai, anthropic); REQUESTS_CA_BUNDLE for requests
  curl:          curl --cacert {pem} -x http://127.0.0.1:8080 ...
For a fleet, put one organisation CA in every instance's certs directory (docs/deployment.md)."""
    )
    return 0
