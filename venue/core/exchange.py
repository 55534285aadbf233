"""The exchange: the venue's deterministic state machine.

Validation -> risk -> matching -> settlement, for one command at a time.

``Exchange.apply(command, ts)`` either raises :class:`VenueError` having changed nothing, or
changes the state and returns an :class:`Outcome`: the caller's result, the ledger blocks the
command settles (fills, deposits, listings, ...) and the events to publish. It does no I/O and
reads no clock: given the same state and the same journaled ``(command, ts)`` it always does the
same thing, which is what makes journal replay exact.

Money rules (see ``venue/domain/pricing.py`` for the arithmetic):

* A sell reserves the units it offers. A buy reserves ``buy_need(leaves_qty)``: the worst-case
  cost (settlement amount at the limit price with the largest accrued interest reachable before
  the next coupon date, plus the largest fee), a whole number of fen per unit, plus two fen per
  unit for the two half-up roundings (amount and fee) each fill can add. Because the need is
  linear in the quantity, after any fill ``need(old) - cost(fill) >= need(new)``, so every open
  order's reservation is always exactly ``need(leaves_qty)`` and settlement can never fail.
* Every fill is one ledger block carrying its DvP and fee deltas; balances here change by the very
  same deltas, so the ledger's balances and the venue's agree block by block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta, timezone
from functools import lru_cache
from typing import Any

import matching
from venue.core.commands import (
    AdmitParticipant,
    CancelAll,
    CancelOrder,
    Command,
    Deposit,
    ExpireDay,
    ListInstrument,
    PlaceOrder,
    ReplaceOrder,
    RollCouponPeriod,
    SetTradingStatus,
    UpdateFactor,
    Withdraw,
)
from venue.core.orders import ORDER_FIELDS, Order
from venue.core.risk import BANK_ACCOUNT, CASH, FEE_ACCOUNT, ISSUER_ACCOUNT, Accounts
from venue.domain import pricing
from venue.domain.instruments import Instrument, Side, TradingStatus
from venue.domain.participants import Participant
from venue.errors import ErrorCode, VenueError

CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")
MAX_ASSET_AMOUNT = 10**15  # fen or units in one deposit/withdrawal: far beyond any real transfer

_SIDES = {"buy": matching.BUY, "sell": matching.SELL}
_TIFS = {"gtc": matching.GTC, "day": matching.DAY, "ioc": matching.IOC, "fok": matching.FOK}
_STP = {
    "cancel_taker": matching.CANCEL_TAKER,
    "cancel_maker": matching.CANCEL_MAKER,
    "cancel_both": matching.CANCEL_BOTH,
}


_NS_PER_DAY = 86_400 * 1_000_000_000
_CST_OFFSET_NS = 8 * 3_600 * 1_000_000_000


def trade_date(ts: int) -> date:
    """The trading (and accrual) date of a nanosecond UTC timestamp: the calendar date in China."""
    return _date_of_day_number((ts + _CST_OFFSET_NS) // _NS_PER_DAY)


@lru_cache(maxsize=64)
def _date_of_day_number(day_number: int) -> date:
    """Days since 1970-01-01 (China Standard Time) -> date; cached: it is asked on every order."""
    return date(1970, 1, 1) + timedelta(days=day_number)


@dataclass(frozen=True)
class LedgerEntry:
    """One block the command settles: ``kind``, payload and balance deltas."""

    kind: str
    payload: dict[str, Any]
    deltas: list[tuple[str, str, int]]


@dataclass
class Outcome:
    """What one applied command produced."""

    seq: int
    result: Any
    journaled: bool = True
    ledger_entries: list[LedgerEntry] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def _fingerprint(command: PlaceOrder) -> str:
    """Identity of an order request's body, for client_order_id idempotency (deterministic)."""
    return (
        f"{command.symbol}|{command.side}|{command.order_type}|{command.price}|{command.qty}|"
        f"{command.time_in_force}|{int(command.post_only)}|{command.self_trade}"
    )


def _require(condition: bool, code: ErrorCode, message: str, **details: Any) -> None:
    if not condition:
        raise VenueError(code, message, **details)


