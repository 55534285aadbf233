"""Shared builders for the core tests: a demo-seeded Exchange driven at fixed timestamps."""

from __future__ import annotations

from datetime import datetime

import matching
from venue.config import Config
from venue.core.commands import AdmitParticipant, Command, Deposit, ListInstrument
from venue.core.exchange import CHINA_STANDARD_TIME, Exchange, Outcome
from venue.domain import demo
from venue.domain.pricing import FeeSchedule

SENIOR = "IPABS-2025-1-A"
MEZZ = "IPABS-2025-1-B"
SUB = "IPABS-2025-1-C"


def ts_at(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> int:
    """A nanosecond timestamp at the given China Standard Time wall-clock moment."""
    moment = datetime(year, month, day, hour, minute, tzinfo=CHINA_STANDARD_TIME)
    return int(moment.timestamp()) * 1_000_000_000


TRADE_DAY = ts_at(2026, 11, 26)


def demo_setup_commands() -> list[Command]:
    """The commands `venue serve` issues on first start (with fixed credentials)."""
    commands: list[Command] = [ListInstrument(dict(wire)) for wire in demo.INSTRUMENTS]
    for number, participant in enumerate(demo.PARTICIPANTS):
        commands.append(
            AdmitParticipant(
                participant["participant_id"],
                participant["name"],
                participant["segment"],
                participant["role"],
                f"key-{number}",
                f"secret-{number}",
            )
        )
    commands += [Deposit(pid, asset, amount) for pid, asset, amount in demo.FUNDING]
    return commands


class Driver:
    """An Exchange plus a clock that ticks one microsecond per command."""

    def __init__(self, start_ts: int = TRADE_DAY) -> None:
        self.exchange = Exchange(FeeSchedule.from_wire(demo.FEE_SCHEDULE))
        self.ts = start_ts
        self.ledger_entries = []
        for command in demo_setup_commands():
            self.apply(command)

    def apply(self, command: Command) -> Outcome:
        self.ts += 1_000
        outcome = self.exchange.apply(command, self.ts)
        self.ledger_entries.extend(outcome.ledger_entries)
        self.exchange.validate()
        return outcome

    def result(self, command: Command):
        return self.apply(command).result


def venue_config(data_dir, **settings) -> Config:
    """A ``Config`` for a test's own ``Venue``: on a build without the compiled engine (CI's
    second run) it allows the reference engine, which the venue otherwise refuses; everything
    else as given."""
    settings.setdefault("allow_reference_engine", matching.IMPLEMENTATION == "py")
    return Config(data_dir=data_dir, **settings)
