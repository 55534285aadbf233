"""Operator commands: listing, admission, cash and unit transfers, halts, factors, coupon rolls.

Each handler takes the exchange and one command and returns the command's
:class:`~venue.core.exchange.Outcome`, or raises :class:`venue.errors.VenueError` having changed
nothing. Every change of assets or reference data settles as a ledger block (SPEC section 3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.block import deposit_deltas, withdrawal_deltas
from venue.core.commands import (
    AdmitParticipant,
    Deposit,
    IssueApiKey,
    ListInstrument,
    RevokeApiKey,
    RollCouponPeriod,
    SetTradingStatus,
    UpdateFactor,
    Withdraw,
)
from venue.core.order_entry import instrument_of, participant_of, trade_date
from venue.core.reports import instrument_event
from venue.core.risk import BANK_ACCOUNT, CASH, ISSUER_ACCOUNT
from venue.domain.instruments import Instrument, TradingStatus
from venue.domain.participants import Participant
from venue.errors import ErrorCode, VenueError

if TYPE_CHECKING:
    from venue.core.exchange import Exchange, Outcome

MAX_ASSET_AMOUNT = 10**15  # fen or units in one deposit/withdrawal: far beyond any real transfer


def list_instrument(exchange: Exchange, command: ListInstrument, ts: int) -> Outcome:
    instrument = Instrument.from_wire(command.instrument)
    if instrument.symbol in exchange.instruments:
        raise VenueError(
            ErrorCode.INSTRUMENT_EXISTS,
            f"{instrument.symbol} is already listed",
            symbol=instrument.symbol,
        )
    seq = exchange.next_seq()
    exchange.add_instrument(instrument)
    wire = instrument.to_wire()
    listed = {
        "symbol": instrument.symbol,
        "currency": instrument.currency,
        "face_per_unit": instrument.face_per_unit,
        "tick_size": wire["tick_size"],
        "pool_factor": instrument.pool_factor,
        "min_qty": instrument.min_qty,
        "qty_increment": instrument.qty_increment,
        "reference": wire,
    }
    return exchange.outcome(
        seq, wire, [("instrument_listed", listed, [])], [instrument_event(wire)]
    )


def admit_participant(exchange: Exchange, command: AdmitParticipant, ts: int) -> Outcome:
    participant = Participant.from_wire(
        {
            "participant_id": command.participant,
            "name": command.name,
            "segment": command.segment,
            "role": command.role,
        }
    )
    if participant.participant_id in exchange.participants:
        raise VenueError(
            ErrorCode.PARTICIPANT_EXISTS,
            f"{participant.participant_id} is already admitted",
            participant=participant.participant_id,
        )
    if command.key_id in exchange.credentials:
        raise VenueError(ErrorCode.BAD_PARAMETER, "api key id already issued", field="key_id")
    seq = exchange.next_seq()
    exchange.participants[participant.participant_id] = participant
    exchange.owner_numbers[participant.participant_id] = len(exchange.owner_numbers) + 1
    exchange.credentials[command.key_id] = (participant.participant_id, command.secret)
    admitted = {
        "participant_id": participant.participant_id,
        "name": participant.name,
        "segment": None if participant.segment is None else participant.segment.value,
        "role": participant.role.value,
    }
    result = {**participant.to_wire(), "key_id": command.key_id}
    return exchange.outcome(seq, result, [("participant_admitted", admitted, [])], [])


def issue_api_key(exchange: Exchange, command: IssueApiKey, ts: int) -> Outcome:
    """One more credential for an admitted participant (no ledger block: keys move no assets)."""
    participant_of(exchange, command.participant)
    if command.key_id in exchange.credentials:
        raise VenueError(ErrorCode.BAD_PARAMETER, "api key id already issued", field="key_id")
    seq = exchange.next_seq()
    exchange.credentials[command.key_id] = (command.participant, command.secret)
    return exchange.outcome(
        seq, {"participant_id": command.participant, "key_id": command.key_id}, [], []
    )


def revoke_api_key(exchange: Exchange, command: RevokeApiKey, ts: int) -> Outcome:
    """Forget a credential: requests signed with it are refused from the next command on."""
    entry = exchange.credentials.get(command.key_id)
    if entry is None or entry[0] != command.participant:
        raise VenueError(
            ErrorCode.UNKNOWN_KEY_ID,
            f"{command.participant} has no api key {command.key_id!r}",
            key_id=command.key_id,
        )
    seq = exchange.next_seq()
    del exchange.credentials[command.key_id]
    return exchange.outcome(
        seq, {"participant_id": command.participant, "key_id": command.key_id}, [], []
    )


def _check_transfer(exchange: Exchange, participant_id: str, asset: str, amount: int) -> None:
    participant_of(exchange, participant_id)
    if not (asset == CASH or asset in exchange.instruments):
        raise VenueError(ErrorCode.BAD_PARAMETER, f"unknown asset {asset!r}", field="asset")
    if not (type(amount) is int and 0 < amount <= MAX_ASSET_AMOUNT):
        raise VenueError(
            ErrorCode.BAD_AMOUNT,
            "amount must be a positive whole number of fen or units",
            field="amount",
        )


def deposit(exchange: Exchange, command: Deposit, ts: int) -> Outcome:
    _check_transfer(exchange, command.participant, command.asset, command.amount)
    source = BANK_ACCOUNT if command.asset == CASH else ISSUER_ACCOUNT
    deltas = deposit_deltas(command.participant, command.asset, command.amount, source)
    return _transfer(exchange, "deposit", command, "source", source, deltas)


def withdraw(exchange: Exchange, command: Withdraw, ts: int) -> Outcome:
    _check_transfer(exchange, command.participant, command.asset, command.amount)
    exchange.accounts.check_available(command.participant, command.asset, command.amount)
    sink = BANK_ACCOUNT if command.asset == CASH else ISSUER_ACCOUNT
    deltas = withdrawal_deltas(command.participant, command.asset, command.amount, sink)
    return _transfer(exchange, "withdrawal", command, "destination", sink, deltas)


def _transfer(
    exchange: Exchange,
    kind: str,
    command: Deposit | Withdraw,
    counterparty_field: str,
    counterparty: str,
    deltas: tuple,
) -> Outcome:
    seq = exchange.next_seq()
    exchange.accounts.apply_deltas(deltas)
    payload = {
        "account": command.participant,
        "asset": command.asset,
        "amount": command.amount,
        counterparty_field: counterparty,
    }
    result = {
        **payload,
        "kind": kind,
        "balance": exchange.accounts.balance(command.participant, command.asset),
    }
    return exchange.outcome(seq, result, [(kind, payload, deltas)], [])


def _instrument_updated(symbol: str, change: str, effective: str, wire: dict) -> tuple:
    payload = {"symbol": symbol, "change": change, "effective_date": effective, "reference": wire}
    return ("instrument_updated", payload, [])


def set_trading_status(exchange: Exchange, command: SetTradingStatus, ts: int) -> Outcome:
    instrument = instrument_of(exchange, command.symbol)
    if command.status not in ("open", "halted"):
        raise VenueError(ErrorCode.BAD_PARAMETER, "status must be open or halted", field="status")
    if instrument.status == command.status:
        return exchange.unchanged(instrument.to_wire())
    seq = exchange.next_seq()
    updated = instrument.with_status(TradingStatus(command.status))
    exchange.instruments[command.symbol] = updated
    wire = updated.to_wire()
    entry = _instrument_updated(command.symbol, "status", trade_date(ts).isoformat(), wire)
    return exchange.outcome(seq, wire, [entry], [instrument_event(wire)])


def update_factor(exchange: Exchange, command: UpdateFactor, ts: int) -> Outcome:
    instrument = instrument_of(exchange, command.symbol)
    if not (type(command.factor) is int and 0 < command.factor <= 1_000_000):
        raise VenueError(ErrorCode.BAD_FACTOR, "factor must be in (0, 1] in micro-units")
    seq = exchange.next_seq()
    updated = instrument.with_factor(command.factor)
    exchange.instruments[command.symbol] = updated
    entry = (
        "factor_update",
        {
            "instrument": command.symbol,
            "factor": command.factor,
            "effective_date": trade_date(ts).isoformat(),
            "reference": {"previous_factor": instrument.pool_factor},
        },
        [],
    )
    events: list[tuple] = []
    exchange.re_reserve_buys(command.symbol, ts, "insufficient_cash_after_factor_update", events)
    wire = updated.to_wire()
    events.append(instrument_event(wire))
    return exchange.outcome(seq, wire, [entry], events)


def roll_coupon_period(exchange: Exchange, command: RollCouponPeriod, ts: int) -> Outcome:
    """Move an instrument into the coupon period that contains the trade date."""
    instrument = instrument_of(exchange, command.symbol)
    day = trade_date(ts)
    if not instrument.next_coupon_date <= day < instrument.maturity_date:
        raise VenueError(
            ErrorCode.COUPON_ROLL_NOT_DUE,
            f"{command.symbol}: no coupon roll is due on {day} (period "
            f"{instrument.accrual_start}..{instrument.next_coupon_date})",
            symbol=command.symbol,
        )
    rolled = instrument
    while rolled.next_coupon_date <= day:
        rolled = rolled.with_next_coupon_period()
    seq = exchange.next_seq()
    exchange.instruments[command.symbol] = rolled
    wire = rolled.to_wire()
    entry = _instrument_updated(command.symbol, "coupon_roll", day.isoformat(), wire)
    events: list[tuple] = []
    exchange.re_reserve_buys(command.symbol, ts, "insufficient_cash_after_coupon_roll", events)
    events.append(instrument_event(wire))
    return exchange.outcome(seq, wire, [entry], events)


HANDLERS = {
    ListInstrument: list_instrument,
    AdmitParticipant: admit_participant,
    IssueApiKey: issue_api_key,
    RevokeApiKey: revoke_api_key,
    Deposit: deposit,
    Withdraw: withdraw,
    SetTradingStatus: set_trading_status,
    UpdateFactor: update_factor,
    RollCouponPeriod: roll_coupon_period,
}
