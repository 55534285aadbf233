"""``venue`` command line: ``venue serve`` starts the venue on its embedded defaults."""

from __future__ import annotations

import argparse
import socket
import sys

from venue.config import ConfigError, load_config
from venue.logs import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="venue", description="ABS Venue: trading venue for ABS tranche units."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="start the venue (HTTP on --host/--port, data in --data-dir)",
        description="Start the venue. On first start the data directory is created and seeded "
        "with demo instruments and participants; their API credentials are written to "
        "DATA_DIR/credentials.json (0600). Stops cleanly on SIGTERM/SIGINT.",
        epilog="Exit status: 0 after a clean stop; 1 if the venue cannot start (the address "
        "cannot be listened on, the data directory is refused); 2 for a usage or configuration "
        "error. The address is bound before the data directory is touched.",
    )
    serve.add_argument("--config", help="TOML configuration file (see README: Configuration)")
    serve.add_argument("--data-dir", help="data directory (default ./data)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8080)")
    serve.add_argument(
        "--allow-reference-engine",
        action="store_true",
        default=None,
        help="start even if the compiled matching engine is not built (slow fallback)",
    )
    serve.add_argument(
        "--no-demo",
        dest="seed_demo",
        action="store_false",
        default=None,
        help="do not seed demo data into an empty data directory",
    )
    return parser


BACKLOG = 128  # aiohttp's default


def listen(host: str, port: int) -> list[socket.socket]:
    """Bind and listen on every address ``host`` resolves to (as asyncio's ``create_server``
    does: SO_REUSEADDR, IPv6 sockets IPv6-only), before the venue touches its data directory, so
    that a busy port or an address this machine does not have fails with nothing created.
    Connections made while the venue is still opening wait in the backlog until it is ready."""
    infos = socket.getaddrinfo(
        host, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(
            args.config,
            overrides={
                "data_dir": args.data_dir,
                "host": args.host,
                "port": args.port,
                "allow_reference_engine": args.allow_reference_engine,
                "seed_demo": args.seed_demo,
            },
        )
    except ConfigError as exc:
        print(f"venue: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)

    from aiohttp import web

    from ledger.ledger import LedgerError
    from ledger.recordlog import RecordLogError
    from venue.api.server import create_app
    from venue.core.snapshots import SnapshotError
    from venue.service import RecoveryError, VenueStartupError

    try:
        sockets = listen(config.host, config.port)
    except OSError as exc:  # busy, not an address of this machine, not resolvable, privileged
        print(f"venue: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    try:
        web.run_app(
            create_app(config),
            sock=sockets,
            print=None,
            handle_signals=True,
            shutdown_timeout=10,
            backlog=BACKLOG,
        )
    except (
        VenueStartupError,
        RecoveryError,
        SnapshotError,
        LedgerError,
        RecordLogError,
        OSError,  # the data directory (or a file in it) could not be used: the error names it
    ) as exc:
        # Refused loudly and left as found: nothing is repaired behind the operator's back.
        print(f"venue: refusing to start: {exc}", file=sys.stderr)
        return 1
    finally:
        for sock in sockets:
            sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