def _check_post_only(book: Any, side: int, price: int) -> None:
    """Refuse a post-only price that would take liquidity (the engine would reject it too, but
    only after the venue had reserved for it: checking first keeps a refusal change-free)."""
    opposite = book.best_ask() if side == matching.BUY else book.best_bid()
    crosses = opposite is not None and (
        price >= opposite if side == matching.BUY else price <= opposite
    )
    _require(
        not crosses,
        ErrorCode.POST_ONLY_WOULD_CROSS,
        "a post-only order would take liquidity",
        price=price,
        opposite=opposite,
    )


class Exchange:
    """All venue state, changed only through :meth:`apply`."""

    def __init__(self, fee_schedule: pricing.FeeSchedule) -> None:
        self.fee_schedule = fee_schedule
        self.seq = 0
        self.instruments: dict[str, Instrument] = {}
        self.books: dict[str, Any] = {}
        self.participants: dict[str, Participant] = {}
        self.owner_numbers: dict[str, int] = {}
        self.credentials: dict[str, tuple[str, str]] = {}  # key_id -> (participant, secret)
        self.orders: dict[int, Order] = {}  # every order ever accepted, by id
        self.open_orders: dict[int, Order] = {}  # the live ones, in id (= time) order
        self.client_orders: dict[tuple[str, str], int] = {}
        self.accounts = Accounts()
        self.next_order_id = 1
        self.next_trade_number = 1
        self.last_trades: dict[str, list[dict[str, Any]]] = {}
        self.last_expiry_ts = 0
        self.emit_events = True  # recovery turns this off: replayed events go to no one
        self._unit_need_cache: dict[tuple, int] = {}

    # ====================================================================== dispatch
    def apply(self, command: Command, ts: int) -> Outcome:
        """Apply one command at time ``ts`` (ns). Raises ``VenueError`` with nothing changed."""
        handler = self._HANDLERS.get(type(command))
        if handler is None:
            raise TypeError(f"not a venue command: {command!r}")
        return handler(self, command, ts)

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    # ====================================================================== lookups
    def _participant(self, participant_id: str) -> Participant:
        participant = self.participants.get(participant_id)
        _require(
            participant is not None,
            ErrorCode.UNKNOWN_PARTICIPANT,
            f"no participant {participant_id!r}",
            participant=participant_id,
        )
        return participant

    def _trader(self, participant_id: str) -> Participant:
        participant = self._participant(participant_id)
        _require(
            participant.can_trade,
            ErrorCode.PARTICIPANT_CANNOT_TRADE,
            f"a {participant.role} does not trade",
            participant=participant_id,
        )
        return participant

    def _instrument(self, symbol: str) -> Instrument:
        instrument = self.instruments.get(symbol)
        _require(
            instrument is not None,
            ErrorCode.UNKNOWN_INSTRUMENT,
            f"no instrument {symbol!r}",
            symbol=symbol,
        )
        return instrument

    def _tradable(self, symbol: str, ts: int) -> Instrument:
        """The instrument, if it is open and the trade date lies in its current coupon period."""
        instrument = self._instrument(symbol)
        instrument.check_open()
        pricing.check_trade_date(instrument, trade_date(ts))
        return instrument

    def _open_order(self, participant_id: str, order_id: int) -> Order:
        order = self.orders.get(order_id) if type(order_id) is int else None
        _require(
            order is not None and order.is_open,
            ErrorCode.UNKNOWN_ORDER,
            f"no open order {order_id!r}",
            order_id=order_id,
        )
        _require(
            order.participant == participant_id,
            ErrorCode.NOT_ORDER_OWNER,
            f"order {order_id} is not yours",
            order_id=order_id,
        )
        return order

    # ====================================================================== money rules
    def buy_need(
        self, instrument: Instrument, participant: Participant, price: int, qty: int, day: date
    ) -> int:
        """Cash (fen) a buy of ``qty`` at limit ``price`` must hold reserved (module docstring).

        ``qty x per-unit need`` (``pricing.buy_reservation_fen``); the per-unit need is cached
        because every buy asks it at least twice, keyed by everything it depends on.
        """
        key = (
            instrument.symbol, instrument.pool_factor, instrument.accrual_start,
            instrument.next_coupon_date, instrument.coupon_rate, price, day, participant.segment,
        )  # fmt: skip
        per_unit = self._unit_need_cache.get(key)
        if per_unit is None:
            if len(self._unit_need_cache) > 100_000:
                self._unit_need_cache.clear()
            per_unit = pricing.buy_reservation_fen(
                instrument, price, 1, pricing.accrued_upper(instrument, day),
                self.fee_schedule, participant.segment,
            )  # fmt: skip
            self._unit_need_cache[key] = per_unit
        return qty * per_unit

    def _need(self, order: Order, day: date) -> int:
        if order.side == "sell":
            return order.leaves_qty
        instrument = self.instruments[order.symbol]
        participant = self.participants[order.participant]
        return self.buy_need(instrument, participant, order.price, order.leaves_qty, day)

    def _reserved_asset(self, order: Order) -> str:
        return CASH if order.side == "buy" else order.symbol

    # ====================================================================== orders
    def _place(self, command: PlaceOrder, ts: int) -> Outcome:
        participant = self._trader(command.participant)
        client_order_id = command.client_order_id
        _require(
            type(client_order_id) is str
            and 0 < len(client_order_id) <= 64
            and client_order_id.isprintable(),
            ErrorCode.BAD_PARAMETER,
            "client_order_id must be 1-64 printable characters",
            field="client_order_id",
        )
        existing_id = self.client_orders.get((participant.participant_id, client_order_id))
        if existing_id is not None:
            existing = self.orders[existing_id]
            _require(
                existing.request_fingerprint == _fingerprint(command),
                ErrorCode.DUPLICATE_CLIENT_ORDER_ID,
                f"client_order_id {client_order_id!r} was used for a different order",
                client_order_id=client_order_id,
                order_id=existing_id,
            )
            return Outcome(self.seq, self.order_report(existing), journaled=False)

        instrument = self._tradable(command.symbol, ts)
        _require(command.side in _SIDES, ErrorCode.BAD_SIDE, "side must be buy or sell")
        _require(
            command.time_in_force in _TIFS,
            ErrorCode.BAD_PARAMETER,
            "time_in_force must be one of gtc, day, ioc, fok",
            field="time_in_force",
        )
        _require(
            command.self_trade in _STP,
            ErrorCode.BAD_PARAMETER,
            "self_trade must be one of cancel_taker, cancel_maker, cancel_both",
            field="self_trade",
        )
        _require(
            type(command.post_only) is bool,
            ErrorCode.BAD_PARAMETER,
            "post_only must be a boolean",
            field="post_only",
        )
        instrument.check_qty(command.qty)
        if command.order_type == "market":
            _require(
                command.price is None,
                ErrorCode.BAD_PARAMETER,
                "a market order has no price",
                field="price",
            )
            _require(
                command.time_in_force in ("ioc", "fok"),
                ErrorCode.BAD_PARAMETER,
                "a market order must be ioc or fok",
                field="time_in_force",
            )
            _require(
                not command.post_only,
                ErrorCode.BAD_PARAMETER,
                "a market order cannot be post-only",
                field="post_only",
            )
            price = instrument.market_limit_ticks(Side(command.side))
        else:
            _require(
                command.order_type == "limit",
                ErrorCode.BAD_PARAMETER,
                "order_type must be limit or market",
                field="order_type",
            )
            _require(
                type(command.price) is int,
                ErrorCode.BAD_PRICE,
                "a limit order needs a price",
                field="price",
            )
            price = instrument.check_in_band(instrument.check_price_ticks(command.price))

        book = self.books[instrument.symbol]
        side = _SIDES[command.side]
        if command.post_only:
            _check_post_only(book, side, price)

        day = trade_date(ts)
        if command.side == "buy":
            asset, need = CASH, self.buy_need(instrument, participant, price, command.qty, day)
        else:
            asset, need = instrument.symbol, command.qty
        self.accounts.check_available(participant.participant_id, asset, need)

        # ---- everything is checked: from here on the state changes ----
        seq = self._next_seq()
        order = Order(
            order_id=self.next_order_id,
            participant=participant.participant_id,
            client_order_id=client_order_id,
            symbol=instrument.symbol,
            side=command.side,
            order_type=command.order_type,
            price=price,
            qty=command.qty,
            time_in_force=command.time_in_force,
            post_only=command.post_only,
            self_trade=command.self_trade,
            created_ts=ts,
            updated_ts=ts,
            request_fingerprint=_fingerprint(command),
            leaves_qty=command.qty,
        )
        self.next_order_id += 1
        self.orders[order.order_id] = order
        self.open_orders[order.order_id] = order
        self.client_orders[(participant.participant_id, client_order_id)] = order.order_id
        self.accounts.reserve(order.order_id, participant.participant_id, asset, need)
        outcome = Outcome(seq, None)
        events = book.submit(
            order.order_id,
            side,
            price,
            command.qty,
            _TIFS[command.time_in_force],
            self.owner_numbers[participant.participant_id],
            command.post_only,
            _STP[command.self_trade],
        )
        self._process_engine_events(events, outcome, ts)
        outcome.result = self.order_report(order)
        return outcome

    def _cancel(self, command: CancelOrder, ts: int) -> Outcome:
        self._participant(command.participant)
        order = self._open_order(command.participant, command.order_id)
        seq = self._next_seq()
        outcome = Outcome(seq, None)
        events = self.books[order.symbol].cancel(order.order_id)
        self._process_engine_events(events, outcome, ts)
        outcome.result = self.order_report(order)
        return outcome

    def _cancel_all(self, command: CancelAll, ts: int) -> Outcome:
        self._participant(command.participant)
        if command.symbol is not None:
            self._instrument(command.symbol)
        targets = [
            order
            for order in self.open_orders.values()
            if order.participant == command.participant
            and (command.symbol is None or order.symbol == command.symbol)
        ]
        if not targets:
            return Outcome(self.seq, {"canceled": []}, journaled=False)
        outcome = Outcome(self._next_seq(), None)
        for order in targets:
            events = self.books[order.symbol].cancel(order.order_id)
            self._process_engine_events(events, outcome, ts)
        outcome.result = {"canceled": [order.order_id for order in targets]}
        return outcome

    def _replace(self, command: ReplaceOrder, ts: int) -> Outcome:
        participant = self._trader(command.participant)
        order = self._open_order(command.participant, command.order_id)
        instrument = self._tradable(order.symbol, ts)
        price = order.price if command.price is None else command.price
        qty = order.leaves_qty if command.qty is None else command.qty
        _require(type(price) is int, ErrorCode.BAD_PRICE, "price must be ticks", field="price")
        _require(type(qty) is int, ErrorCode.BAD_QUANTITY, "qty must be units", field="qty")
        _require(
            price != order.price or qty != order.leaves_qty,
            ErrorCode.NO_CHANGE,
            "replace changes neither price nor quantity",
        )
        if price != order.price:
            instrument.check_in_band(instrument.check_price_ticks(price))
        if qty != order.leaves_qty:
            instrument.check_qty(qty)
        book = self.books[order.symbol]
        keeps_priority = price == order.price and qty <= order.leaves_qty
        if order.post_only and not keeps_priority:
            _check_post_only(book, _SIDES[order.side], price)
        day = trade_date(ts)
        if order.side == "buy":
            new_need = self.buy_need(instrument, participant, price, qty, day)
        else:
            new_need = qty
        increase = new_need - self.accounts.reservation_of(order.order_id)
        if increase > 0:
            self.accounts.check_available(order.participant, self._reserved_asset(order), increase)

        seq = self._next_seq()
        outcome = Outcome(seq, None)
        self.accounts.set_reservation(order.order_id, new_need, check=False)
        events = book.replace(order.order_id, price, qty)
        self._process_engine_events(events, outcome, ts)
        outcome.result = self.order_report(order)
        return outcome

    def _expire_day(self, command: ExpireDay, ts: int) -> Outcome:
        outcome = Outcome(self._next_seq(), None)
        expired: list[int] = []
        for symbol in sorted(self.books):
            events = self.books[symbol].expire_day()
            expired.extend(event[1] for event in events)
            self._process_engine_events(events, outcome, ts)
        self.last_expiry_ts = ts
        outcome.result = {"expired": expired}
        return outcome

    # ====================================================================== engine events
    def _process_engine_events(self, events: list[tuple], outcome: Outcome, ts: int) -> None:
        """Turn engine events into order state, settlement and published reports."""
        touched: dict[int, Order] = {}
        day = trade_date(ts)
        for event in events:
            kind = event[0]
            if kind == matching.FILL:
                _, maker_id, taker_id, price, qty = event
                maker, taker = self.orders[maker_id], self.orders[taker_id]
                self._settle_fill(maker, taker, price, qty, ts, day, outcome)
                touched[maker_id] = maker
                touched[taker_id] = taker
            elif kind == matching.FILLED:
                order = self.orders[event[1]]
                self.accounts.release(order.order_id)
                touched[order.order_id] = order
            elif kind == matching.RESTED:
                order = self.orders[event[1]]
                touched[order.order_id] = order
            elif kind == matching.CANCELLED:
                _, order_id, reason, _qty = event
                order = self.orders[order_id]
                status = "expired" if reason == matching.EXPIRED else "canceled"
                order.close(status, matching.REASON_NAMES[reason], ts)
                self.accounts.release(order_id)
                touched[order_id] = order
            elif kind == matching.REPLACED:
                _, order_id, price, qty, _kept = event
                order = self.orders[order_id]
                order.price = price
                order.qty = order.cum_qty + qty
                order.leaves_qty = qty
                order.updated_ts = ts
                touched[order_id] = order
            else:  # REJECTED: every reason was checked before the state changed
                raise AssertionError(f"engine rejected a pre-checked command: {event!r}")
        for order in touched.values():
            if order.is_open:
                # Release what the fills left over: the reservation is need(leaves_qty).
                self.accounts.set_reservation(order.order_id, self._need(order, day), check=False)
            else:
                self.open_orders.pop(order.order_id, None)
            if self.emit_events:
                outcome.events.append({"type": "order", **self.order_report(order)})
        if self.emit_events and touched:
            symbol = next(iter(touched.values())).symbol if touched else None
            if symbol is not None:
                outcome.events.append({"type": "book", "symbol": symbol})

    def _settle_fill(
        self,
        maker: Order,
        taker: Order,
        price: int,
        qty: int,
        ts: int,
        day: date,
        outcome: Outcome,
    ) -> None:
        """Price one fill, move reservations and balances, and emit its ledger block."""
        instrument = self.instruments[maker.symbol]
        buy_order, sell_order = (maker, taker) if maker.side == "buy" else (taker, maker)
        buyer = self.participants[buy_order.participant]
        seller = self.participants[sell_order.participant]
        fill = pricing.price_fill(
            instrument,
            price,
            qty,
            day,
            maker_segment=self.participants[maker.participant].segment,
            taker_segment=self.participants[taker.participant].segment,
            aggressor_side=taker.side,
            fees=self.fee_schedule,
        )
        buyer_cost = fill.settlement_amount + fill.buyer_fee
        trade_id = f"T{self.next_trade_number:012d}"
        self.next_trade_number += 1
        self.accounts.consume(buy_order.order_id, buyer_cost)
        self.accounts.consume(sell_order.order_id, qty)
        deltas = [
            (buyer.participant_id, CASH, -buyer_cost),
            (seller.participant_id, CASH, fill.settlement_amount - fill.seller_fee),
            (FEE_ACCOUNT, CASH, fill.buyer_fee + fill.seller_fee),
            (buyer.participant_id, instrument.symbol, qty),
            (seller.participant_id, instrument.symbol, -qty),
        ]
        self.accounts.apply_deltas(deltas)
        maker.record_fill(trade_id, price, qty, ts)
        taker.record_fill(trade_id, price, qty, ts)
        self.instruments[instrument.symbol] = instrument.with_reference_price(price)
        payload = {
            "trade_id": trade_id,
            "instrument": instrument.symbol,
            "price": price,
            "qty": qty,
            "accrued": fill.accrued,
            "factor": fill.factor,
            "settlement_amount": fill.settlement_amount,
            "buyer_fee": fill.buyer_fee,
            "seller_fee": fill.seller_fee,
            "maker_order_id": maker.order_id,
            "taker_order_id": taker.order_id,
            "buyer": buyer.participant_id,
            "seller": seller.participant_id,
            "buyer_segment": buyer.segment.value,
            "seller_segment": seller.segment.value,
            "aggressor": taker.side,
            "timestamp_ns": ts,
        }
        outcome.ledger_entries.append(LedgerEntry("fill", payload, deltas))
        trade = {
            "type": "trade",
            "symbol": instrument.symbol,
            "trade_id": trade_id,
            "price": price,
            "qty": qty,
            "aggressor_side": taker.side,
            "ts": ts,
        }
        recent = self.last_trades.setdefault(instrument.symbol, [])
        recent.append(trade)
        del recent[:-100]
        if not self.emit_events:
            return
        outcome.events.append(
            {"type": "fill", **payload, "maker": maker.participant, "taker": taker.participant}
        )
        outcome.events.append(trade)

    # ====================================================================== operator commands
    def _list_instrument(self, command: ListInstrument, ts: int) -> Outcome:
        instrument = Instrument.from_wire(command.instrument)
        _require(
            instrument.symbol not in self.instruments,
            ErrorCode.INSTRUMENT_EXISTS,
            f"{instrument.symbol} is already listed",
            symbol=instrument.symbol,
        )
        outcome = Outcome(self._next_seq(), None)
        self.instruments[instrument.symbol] = instrument
        self.books[instrument.symbol] = matching.OrderBook()
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
        outcome.ledger_entries.append(LedgerEntry("instrument_listed", listed, []))
        outcome.result = wire
        outcome.events.append({"type": "instrument", **wire})
        return outcome

    def _admit(self, command: AdmitParticipant, ts: int) -> Outcome:
        participant = Participant.from_wire(
            {
                "participant_id": command.participant,
                "name": command.name,
                "segment": command.segment,
                "role": command.role,
            }
        )
        _require(
            participant.participant_id not in self.participants,
            ErrorCode.PARTICIPANT_EXISTS,
            f"{participant.participant_id} is already admitted",
            participant=participant.participant_id,
        )
        _require(
            command.key_id not in self.credentials,
            ErrorCode.BAD_PARAMETER,
            "api key id already issued",
            field="key_id",
        )
        outcome = Outcome(self._next_seq(), None)
        self.participants[participant.participant_id] = participant
        self.owner_numbers[participant.participant_id] = len(self.owner_numbers) + 1
        self.credentials[command.key_id] = (participant.participant_id, command.secret)
        wire = participant.to_wire()
        admitted = {
            "participant_id": participant.participant_id,
            "name": participant.name,
            "segment": None if participant.segment is None else participant.segment.value,
            "role": participant.role.value,
        }
        outcome.ledger_entries.append(LedgerEntry("participant_admitted", admitted, []))
        outcome.result = {**wire, "key_id": command.key_id}
        return outcome

    def _check_transfer(self, participant_id: str, asset: str, amount: int) -> None:
        self._participant(participant_id)
        _require(
            asset == CASH or asset in self.instruments,
            ErrorCode.BAD_PARAMETER,
            f"unknown asset {asset!r}",
            field="asset",
        )
        _require(
            type(amount) is int and 0 < amount <= MAX_ASSET_AMOUNT,
            ErrorCode.BAD_AMOUNT,
            "amount must be a positive whole number of fen or units",
            field="amount",
        )

    def _deposit(self, command: Deposit, ts: int) -> Outcome:
        self._check_transfer(command.participant, command.asset, command.amount)
        source = BANK_ACCOUNT if command.asset == CASH else ISSUER_ACCOUNT
        deltas = [
            (source, command.asset, -command.amount),
            (command.participant, command.asset, command.amount),
        ]
        return self._transfer("deposit", command, "source", source, deltas)

    def _withdraw(self, command: Withdraw, ts: int) -> Outcome:
        self._check_transfer(command.participant, command.asset, command.amount)
        self.accounts.check_available(command.participant, command.asset, command.amount)
        sink = BANK_ACCOUNT if command.asset == CASH else ISSUER_ACCOUNT
        deltas = [
            (command.participant, command.asset, -command.amount),
            (sink, command.asset, command.amount),
        ]
        return self._transfer("withdrawal", command, "destination", sink, deltas)

    def _transfer(
        self,
        kind: str,
        command: Deposit | Withdraw,
        counterparty_field: str,
        counterparty: str,
        deltas: list[tuple[str, str, int]],
    ) -> Outcome:
        outcome = Outcome(self._next_seq(), None)
        self.accounts.apply_deltas(deltas)
        payload = {
            "account": command.participant,
            "asset": command.asset,
            "amount": command.amount,
            counterparty_field: counterparty,
        }
        outcome.ledger_entries.append(LedgerEntry(kind, payload, deltas))
        outcome.result = {
            **payload,
            "kind": kind,
            "balance": self.accounts.balance(command.participant, command.asset),
        }
        return outcome

    def _set_status(self, command: SetTradingStatus, ts: int) -> Outcome:
        instrument = self._instrument(command.symbol)
        _require(
            command.status in ("open", "halted"),
            ErrorCode.BAD_PARAMETER,
            "status must be open or halted",
            field="status",
        )
        if instrument.status == command.status:
            return Outcome(self.seq, instrument.to_wire(), journaled=False)
        outcome = Outcome(self._next_seq(), None)
        updated = instrument.with_status(TradingStatus(command.status))
        self.instruments[command.symbol] = updated
        outcome.result = updated.to_wire()
        outcome.ledger_entries.append(
            LedgerEntry(
                "instrument_updated",
                {
                    "symbol": command.symbol,
                    "change": "status",
                    "effective_date": trade_date(ts).isoformat(),
                    "reference": outcome.result,
                },
                [],
            )
        )
        outcome.events.append({"type": "instrument", **outcome.result})
        return outcome

    def _update_factor(self, command: UpdateFactor, ts: int) -> Outcome:
        instrument = self._instrument(command.symbol)
        _require(
            type(command.factor) is int and 0 < command.factor <= 1_000_000,
            ErrorCode.BAD_FACTOR,
            "factor must be in (0, 1] in micro-units",
        )
        outcome = Outcome(self._next_seq(), None)
        updated = instrument.with_factor(command.factor)
        self.instruments[command.symbol] = updated
        outcome.ledger_entries.append(
            LedgerEntry(
                "factor_update",
                {
                    "instrument": command.symbol,
                    "factor": command.factor,
                    "effective_date": trade_date(ts).isoformat(),
                    "reference": {"previous_factor": instrument.pool_factor},
                },
                [],
            )
        )
        self._re_reserve_buys(command.symbol, outcome, ts, "insufficient_cash_after_factor_update")
        outcome.result = updated.to_wire()
        outcome.events.append({"type": "instrument", **outcome.result})
        return outcome

    def _roll_coupon(self, command: RollCouponPeriod, ts: int) -> Outcome:
        """Move an instrument into the coupon period that contains the trade date."""
        instrument = self._instrument(command.symbol)
        day = trade_date(ts)
        _require(
            instrument.next_coupon_date <= day < instrument.maturity_date,
            ErrorCode.COUPON_ROLL_NOT_DUE,
            f"{command.symbol}: no coupon roll is due on {day} (period "
            f"{instrument.accrual_start}..{instrument.next_coupon_date})",
            symbol=command.symbol,
        )
        rolled = instrument
        while rolled.next_coupon_date <= day:
            rolled = rolled.with_next_coupon_period()
        outcome = Outcome(self._next_seq(), None)
        self.instruments[command.symbol] = rolled
        wire = rolled.to_wire()
        outcome.ledger_entries.append(
            LedgerEntry(
                "instrument_updated",
                {
                    "symbol": command.symbol,
                    "change": "coupon_roll",
                    "effective_date": day.isoformat(),
                    "reference": wire,
                },
                [],
            )
        )
        self._re_reserve_buys(command.symbol, outcome, ts, "insufficient_cash_after_coupon_roll")
        outcome.result = wire
        outcome.events.append({"type": "instrument", **wire})
        return outcome

    def _re_reserve_buys(self, symbol: str, outcome: Outcome, ts: int, reason: str) -> None:
        """Reset resting buys' reservations after a change to what they could cost.

        A higher factor or a new coupon period can raise a buy's need; an order whose owner can
        no longer cover it is cancelled with ``reason`` (deterministically, oldest first). If
        the instrument is not tradable on this date (a coupon roll is pending), nothing can fill
        until the roll, which re-reserves then.
        """
        instrument = self.instruments[symbol]
        day = trade_date(ts)
        try:
            pricing.check_trade_date(instrument, day)
        except VenueError:
            return
        book = self.books[symbol]
        for order in list(self.open_orders.values()):
            if not (order.symbol == symbol and order.side == "buy"):
                continue
            need = self._need(order, day)
            increase = need - self.accounts.reservation_of(order.order_id)
            if increase <= self.accounts.available(order.participant, CASH):
                self.accounts.set_reservation(order.order_id, need, check=False)
            else:
                book.cancel(order.order_id)
                order.close("canceled", reason, ts)
                self.accounts.release(order.order_id)
                del self.open_orders[order.order_id]
                outcome.events.append({"type": "order", **self.order_report(order)})

    _HANDLERS = {
        PlaceOrder: _place,
        CancelOrder: _cancel,
        CancelAll: _cancel_all,
        ReplaceOrder: _replace,
        ExpireDay: _expire_day,
        ListInstrument: _list_instrument,
        AdmitParticipant: _admit,
        Deposit: _deposit,
        Withdraw: _withdraw,
        SetTradingStatus: _set_status,
        UpdateFactor: _update_factor,
        RollCouponPeriod: _roll_coupon,
    }

    # ====================================================================== reports
    def order_report(self, order: Order) -> dict[str, Any]:
        """The order's FIX-named state with integer fields (the API edge formats them)."""
        return {
            "order_id": order.order_id,
            "client_order_id": order.client_order_id,
            "participant": order.participant,
            "symbol": order.symbol,
            "side": order.side,
            "order_type": order.order_type,
            "price": order.price,
            "qty": order.qty,
            "time_in_force": order.time_in_force,
            "post_only": order.post_only,
            "self_trade": order.self_trade,
            "ord_status": order.status,
            "cum_qty": order.cum_qty,
            "leaves_qty": order.leaves_qty,
            "notional_ticks": order.notional_ticks,
            "last_px": order.last_px,
            "last_qty": order.last_qty,
            "reason": order.reason,
            "created_ts": order.created_ts,
            "updated_ts": order.updated_ts,
            "reserved": self.accounts.reservation_of(order.order_id),
            "trade_ids": list(order.fills),
        }

    # ====================================================================== integrity
    def validate(self) -> None:
        """Cross-check orders, books and reservations (tests call this after every step)."""
        self.accounts.validate()
        open_orders = {oid: o for oid, o in self.orders.items() if o.is_open}
        assert open_orders == self.open_orders, "the open-order index is out of date"
        assert list(self.open_orders) == sorted(self.open_orders), "open orders out of id order"
        resting = 0
        for book in self.books.values():
            book.validate()
            resting += len(book)
        assert resting == len(open_orders), f"{resting} resting vs {len(open_orders)} open orders"
        for order_id, order in open_orders.items():
            view = self.books[order.symbol].get(order_id)
            assert view is not None, f"open order {order_id} is not in its book"
            assert view[2] == order.leaves_qty and view[1] == order.price, f"order {order_id}"
            assert order.cum_qty + order.leaves_qty == order.qty
            reserved = self.accounts.reservation_of(order_id)
            assert reserved >= 0
        assert set(self.accounts.reservations) == set(open_orders), "reservation without order"

    # ====================================================================== persistence
    def snapshot(self) -> dict[str, Any]:
        """Everything needed to rebuild this exact state (JSON-safe)."""
        return {
            "seq": self.seq,
            "fee_schedule": self.fee_schedule.to_wire(),
            "instruments": [instrument.to_wire() for instrument in self.instruments.values()],
            "books": {symbol: book.snapshot() for symbol, book in self.books.items()},
            "participants": [
                {**participant.to_wire(), "owner": self.owner_numbers[pid]}
                for pid, participant in self.participants.items()
            ],
            "credentials": [[key, pid, secret] for key, (pid, secret) in self.credentials.items()],
            "order_fields": list(ORDER_FIELDS),
            "orders": [order.snapshot() for order in self.orders.values()],
            "accounts": self.accounts.snapshot(),
            "next_order_id": self.next_order_id,
            "next_trade_number": self.next_trade_number,
            "last_trades": {symbol: list(trades) for symbol, trades in self.last_trades.items()},
            "last_expiry_ts": self.last_expiry_ts,
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> Exchange:
        exchange = cls(pricing.FeeSchedule.from_wire(data["fee_schedule"]))
        exchange.seq = data["seq"]
        for wire in data["instruments"]:
            instrument = Instrument.from_wire(wire)
            exchange.instruments[instrument.symbol] = instrument
        for symbol, entries in data["books"].items():
            exchange.books[symbol] = matching.OrderBook.restore([tuple(e) for e in entries])
        for wire in data["participants"]:
            owner = wire.pop("owner")
            participant = Participant.from_wire(wire)
            exchange.participants[participant.participant_id] = participant
            exchange.owner_numbers[participant.participant_id] = owner
        exchange.credentials = {key: (pid, secret) for key, pid, secret in data["credentials"]}
        if data["order_fields"] != list(ORDER_FIELDS):
            raise ValueError("snapshot order rows were written with another field layout")
        for row in data["orders"]:
            order = Order.restore(row)
            exchange.orders[order.order_id] = order
            exchange.client_orders[(order.participant, order.client_order_id)] = order.order_id
            if order.is_open:
                exchange.open_orders[order.order_id] = order
        exchange.accounts = Accounts.restore(data["accounts"])
        exchange.next_order_id = data["next_order_id"]
        exchange.next_trade_number = data["next_trade_number"]
        exchange.last_trades = data["last_trades"]
        exchange.last_expiry_ts = data["last_expiry_ts"]
        return exchange
