"""``venue`` command line: ``venue serve`` starts the venue on its embedded defaults."""

from __future__ import annotations

import argparse
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
        web.run_app(
            create_app(config),
            host=config.host,
            port=config.port,
            print=None,
            handle_signals=True,
            shutdown_timeout=10,
        )
    except (VenueStartupError, RecoveryError, SnapshotError, LedgerError, RecordLogError) as exc:
        # Refused loudly and left as found: nothing is repaired behind the operator's back.
        print(f"venue: refusing to start: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"venue: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
