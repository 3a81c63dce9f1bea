"""`veil run`: start the proxy (mitmdump with the Veil addon) and say how to use it."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from veil import resources
from veil.audit.files import Layout
from veil.catalogue import Catalogue, CatalogueError
from veil.policy import PolicyError, load_policy

CA_CERT = "mitmproxy-ca-cert.pem"


def add_parser(commands) -> None:
    p = commands.add_parser(
        "run",
        help="start the proxy",
        description="Start the proxy. Arguments after '--' go to mitmproxy unchanged "
        "(e.g. -- -s extra.py --set ssl_insecure=true).",
    )
    p.add_argument("--policy", help="policy file (default: policies/default.yaml or built-in)")
    p.add_argument("--services", help="service catalogue (default: the built-in catalogue)")
    p.add_argument("--listen-host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--listen-port", type=int, default=8080, help="port to listen on")
    p.add_argument("--certs", default="certs", help="directory of the proxy's CA")
    p.add_argument("--audit", default="audit", help="directory of the audit trail")
    p.add_argument("--max-upload", help="largest upload to an AI service, e.g. 64MiB")
    p.add_argument(
        "--audit-rotate", metavar="WHEN", help="new audit file: daily, 100MiB, or daily,100MiB"
    )
    p.add_argument(
        "--audit-retention", metavar="AGE", help="delete rotated audit files older than AGE (90d)"
    )
    p.add_argument(
        "--audit-seal-key", metavar="FILE", help="HMAC the audit chain (veil audit keygen seal)"
    )
    p.add_argument(
        "--quarantine-key",
        metavar="FILE",
        help="keep blocked images encrypted to this public key (veil audit keygen quarantine)",
    )
    p.add_argument(
        "--proxyauth",
        metavar="SPEC",
        help="ask clients for proxy credentials; the user name is what policy users/groups "
        "match: user:pass, @htpasswd-file, ldap[s]:..., or any",
    )
    p.set_defaults(handler=handle)


def default_policy_path() -> Path:
    local = Path("policies/default.yaml")
    return local if local.is_file() else resources.policy_file("default.yaml")


def handle(args: argparse.Namespace) -> int:
    policy_path = Path(args.policy) if args.policy else default_policy_path()
    try:
        load_policy(policy_path, Catalogue.load(args.services))
    except (PolicyError, CatalogueError) as exc:
        print(f"veil run: the policy is invalid, not starting:\n{exc}", file=sys.stderr)
        return 1
    certs = Path(args.certs).resolve()
    ensure_ca(certs)
    mitm_args = [
        "--listen-host",
        args.listen_host,
        "--listen-port",
        str(args.listen_port),
        "--set",
        f"confdir={certs}",
        "--set",
        f"veil_policy={policy_path.resolve()}",
        "--set",
        f"veil_audit={Path(args.audit).resolve()}",
    ]
    if args.services:
        mitm_args += ["--set", f"veil_services={Path(args.services).resolve()}"]
    if args.max_upload:
        mitm_args += ["--set", f"veil_max_upload={args.max_upload}"]
    audit_args = audit_options(args)
    if audit_args is None:
        return 1
    mitm_args += audit_args
    if args.proxyauth:
        spec = args.proxyauth
        if spec.startswith("@"):  # an htpasswd file: make the path independent of the cwd
            spec = f"@{Path(spec[1:]).resolve()}"
        mitm_args += ["--set", f"proxyauth={spec}"]
    hint = StartupHint(policy_path, Path(args.audit), certs / CA_CERT)
    return start_mitmdump(mitm_args + list(args.passthrough), hint)


def audit_options(args: argparse.Namespace) -> list[str] | None:
    """The audit flags as mitmproxy options, checked first so mistakes stop here, clearly."""
    from veil.audit import AuditError, AuditLog

    keys = {"veil_audit_seal_key": args.audit_seal_key, "veil_quarantine_key": args.quarantine_key}
    values = {k: str(Path(v).resolve()) for k, v in keys.items() if v}
    values |= {"veil_audit_rotate": args.audit_rotate, "veil_audit_retention": args.audit_retention}
    try:
        AuditLog.from_options(
            args.audit,
            rotate=args.audit_rotate or "",
            retention=args.audit_retention or "",
            seal_key_file=values.get("veil_audit_seal_key", ""),
            quarantine_key_file=values.get("veil_quarantine_key", ""),
        )
    except AuditError as exc:
        print(f"veil run: {exc}", file=sys.stderr)
        return None
    return [arg for k, v in values.items() if v for arg in ("--set", f"{k}={v}")]


def ensure_ca(certs: Path) -> None:
    """Generate the CA before starting, so that its path can be printed and installed."""
    from mitmproxy.certs import CertStore

    certs.mkdir(parents=True, exist_ok=True, mode=0o700)
    CertStore.from_store(certs, "mitmproxy", 2048)


def start_mitmdump(arguments: list[str], hint: StartupHint) -> int:
    from mitmproxy.tools import cmdline
    from mitmproxy.tools.dump import DumpMaster
    from mitmproxy.tools.main import run

    from veil.addon import Veil

    class VeilMaster(DumpMaster):
        def __init__(self, options, **kwargs) -> None:
            super().__init__(options, **kwargs)
            self.addons.add(Veil(), hint)

    run(VeilMaster, cmdline.mitmdump, arguments)
    return 0


class StartupHint:
    """Prints, once the proxy listens, where it is, where the CA is and a line to try."""

    def __init__(self, policy: Path, audit: Path, ca_cert: Path) -> None:
        self.policy, self.audit, self.ca_cert = policy, audit, ca_cert

    def running(self) -> None:
        from mitmproxy import ctx

        server = ctx.master.addons.get("proxyserver")
        addrs = server.listen_addrs() if server else []
        host, port = addrs[0][:2] if addrs else ("127.0.0.1", 8080)
        proxy = f"http://{host}:{port}"
        ca = _short(self.ca_cert)
        logging.getLogger("veil").info(
            "\n".join(
                [
                    f"Veil is running. Proxy: {proxy}",
                    f"  policy:  {_short(self.policy)}",
                    f"  audit:   {_short(Layout(self.audit).active)}",
                    f"  CA:      {ca}   (how to trust it: veil ca)",
                    "Try an upload:",
                    f"  curl -x {proxy} --cacert {ca} -F file=@photo.jpg "
                    "https://chatgpt.com/backend-api/files",
                ]
            )
        )


def _short(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
