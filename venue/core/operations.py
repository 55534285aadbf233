"""Operator commands: listing, admission, cash and unit transfers, halts, factors, coupon rolls,
and a deal's life: its listing, the servicer's pool reports and the payment dates.

Each handler takes the exchange and one command and returns the command's
:class:`~venue.core.exchange.Outcome`, or raises :class:`venue.errors.VenueError` having changed
nothing. Every change of assets or reference data settles as a ledger block (SPEC section 3).

A deal's life (docs/DEALS.md; the arithmetic is ``venue/domain/waterfall.py``'s):

* ``ListDeal`` states the terms over tranches already listed; from then on a tranche's factor
  comes only from the waterfall (``UpdateFactor`` is refused: ``state.factor_from_waterfall``)
  and the venue never holds more of its units than are on issue.
* ``PublishPoolReport``: the deal's servicer, and only it, publishes the next period's report
  with its tape; the venue checks the servicer's signature with the key the terms state, the
  tape against the report (root, count, totals) and the link to the previous report's pool
  balance, and the period's collections move from the servicer's cash to the deal's collection
  account (``venue:deal:<id>``) in the same block.
* ``Distribute`` runs the waterfall for the reported period on the command's trade date (the
  payment date) and pays everyone out of the collection account in one block.

**Record date and ex-date.** The holders of record are the holders at the distribution
command itself: every account's units of the tranche at that point in the sequence, including
units reserved by resting sell orders (a reservation does not move a balance); units on issue
that are not on the venue are paid to ``external:issuer``, the account they came from. A trade
sequenced before the distribution is *cum*: it settled at the old factor (the buyer paid for the
face that is then repaid to it) and with accrued interest (the buyer paid for the coupon it then
receives); a trade after it is *ex*, at the new factor. For interest, today's coupon-roll rule
is extended: a deal tranche's coupon roll *is* its distribution, so from its coupon date (when
pricing refuses its trades with ``state.coupon_roll_required``) until the payment date's
distribution nobody can trade it, and no trade falls between the record date and the roll.
``RollCouponPeriod`` on a deal tranche therefore changes nothing (the day-boundary housekeeping
issues it for every tranche: it is answered, not journaled).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.block import (
    deposit_deltas,
    distribution_deltas,
    is_external_account,
    pool_report_deltas,
    withdrawal_deltas,
)
from venue.core.commands import (
    AdmitParticipant,
    Deposit,
    Distribute,
    IssueApiKey,
    ListDeal,
    ListInstrument,
    PublishPoolReport,
    RevokeApiKey,
    RollCouponPeriod,
    SetTradingStatus,
    UpdateFactor,
    Withdraw,
)
from venue.core.deals import Deal, deal_of_tranche
from venue.core.integrity import IntegrityError
from venue.core.order_entry import instrument_of, participant_of, trade_date
from venue.core.reports import instrument_event
from venue.core.risk import BANK_ACCOUNT, CASH, ISSUER_ACCOUNT
from venue.domain.disclosures import AssetLine, PoolReport, verify_report
from venue.domain.instruments import Instrument, TradingStatus
from venue.domain.participants import Participant, Role
from venue.domain.waterfall import (
    DealState,
    DealTerms,
    TrancheTerms,
    allocate_to_holders,
    run_waterfall,
)
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
    deal = deal_of_tranche(exchange.deals, command.asset)
    if deal is not None:
        _check_within_issue(exchange, deal.terms.tranche(command.asset), command.amount)
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
    if deal_of_tranche(exchange.deals, command.symbol) is not None:
        raise VenueError(
            ErrorCode.FACTOR_FROM_WATERFALL,
            f"{command.symbol} is a tranche of a listed deal: its factor comes from the waterfall",
            symbol=command.symbol,
        )
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
    deal = deal_of_tranche(exchange.deals, command.symbol)
    if deal is not None:  # the distribution rolls it (module docstring: the ex-date rule)
        return exchange.unchanged(
            {**instrument.to_wire(), "roll_deferred_to": f"distribution of {deal.terms.deal_id}"}
        )
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


# ====================================================================== a deal's life


def _deal_of(exchange: Exchange, deal_id: str) -> Deal:
    deal = exchange.deals.get(deal_id) if isinstance(deal_id, str) else None
    if deal is None:
        raise VenueError(ErrorCode.UNKNOWN_DEAL, f"no deal {deal_id!r} is listed", deal_id=deal_id)
    return deal


def _units_on_venue(exchange: Exchange, symbol: str) -> dict[str, int]:
    """Every account on the venue holding units of ``symbol`` (reserved ones included)."""
    return {
        account: units
        for (account, asset), units in exchange.accounts.balances.items()
        if asset == symbol and units > 0 and not is_external_account(account)
    }


def _check_within_issue(exchange: Exchange, tranche: TrancheTerms, more: int) -> None:
    held = sum(_units_on_venue(exchange, tranche.symbol).values())
    if held + more > tranche.units:
        raise VenueError(
            ErrorCode.UNITS_BEYOND_ISSUE,
            f"the venue would hold {held + more} units of {tranche.symbol}; "
            f"{tranche.units} are on issue",
            symbol=tranche.symbol,
        )


def list_deal(exchange: Exchange, command: ListDeal, ts: int) -> Outcome:
    """State a deal's terms over listed tranches (their rank, face, coupon and day count must be
    the instruments'), with the pool balance at listing."""
    terms = DealTerms.from_record(command.terms)
    if terms.deal_id in exchange.deals:
        raise VenueError(ErrorCode.DEAL_EXISTS, f"{terms.deal_id} is listed", deal_id=terms.deal_id)
    servicer = participant_of(exchange, terms.servicer)
    if servicer.role is not Role.SERVICER:
        raise VenueError(ErrorCode.BAD_DEAL_TERMS, f"{terms.servicer} is not a servicer",
                         field="servicer")  # fmt: skip
    factors = {}
    for tranche in terms.tranches:
        instrument = instrument_of(exchange, tranche.symbol)
        if TrancheTerms.from_instrument(instrument, tranche.units) != tranche:
            raise VenueError(
                ErrorCode.BAD_DEAL_TERMS,
                f"{tranche.symbol}: the terms' rank, face, coupon or day count are not the "
                "instrument's",
                field="tranches",
                symbol=tranche.symbol,
            )
        if deal_of_tranche(exchange.deals, tranche.symbol) is not None:
            raise VenueError(ErrorCode.DEAL_EXISTS, f"{tranche.symbol} is in another deal",
                             symbol=tranche.symbol)  # fmt: skip
        _check_within_issue(exchange, tranche, 0)
        factors[tranche.symbol] = instrument.pool_factor
    if not (type(command.pool_balance) is int and 0 <= command.pool_balance <= MAX_ASSET_AMOUNT):
        raise VenueError(ErrorCode.BAD_AMOUNT, "pool_balance is a whole number of fen",
                         field="pool_balance")  # fmt: skip
    state = DealState.at_listing(terms, factors, command.pool_balance)
    seq = exchange.next_seq()
    deal = Deal(terms, state)
    exchange.deals[terms.deal_id] = deal
    payload = {
        "deal_id": terms.deal_id,
        "terms": terms.to_record(),
        "pool_balance": command.pool_balance,
        "collection_account": deal.collection_account,
    }
    return exchange.outcome(seq, {**payload, "state": state.to_record()},
                            [("deal_listed", payload, [])], [])  # fmt: skip


