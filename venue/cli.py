"""``venue`` command line: ``venue serve`` starts the venue on its embedded defaults;
``venue admit-operator`` admits an operator into a stopped venue (the first one of a venue
started with ``--no-demo``, which has no participant to call the admin API with)."""

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
    admit = commands.add_parser(
        "admit-operator",
        help="admit an operator into a stopped venue and print its API key",
        description="Admit an operator participant (a journaled command, on the ledger like any "
        "admission) into the venue in --data-dir, which must not be running, and print its "
        "credentials as JSON on stdout: the key id and, for an HMAC key, the secret (shown "
        "this once). With --public-key the key is that Ed25519 public key and no secret exists.",
        epilog="Exit status: 0 admitted; 1 refused (the participant exists, the venue is "
        "running or cannot open); 2 for a usage or configuration error.",
    )
    admit.add_argument("--config", help="TOML configuration file (see README: Configuration)")
    admit.add_argument("--data-dir", help="data directory (default ./data)")
    admit.add_argument("--participant-id", default="P-OPS1", help="default P-OPS1")
    admit.add_argument("--name", default="Venue Operations", help="default 'Venue Operations'")
    admit.add_argument("--public-key", help="an Ed25519 public key (64 hex) instead of HMAC")
    return parser


def admit_operator(config, participant_id: str, name: str, public_key: str | None) -> int:
    """``venue admit-operator``: open the venue, admit, print the credentials, close."""
    import asyncio
    import json

    from venue.errors import VenueError
    from venue.service import Venue

    async def admit() -> dict:
        venue = await Venue.open(config)
        try:
            return await venue.admit(participant_id, name, None, "operator", public_key)
        finally:
            await venue.close()

    try:
        admitted = asyncio.run(admit())
    except VenueError as exc:
        print(f"venue: refused: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(admitted, indent=2))
    return 0


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
    serving = args.command == "serve"
    overrides = {"data_dir": args.data_dir}
    if serving:
        overrides.update(
            host=args.host,
            port=args.port,
            allow_reference_engine=args.allow_reference_engine,
            seed_demo=args.seed_demo,
        )
    else:  # an operator is admitted into an existing venue, never into a fresh demo
        overrides["seed_demo"] = False
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"venue: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    if not serving:
        return _refusing_to_start(
            lambda: admit_operator(config, args.participant_id, args.name, args.public_key)
        )

    from aiohttp import web

    from venue.api.server import create_app

    try:
        sockets = listen(config.host, config.port)
    except OSError as exc:  # busy, not an address of this machine, not resolvable, privileged
        print(f"venue: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1

    def serve() -> int:
        web.run_app(
            create_app(config),
            sock=sockets,
            print=None,
            handle_signals=True,
            shutdown_timeout=10,
            backlog=BACKLOG,
        )
        return 0

    try:
        return _refusing_to_start(serve)
    finally:
        for sock in sockets:
            sock.close()


def _refusing_to_start(run) -> int:
    """``run()``'s exit status, or 1 with the reason on stderr if the venue cannot open."""
    from ledger.ledger import LedgerError
    from ledger.recordlog import RecordLogError
    from venue.core.snapshots import SnapshotError
    from venue.service import RecoveryError, VenueStartupError

    try:
        return run()
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


if __name__ == "__main__":
    sys.exit(main())
