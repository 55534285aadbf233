"""The ``venue-audit`` command line (clig.dev conventions), over the audit's library API.

Data goes to stdout, diagnostics to stderr; ``--json`` everywhere for machine-readable output;
``--data-dir`` (default ``./data``) and ``--json`` may come before or after the command. Exit
status: 0 verified / done, 1 verification failed (or the thing asked for is not there), 2 usage
error (argparse errors, a missing data directory, options that contradict each other). With
``--json`` every outcome, a usage error included, is one JSON object on stdout (``{"ok":
false, "code": ..., "problem": ...}`` for a failure) besides the human message on stderr.
``verify``, ``balances``, ``report`` and ``export`` show a progress line on stderr when stderr
is a terminal and the run has taken more than ``_Progress.SHOW_AFTER_SECONDS``.

Commands (docs/LEDGER.md section 10): ``verify``, ``show``, ``balances``, ``receipt``,
``verify-receipt``, ``consistency``, ``export``, ``report``, ``export-ledger`` (the copy a
clerk may take away: ``ledger.audit.export``), and the operator's ``accept-loss``. Each is one
``_command_*`` function; :func:`build_parser` wires them to argparse (each with a description
and examples for ``--help``) and :func:`main` runs one.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.audit.export import export_ledger
from ledger.audit.reading import (
    AuditFailure,
    AuditUsageError,
    IncompleteTailWarning,
    ledger_directory,
    read_blocks,
    read_checkpoint_notes,
)
from ledger.audit.reports import (
    block_to_json,
    compute_balances,
    make_receipt,
    trusted_keys,
    volume_report,
)
from ledger.audit.verify import PARALLEL_FROM_BYTES, verify_ledger
from ledger.checkpoint import Checkpoint, CheckpointError, verify_checkpoint
from ledger.keys import KeyFileError, load_public_key, public_key_from_text
from ledger.proof import MerkleTree, ProofError, verify_consistency
from ledger.receipt import ReceiptError, receipt_to_json, verify_receipt
from ledger.recordlog import RecordLogError, accept_tail_loss

__all__ = ["build_parser", "main"]


def _format_amount(asset: str, amount: int) -> str:
    """Cash in yuan with 2 decimals (fen inside); units as plain integers."""
    if asset != "CNY":
        return str(amount)
    sign = "-" if amount < 0 else ""
    return f"{sign}{abs(amount) // 100}.{abs(amount) % 100:02d}"


def _format_time(timestamp_ns: int) -> str:
    """RFC 3339 UTC with nanoseconds, from integer nanoseconds (no float rounding)."""
    seconds, nanoseconds = divmod(timestamp_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{nanoseconds:09d}Z"


def _emit_json(out: TextIO, value: Any) -> None:
    out.write(json.dumps(value, sort_keys=True) + "\n")


# What progress lines measure time with (a test replaces it).
_clock: Callable[[], float] = time.perf_counter


class _Progress:
    """A one-line progress display on stderr, only when stderr is a terminal and only once
    the run has lasted ``SHOW_AFTER_SECONDS`` (a small ledger finishes without one).

    Called with the number of blocks done so far; redraws at most every 0.2 s. ``clock`` is
    for tests.
    """

    SHOW_AFTER_SECONDS = 0.5

    def __init__(
        self, stream: TextIO, label: str = "verifying", clock: Callable[[], float] | None = None
    ) -> None:
        self.stream = stream
        self.label = label
        self.clock = clock or _clock
        self.enabled = stream.isatty()
        self.started = self.clock()
        self.last = self.started
        self.shown = False

    def __call__(self, count: int) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if now - self.started < self.SHOW_AFTER_SECONDS or now - self.last < 0.2:
            return
        self.last = now
        self.shown = True
        rate = count / max(now - self.started, 1e-9)
        self.stream.write(f"\r{self.label}: {count:,} blocks ({rate:,.0f}/s)")
        self.stream.flush()

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _load_key_argument(text: str) -> Ed25519PublicKey:
    """``--pubkey``: a file holding a public key, or the key text itself."""
    path = Path(text)
    try:
        if path.is_file():
            return load_public_key(path)
        return public_key_from_text(text)
    except KeyFileError as error:
        raise AuditUsageError(f"--pubkey: {error}") from error


def _command_verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    pinned = _load_key_argument(args.pubkey) if args.pubkey else None
    if args.pubkey and Path(args.pubkey).is_file():
        source = f"pinned by --pubkey {args.pubkey}"
    else:
        source = "pinned by --pubkey (key text)"
    progress = _Progress(err)
    result = verify_ledger(
        args.data_dir,
        workers=args.workers,
        executor=args.executor,
        pinned_key=pinned,
        progress=progress,
        pinned_key_source=source,
    )
    progress.done()
    for warning in result.warnings:
        err.write(f"venue-audit: warning: {warning}\n")
    if args.json:
        _emit_json(out, result.to_json())
    elif result.ok:
        out.write(
            f"verified {result.blocks} blocks and {result.checkpoints} checkpoints "
            f"(root {result.root_hash}, genesis key {result.genesis_key_id}, "
            f"current key {result.current_key_id}) in {result.seconds:.2f} s\n"
            f"{result.trust_line()}\n"
        )
    if not result.ok:
        where = "" if result.first_bad_height is None else f"height {result.first_bad_height}: "
        err.write(f"venue-audit: verification failed at {where}{result.problem_code}: ")
        err.write(f"{result.problem}\n")
        return 1
    return 0


def _command_show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.height is not None and (args.from_height is not None or args.to_height is not None):
        raise AuditUsageError("give HEIGHT or --from/--to, not both")
    low = args.height if args.height is not None else (args.from_height or 0)
    high = args.height if args.height is not None else args.to_height
    shown = 0
    for signed in read_blocks(args.data_dir):
        if signed.height < low:
            continue
        if high is not None and signed.height > high:
            break
        shown += 1
        view = block_to_json(signed)
        if args.json:
            _emit_json(out, view)
            continue
        out.write(
            f"#{view['height']} {view['kind']} {_format_time(view['timestamp_ns'])} "
            f"key={view['key_id']} "
            f"hash={view['block_hash'][:16]}\n"
            f"  payload {json.dumps(view['payload'], sort_keys=True)}\n"
        )
        for account, asset, amount in signed.block.deltas:
            out.write(f"  {account:<24} {asset:<20} {amount:+d}\n")
    if shown == 0:
        raise AuditFailure("no block in the requested range")
    return 0


def _command_balances(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    progress = _Progress(err, "reading")
    balances = compute_balances(args.data_dir, args.at, progress)
    progress.done()
    rows = sorted(
        (account, asset, amount)
        for (account, asset), amount in balances.items()
        if args.account is None or account == args.account
    )
    if args.json:
        _emit_json(out, [{"account": a, "asset": s, "balance": amount} for a, s, amount in rows])
        return 0
    for account, asset, amount in rows:
        out.write(f"{account:<24} {asset:<20} {_format_amount(asset, amount):>20}\n")
    return 0


def _command_receipt(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    receipt = make_receipt(args.data_dir, args.trade_id)
    out.write(receipt_to_json(receipt) if not args.json else json.dumps(receipt) + "\n")
    return 0


def _command_verify_receipt(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    keys = [_load_key_argument(text) for text in args.pubkey]
    try:
        text = Path(args.file).read_text()
    except OSError as error:
        raise AuditUsageError(f"cannot read {args.file}: {error}") from error
    try:
        verified = verify_receipt(text, keys)
    except ReceiptError as error:
        if args.json:
            _emit_json(out, {"ok": False, "code": error.code, "problem": error.message})
        err.write(f"venue-audit: receipt does not verify: {error}\n")
        return 1
    summary = {
        "ok": True,
        "height": verified.height,
        "trade_id": verified.trade_id,
        "block_hash": verified.block_hash.hex(),
        "origin": verified.origin,
        "tree_size": verified.tree_size,
        "root_hash": verified.root_hash.hex(),
        "fill": verified.fill,
    }
    if args.json:
        _emit_json(out, summary)
    else:
        out.write(
            f"receipt verified: trade {verified.trade_id} is block {verified.height} of "
            f"{verified.origin} at size {verified.tree_size}\n"
        )
    return 0


def _command_consistency(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        old_note = Path(args.old_checkpoint).read_text()
    except OSError as error:
        raise AuditUsageError(f"cannot read {args.old_checkpoint}: {error}") from error
    directory = ledger_directory(args.data_dir)
    notes, problem = read_checkpoint_notes(directory)
    if problem is not None:
        raise AuditFailure(problem)
    if not notes:
        raise AuditFailure("the ledger has no stored checkpoint yet")
    keys = trusted_keys(args.data_dir)
    old = _verify_with_any(old_note, keys, "old checkpoint")
    new = _verify_with_any(notes[-1], keys, "newest checkpoint")
    tree = MerkleTree.from_leaf_hashes(signed.leaf_hash for signed in read_blocks(args.data_dir))
    if new.size > tree.size or tree.root(new.size) != new.root_hash:
        raise AuditFailure("the newest stored checkpoint does not match the blocks")
    if old.size > new.size or old.origin != new.origin:
        raise AuditFailure(f"old checkpoint (size {old.size}) is not an earlier state of this log")
    proof = tree.consistency_proof(old.size, new.size) if 0 < old.size < new.size else []
    try:
        if old.size == 0:
            if old.root_hash != MerkleTree().root():
                raise ProofError("an empty tree has the empty root")
        else:
            verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
    except ProofError as error:
        if args.json:
            _emit_json(out, {"consistent": False, "problem": str(error)})
        err.write(f"venue-audit: NOT consistent: {error}\n")
        return 1
    result = {
        "consistent": True,
        "old_size": old.size,
        "new_size": new.size,
        "old_root": old.root_hash.hex(),
        "new_root": new.root_hash.hex(),
        "proof": [node.hex() for node in proof],
        "new_checkpoint": notes[-1],
    }
    if args.json:
        _emit_json(out, result)
    else:
        out.write(
            f"consistent: the log at size {old.size} is a prefix of the log at size {new.size} "
            f"({len(proof)} proof hashes)\n"
        )
    return 0


def _verify_with_any(note: str, keys: Sequence[Ed25519PublicKey], what: str) -> Checkpoint:
    last_error: CheckpointError | None = None
    for key in keys:
        try:
            return verify_checkpoint(note, key)
        except CheckpointError as error:
            last_error = error
    raise AuditFailure(f"{what} is not signed by any venue key: {last_error}")


def _command_export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.json and args.format != "jsonl":
        raise AuditUsageError(
            f"--json writes JSON lines, which --format {args.format} contradicts: use "
            "--format jsonl, or leave out --json"
        )
    progress = _Progress(err, "exporting")
    if args.format == "jsonl":
        for signed in read_blocks(args.data_dir, progress):
            _emit_json(out, block_to_json(signed))
        progress.done()
        return 0
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["height", "timestamp_ns", "kind", "key_id", "block_hash", "payload", "deltas"])
    for signed in read_blocks(args.data_dir, progress):
        block = signed.block
        writer.writerow(
            [
                block.height,
                block.timestamp_ns,
                block.kind,
                block.key_id,
                signed.block_hash.hex(),
                json.dumps(block.payload, sort_keys=True, separators=(",", ":")),
                json.dumps([list(delta) for delta in block.deltas], separators=(",", ":")),
            ]
        )
    progress.done()
    return 0


def _command_export_ledger(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    result = export_ledger(args.data_dir, args.directory)
    if args.json:
        _emit_json(out, result.to_json())
    else:
        out.write(
            f"exported {result.blocks} blocks and {result.checkpoints} checkpoints (key "
            f"{result.key_id}) to {result.directory}: run venue-audit --data-dir "
            f"{result.directory} verify\n"
        )
    return 0


def _command_accept_loss(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        report = accept_tail_loss(args.log_dir, args.record)
    except RecordLogError as error:
        raise AuditFailure(str(error)) from error
    kept = Path(args.log_dir) / f"accepted-loss-{args.record:020d}.bin"
    if args.json:
        _emit_json(
            out,
            {
                "ok": True,
                "log": str(args.log_dir),
                "records": report.record_count,
                "truncated_bytes": report.truncated_bytes,
                "segment": report.truncated_path,
                "kept_in": str(kept),
            },
        )
    else:
        out.write(
            f"accepted the loss of record {args.record} and anything after it in {args.log_dir}: "
            f"{report.truncated_bytes} bytes cut from {report.truncated_path}, kept in {kept}; "
            f"the log now holds {report.record_count} records\n"
        )
    return 0


def _command_report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    progress = _Progress(err, "reading")
    report = volume_report(args.data_dir, progress)
    progress.done()
    if args.json:
        _emit_json(out, report)
        return 0
    out.write(f"{'instrument':<24} {'fills':>8} {'qty':>14} {'amount (CNY)':>20}\n")
    for name, row in report["by_instrument"].items():
        out.write(
            f"{name:<24} {row['count']:>8} {row['qty']:>14} "
            f"{_format_amount('CNY', row['settlement_amount']):>20}\n"
        )
    out.write(f"\n{'segment pair':<24} {'fills':>8} {'qty':>14} {'amount (CNY)':>20}\n")
    for name, row in [*report["by_segment_pair"].items(), ("total", report["total"])]:
        out.write(
            f"{name:<24} {row['count']:>8} {row['qty']:>14} "
            f"{_format_amount('CNY', row['settlement_amount']):>20}\n"
        )
    return 0


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


class _ArgumentError(Exception):
    """A command line argparse refused; ``usage`` is the usage line of the (sub)command."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises instead of printing and exiting, so that ``main`` can
    answer a usage error in JSON too (``--help`` still prints and exits 0)."""

    def error(self, message: str) -> NoReturn:
        raise _ArgumentError(message, self.format_usage())


# name -> (one-line help, description, examples) of every command, in --help order.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "verify": (
        "check checksums, links, signatures, balances, checkpoints",
        "Check every block record (checksum, strict decoding, height, hash link, schema and "
        "delta rules, the key in force and its Ed25519 signature, no negative balance, no trade "
        "settled twice), then every stored checkpoint (signature, origin, root), and that "
        "keys/ledger_ed25519.pub holds the key in force. Reports the first bad height, and "
        "which key it trusted and where that trust came from.",
        "venue-audit --data-dir data verify\n"
        "venue-audit --data-dir data verify --pubkey keys-from-the-venue.pub --json\n"
        "venue-audit --data-dir data verify --workers 1",
    ),
    "show": (
        "print blocks",
        "Print one block, or a range of blocks, decoded (no signature checks: use verify).",
        "venue-audit --data-dir data show 25\n"
        "venue-audit --data-dir data show --from 10 --to 20 --json",
    ),
    "balances": (
        "recompute balances",
        "Recompute every balance from the deltas of blocks 0..HEIGHT (default: all blocks).",
        "venue-audit --data-dir data balances\n"
        "venue-audit --data-dir data balances --at 1200 --account P-MM1 --json",
    ),
    "receipt": (
        "receipt for a fill",
        "Write the receipt of one fill (its block, an inclusion proof and the newest stored "
        "checkpoint covering it) to stdout: a participant checks it with verify-receipt.",
        "venue-audit --data-dir data receipt T000000000007 > receipt.json",
    ),
    "verify-receipt": (
        "check a receipt offline",
        "Check a receipt offline, with nothing but the venue's public key(s): the block, its "
        "signature, the checkpoint's signature and the inclusion proof. No data directory is "
        "read.",
        "venue-audit verify-receipt receipt.json --pubkey data/keys/ledger_ed25519.pub\n"
        "venue-audit verify-receipt receipt.json --pubkey OLD_KEY_HEX --pubkey NEW_KEY_HEX",
    ),
    "consistency": (
        "prove an old checkpoint is a prefix of the log",
        "Check an old checkpoint's signature and prove (RFC 6962 consistency proof) that the "
        "log it signs is a prefix of the newest stored checkpoint's: the ledger only grew.",
        "venue-audit --data-dir data consistency old-checkpoint.txt --json",
    ),
    "export": (
        "dump every block",
        "Write every block as CSV (columns height, timestamp_ns, kind, key_id, block_hash, "
        "payload, deltas) or as JSON lines. --json goes with --format jsonl only.",
        "venue-audit --data-dir data export --format csv > blocks.csv\n"
        "venue-audit --data-dir data export --format jsonl > blocks.jsonl",
    ),
    "report": (
        "volume by instrument/segment",
        "Fill count, quantity and settlement amount by instrument and by segment pair "
        "(interbank-interbank, interbank-exchange, exchange-exchange).",
        "venue-audit --data-dir data report\nvenue-audit --data-dir data report --json",
    ),
    "export-ledger": (
        "copy what a clerk may hold: blocks, checkpoints, public key",
        "Copy the ledger into DIR (which must not exist or be empty) laid out like a data "
        "directory: ledger/blocks/ (every block the newest checkpoint covers), "
        "ledger/checkpoints/ and keys/ledger_ed25519.pub. Nothing secret or private is "
        "copied: no signing key, journal, snapshots, credentials or ledger state file. Safe "
        "while the venue runs: blocks after the newest checkpoint are left out, so the copy "
        "is a consistent ledger. verify, show, balances, receipt, consistency, export and "
        "report then run on DIR alone.",
        "venue-audit --data-dir data export-ledger /media/clerk/ledger-2026-11-26\n"
        "venue-audit --data-dir /media/clerk/ledger-2026-11-26 verify",
    ),
    "accept-loss": (
        "operator: give up a damaged last record",
        "The operator's explicit decision to give up a record the venue refuses to open on: "
        "the last record of a record log (journal/, ledger/blocks/ or ledger/checkpoints/) "
        "whose whole length is present but whose checksum fails. It may have been "
        "acknowledged, which is why nothing truncates it without this. Checks that the damage "
        "is exactly that record at the end of the log, cuts it (and any bytes after it) and "
        "keeps them in LOG_DIR/accepted-loss-<record>.bin. The log must not be in use. After "
        "a journal record is given up, the venue opens one command short (or refuses, if "
        "that command's blocks are already on the ledger); after a ledger block, the journal "
        "replay writes it again; after a checkpoint, the venue issues a new "
        "one at its next checkpoint.",
        "venue-audit accept-loss data/journal --record 4755\n"
        "venue-audit accept-loss data/ledger/checkpoints --record 6 --json",
    ),
}


def _add_command(
    commands: argparse._SubParsersAction, name: str, common: argparse.ArgumentParser
) -> argparse.ArgumentParser:
    summary, description, examples = _COMMANDS[name]
    return commands.add_parser(
        name,
        parents=[common],
        help=summary,
        description=textwrap.fill(description, 78),  # the raw formatter keeps the examples
        epilog="examples:\n  " + examples.replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser (``--data-dir`` and ``--json`` accepted before or after a command)."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        help="venue data directory holding ledger/ (default: ./data)",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    parser = _Parser(
        prog="venue-audit",
        description="Verify and read the ABS Venue ledger. Exit 0 ok, 1 failed, 2 usage error.",
        epilog="Run venue-audit COMMAND --help for a command's description and examples.",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    verify = _add_command(commands, "verify", common)
    verify.add_argument("--pubkey", help="pin the venue public key (file or hex/base64 text)")
    verify.add_argument(
        "--workers",
        type=_non_negative,
        default=None,
        help="worker processes (default: 1 for a block log under "
        f"{PARALLEL_FROM_BYTES // 1_000_000} MB, where starting a pool costs more than it "
        "gains, else all cores)",
    )
    verify.add_argument(
        "--executor",
        choices=["process", "thread"],
        default="process",
        help="run the checks in worker processes (default) or threads",
    )
    verify.set_defaults(handler=_command_verify)

    show = _add_command(commands, "show", common)
    show.add_argument("height", nargs="?", type=_non_negative, help="one block height")
    show.add_argument("--from", dest="from_height", type=_non_negative, help="first height")
    show.add_argument("--to", dest="to_height", type=_non_negative, help="last height")
    show.set_defaults(handler=_command_show)

    balances = _add_command(commands, "balances", common)
    balances.add_argument("--at", type=_non_negative, help="after this height (default: all)")
    balances.add_argument("--account", help="only this account")
    balances.set_defaults(handler=_command_balances)

    receipt = _add_command(commands, "receipt", common)
    receipt.add_argument("trade_id", metavar="TRADE_ID")
    receipt.set_defaults(handler=_command_receipt)

    check = _add_command(commands, "verify-receipt", common)
    check.add_argument("file", metavar="FILE")
    check.add_argument(
        "--pubkey",
        required=True,
        action="append",
        help="venue public key (file or text); repeat for a rotated key",
    )
    check.set_defaults(handler=_command_verify_receipt)

    consistency = _add_command(commands, "consistency", common)
    consistency.add_argument("old_checkpoint", metavar="OLD_CHECKPOINT")
    consistency.set_defaults(handler=_command_consistency)

    export = _add_command(commands, "export", common)
    export.add_argument("--format", choices=["csv", "jsonl"], required=True)
    export.set_defaults(handler=_command_export)

    report = _add_command(commands, "report", common)
    report.set_defaults(handler=_command_report)

    export_ledger_command = _add_command(commands, "export-ledger", common)
    export_ledger_command.add_argument("directory", metavar="DIR", help="where to write the copy")
    export_ledger_command.set_defaults(handler=_command_export_ledger)

    accept = _add_command(commands, "accept-loss", common)
    accept.add_argument("log_dir", metavar="LOG_DIR", help="the record log directory")
    accept.add_argument(
        "--record",
        type=_non_negative,
        required=True,
        help="the damaged record's number, as the refusal named it",
    )
    accept.set_defaults(handler=_command_accept_loss)
    return parser


# Commands that read no ledger: a receipt is checked offline; accept-loss names its log.
_NO_LEDGER_NEEDED = ("verify-receipt", "accept-loss")


def main(
    argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Console entry point; returns the exit status (0 ok, 1 failed, 2 usage)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    except _ArgumentError as error:
        # The command line did not parse, so --json is looked for in it as given.
        if "--json" in arguments:
            _emit_json(out, {"ok": False, "code": "audit.usage", "problem": str(error)})
        err.write(f"{error.usage}venue-audit: error: {error}\n")
        return 2
    args.data_dir = getattr(args, "data_dir", "./data")
    args.json = getattr(args, "json", False)
    try:
        if args.command not in _NO_LEDGER_NEEDED:
            ledger_directory(args.data_dir)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", IncompleteTailWarning)
            code = args.handler(args, out, err)
        for warning in caught:
            err.write(f"venue-audit: warning: {warning.message}\n")
        return code
    except AuditUsageError as error:
        if args.json:
            _emit_json(out, {"ok": False, "code": "audit.usage", "problem": str(error)})
        err.write(f"venue-audit: {error}\n")
        return 2
    except AuditFailure as error:
        if args.json:
            _emit_json(out, {"ok": False, "code": "audit.failed", "problem": str(error)})
        err.write(f"venue-audit: {error}\n")
        return 1
    except BrokenPipeError:
        return 1