def publish_pool_report(exchange: Exchange, command: PublishPoolReport, ts: int) -> Outcome:
    """The servicer's next report and tape; the collections go to the collection account."""
    report = PoolReport.from_record(command.report)
    deal = _deal_of(exchange, report.deal_id)
    participant_of(exchange, command.participant)
    if command.participant != deal.terms.servicer:
        raise VenueError(ErrorCode.FORBIDDEN, f"{command.participant} is not the servicer of "
                         f"{report.deal_id}", deal_id=report.deal_id)  # fmt: skip
    lines = tuple(AssetLine.from_record(line) for line in command.lines)
    verify_report(report, deal.terms.servicer_public_key, lines)
    expected = len(deal.reports) + 1
    if report.period != expected or deal.state.period != len(deal.reports):
        raise VenueError(
            ErrorCode.REPORT_OUT_OF_SEQUENCE,
            f"{report.deal_id}: the next report is period {expected}, after period "
            f"{deal.state.period}'s distribution",
            deal_id=report.deal_id,
            period=report.period,
        )
    if report.pool_balance_start != deal.state.pool_balance:
        raise VenueError(
            ErrorCode.BAD_POOL_REPORT,
            f"pool_balance_start {report.pool_balance_start} is not the last reported pool "
            f"balance {deal.state.pool_balance}",
            deal_id=report.deal_id,
        )
    if deal.reports and report.period_start != deal.reports[-1].period_end:
        raise VenueError(ErrorCode.BAD_POOL_REPORT, "the collection period does not start where "
                         "the last one ended", deal_id=report.deal_id)  # fmt: skip
    exchange.accounts.check_available(command.participant, CASH, report.totals.collected)
    payload = {
        **report.to_record(),
        "servicer": command.participant,
        "collection_account": deal.collection_account,
    }
    deltas = pool_report_deltas(payload)
    seq = exchange.next_seq()
    exchange.accounts.apply_deltas(deltas)
    deal.reports.append(report)
    deal.tapes.append(lines)
    return exchange.outcome(seq, payload, [("pool_report", payload, deltas)], [])


def distribute(exchange: Exchange, command: Distribute, ts: int) -> Outcome:
    """The payment date of a reported period (module docstring: record date and ex-date)."""
    deal = _deal_of(exchange, command.deal_id)
    terms = deal.terms
    if command.period != deal.state.period + 1 or len(deal.reports) < command.period:
        raise VenueError(
            ErrorCode.REPORT_OUT_OF_SEQUENCE,
            f"{terms.deal_id}: period {deal.state.period + 1} is next and must be reported first",
            deal_id=terms.deal_id,
            period=command.period,
        )
    report = deal.reports[command.period - 1]
    day = trade_date(ts)
    if day < report.period_end:
        raise VenueError(
            ErrorCode.DISTRIBUTION_NOT_DUE,
            f"period {command.period} collects until {report.period_end}",
            deal_id=terms.deal_id,
        )
    instruments = {t.symbol: exchange.instruments[t.symbol] for t in terms.tranches}
    interest_periods = {
        symbol: (instrument.accrual_start, instrument.next_coupon_date)
        for symbol, instrument in instruments.items()
        if instrument.next_coupon_date <= day
    }
    waterfall = run_waterfall(
        terms, deal.state, period=command.period, collections=report.totals.collected,
        pool_balance_start=report.pool_balance_start, pool_balance_end=report.totals.pool_balance,
        fee_period=(report.period_start, report.period_end), interest_periods=interest_periods,
    )  # fmt: skip
    payments = []
    for tranche, distribution in zip(terms.tranches, waterfall.tranches, strict=True):
        if distribution.factor_before != instruments[tranche.symbol].pool_factor:
            raise IntegrityError(f"{tranche.symbol}: the deal's balance and factor disagree")
        if distribution.factor_after == 0:
            raise VenueError(
                ErrorCode.FULL_REDEMPTION_UNSUPPORTED,
                f"period {command.period} would repay {tranche.symbol} in full",
                symbol=tranche.symbol,
            )
        holdings = _units_on_venue(exchange, tranche.symbol)
        holdings[ISSUER_ACCOUNT] = tranche.units - sum(holdings.values())
        for paid in allocate_to_holders(distribution, holdings, tranche.units):
            if paid.total:
                payments.append(
                    [paid.holder, tranche.symbol, paid.interest, paid.principal, paid.residual]
                )
    payload = {
        "deal_id": terms.deal_id,
        "period": command.period,
        "payment_date": day.isoformat(),
        "collection_account": deal.collection_account,
        "servicer": terms.servicer,
        "trustee_account": deal.trustee_account,
        "servicer_fee": waterfall.servicer_fee.paid,
        "trustee_fee": waterfall.trustee_fee.paid,
        "payments": payments,
        "waterfall": waterfall.to_record(),
        "factors": {d.symbol: d.factor_after for d in waterfall.tranches},
    }
    deltas = distribution_deltas(payload)
    # ---- everything is checked: from here on the state changes ----
    seq = exchange.next_seq()
    exchange.accounts.apply_deltas(deltas)
    deal.state = waterfall.state_after
    deal.waterfalls.append(waterfall.to_record())
    events: list[tuple] = []
    for distribution in waterfall.tranches:
        symbol = distribution.symbol
        instrument = instruments[symbol].with_factor(distribution.factor_after)
        if symbol in interest_periods and instrument.next_coupon_date < instrument.maturity_date:
            instrument = instrument.with_next_coupon_period()
        if instrument == instruments[symbol]:
            continue
        exchange.instruments[symbol] = instrument
        exchange.re_reserve_buys(symbol, ts, "insufficient_cash_after_distribution", events)
        events.append(instrument_event(instrument.to_wire()))
    return exchange.outcome(seq, payload, [("distribution", payload, deltas)], events)


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
    ListDeal: list_deal,
    PublishPoolReport: publish_pool_report,
    Distribute: distribute,
}
