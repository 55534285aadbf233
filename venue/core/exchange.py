"""The exchange: the venue's deterministic state machine, and the order path through it.

``Exchange.apply(command, ts)`` either raises :class:`VenueError` having changed nothing, or
changes the state and returns an immutable :class:`Outcome`: the caller's result, the ledger
blocks the command settles (fills, deposits, listings, ...) and the events to publish. It does no
I/O and reads no clock: given the same state and the same journaled ``(command, ts)`` it always
does the same thing, which is what makes journal replay exact.

An order goes through the stages, each in its own module:

1. ``order_entry`` -- every check, returning a ticket (price, reservation) or refusing;
2. ``risk`` -- the reservation is taken (``ReservationRule`` says how much);
3. ``matching`` -- the compiled book matches it and returns engine events;
4. ``settlement`` -- each fill is priced into its balance deltas and ledger block;
5. ``reports`` -- the order reports and events the command publishes.

Operator commands live in ``operations``. Money rules: see ``venue/core/risk.py`` (reservations)
and ``venue/domain/pricing.py`` (the arithmetic). Every fill is one ledger block carrying its DvP
and fee deltas; balances here change by the very same deltas, so the ledger's balances and the
venue's agree block by block.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from datetime import date
from typing import Any

import msgspec

import matching
from venue.core import deals, operations, quoting
from venue.core.commands import (
    CancelAll,
    CancelOrder,
    CancelOrders,
    Command,
    ExpireDay,
    PlaceOrder,
    ReplaceOrder,
)
from venue.core.integrity import IntegrityError, check
from venue.core.order_entry import (
    CHINA_STANDARD_TIME,
    SELF_TRADE_MODES,
    SIDES,
    TIMES_IN_FORCE,
    check_client_order_id,
    check_new_order,
    check_replace,
    fingerprint,
    instrument_of,
    open_order_of,
    participant_of,
    trade_date,
    trader_of,
)
from venue.core.orders import ORDER_FIELDS, ROW_ENCODER, Order
from venue.core.reports import (
    book_event,
    fill_event,
    order_event,
    order_report,
    trade_event,
    trade_print,
)
from venue.core.risk import CASH, Accounts, ReservationRule
from venue.core.settlement import settle_fill
from venue.domain import pricing
from venue.domain.instruments import Instrument
from venue.domain.participants import Participant
from venue.errors import ErrorCode, VenueError

__all__ = ["CHINA_STANDARD_TIME", "Exchange", "LedgerEntry", "Outcome", "trade_date"]

RECENT_TRADES = 100  # public prints kept per instrument

# One block a command settles: ``kind``, payload and (account, asset, amount) deltas; ``None``
# deltas for a fill: the ledger derives them from the payload (``ledger.block.fill_deltas``).
LedgerEntry = namedtuple("LedgerEntry", "kind payload deltas")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one applied command produced (immutable once returned)."""

    seq: int
    result: Any
    journaled: bool = True
    ledger_entries: tuple[LedgerEntry, ...] = ()
    events: tuple[tuple, ...] = ()  # see venue/core/reports.py


class Exchange:
    """All venue state, changed only through :meth:`apply`."""

    def __init__(self, fee_schedule: pricing.FeeSchedule) -> None:
        self.fee_schedule = fee_schedule
        self.reservation_rule = ReservationRule(fee_schedule)
        self.seq = 0
        self.instruments: dict[str, Instrument] = {}
        self.books: dict[str, Any] = {}
        self.participants: dict[str, Participant] = {}
        self.owner_numbers: dict[str, int] = {}
        self.credentials: dict[str, tuple[str, str]] = {}  # key_id -> (participant, secret)
        self.orders: dict[int, Order] = {}  # every order ever accepted, by id
        # the orders no order archive holds yet: the open ones and those closed since the last
        # snapshot (see venue/core/snapshots.py)
        self.unarchived: dict[int, Order] = {}
        self.open_orders: dict[int, Order] = {}  # the live ones, in id (= time) order
        self.client_orders: dict[tuple[str, str], int] = {}
        self.accounts = Accounts()
        self.next_order_id = 1
        self.next_trade_number = 1
        self.last_trades: dict[str, list[dict[str, Any]]] = {}
        self.last_expiry_ts = 0
        # market makers (venue/core/quoting.py): each (participant, symbol)'s quote set (order
        # ids), its protection, and the protections the current command triggered
        self.quotes: dict[tuple[str, str], tuple[int, ...]] = {}
        self.mmp: dict[tuple[str, str], quoting.MmpState] = {}
        self.mmp_tripped: list[tuple[str, str]] = []
        self.deals: dict[str, deals.Deal] = {}  # listed deals (venue/core/deals.py)
        self.emit_events = True  # recovery turns this off: replayed events go to no one

    # ====================================================================== dispatch
    def apply(self, command: Command, ts: int) -> Outcome:
        """Apply one command at time ``ts`` (ns). Raises ``VenueError`` with nothing changed."""
        handler = _HANDLERS.get(type(command))
        if handler is None:
            raise TypeError(f"not a venue command: {command!r}")
        return handler(self, command, ts)

    def next_seq(self) -> int:
        """Claim the next sequence number: call once every check has passed."""
        self.seq += 1
        return self.seq

    def outcome(self, seq: int, result: Any, entries: list, events: list) -> Outcome:
        """A journaled command's outcome; ``entries`` are ``(kind, payload, deltas)``."""
        return Outcome(
            seq,
            result,
            True,
            tuple(map(LedgerEntry._make, entries)),
            tuple(events) if self.emit_events else (),
        )

    def unchanged(self, result: Any) -> Outcome:
        """The outcome of a command that changes nothing and is not journaled."""
        return Outcome(self.seq, result, False)

    def add_instrument(self, instrument: Instrument) -> None:
        self.instruments[instrument.symbol] = instrument
        self.books[instrument.symbol] = matching.OrderBook()

    def order_report(self, order: Order) -> dict[str, Any]:
        """The order's FIX-named state with integer fields (the API edge formats them)."""
        return order_report(order, self.accounts.reservation_of(order.order_id))

    def need(self, order: Order, day: date) -> int:
        """What ``order`` must hold reserved for its remaining quantity on ``day``."""
        if order.side == "sell":
            return order.leaves_qty
        return self.reservation_rule.buy_need(
            self.instruments[order.symbol],
            self.participants[order.participant].segment,
            order.price,
            order.leaves_qty,
            day,
        )

    # ====================================================================== orders
    def _place(self, command: PlaceOrder, ts: int) -> Outcome:
        participant = trader_of(self, command.participant)
        client_order_id = command.client_order_id
        check_client_order_id(client_order_id)
        key = (participant.participant_id, client_order_id)
        existing_id = self.client_orders.get(key)
        if existing_id is not None:
            return self._repeated(self.orders[existing_id], command)
        day = trade_date(ts)
        ticket = check_new_order(self, participant, command, day)

        # ---- everything is checked: from here on the state changes ----
        seq = self.next_seq()
        order, engine_events = self.enter_order(
            participant.participant_id, client_order_id, ticket.instrument.symbol, command.side,
            command.order_type, ticket.price, command.qty, command.time_in_force,
            command.post_only, command.self_trade, ticket.fingerprint, ticket.asset,
            ticket.need, ts,
        )  # fmt: skip
        return self._matched(seq, order, engine_events, ts, day)

    def enter_order(
        self, participant_id: str, client_order_id: str, symbol: str, side: str,
        order_type: str, price: int, qty: int, time_in_force: str, post_only: bool,
        self_trade: str, request_fingerprint: str, asset: str, need: int, ts: int,
    ) -> tuple[Order, list]:  # fmt: skip
        """Record a fully checked new order, reserve ``need`` of ``asset`` for it and submit it
        to its book; the order and the engine's events (for :meth:`process_engine_events`)."""
        order_id = self.next_order_id
        self.next_order_id = order_id + 1
        order = Order(
            order_id, participant_id, client_order_id, symbol, side, order_type, price, qty,
            time_in_force, post_only, self_trade, ts, request_fingerprint,
            "new", 0, qty, 0, None, None, None, ts,
        )  # fmt: skip
        self.orders[order_id] = order
        self.open_orders[order_id] = order
        self.unarchived[order_id] = order
        self.client_orders[(participant_id, client_order_id)] = order_id
        self.accounts.reserve(order_id, participant_id, asset, need, checked=True)
        engine_events = self.books[symbol].submit(
            order_id,
            SIDES[side],
            price,
            qty,
            TIMES_IN_FORCE[time_in_force],
            self.owner_numbers[participant_id],
            post_only,
            SELF_TRADE_MODES[self_trade],
        )
        return order, engine_events

    def _repeated(self, existing: Order, command: PlaceOrder) -> Outcome:
        """A retry of a client_order_id: the original order if the body is the same."""
        if existing.request_fingerprint != fingerprint(command):
            raise VenueError(
                ErrorCode.DUPLICATE_CLIENT_ORDER_ID,
                f"client_order_id {command.client_order_id!r} was used for a different order",
                client_order_id=command.client_order_id,
                order_id=existing.order_id,
            )
        return self.unchanged(self.order_report(existing))

    def _cancel(self, command: CancelOrder, ts: int) -> Outcome:
        participant_of(self, command.participant)
        order = open_order_of(self, command.participant, command.order_id)
        seq = self.next_seq()
        engine_events = self.books[order.symbol].cancel(order.order_id)
        return self._matched(seq, order, engine_events, ts, trade_date(ts))

    def _cancel_all(self, command: CancelAll, ts: int) -> Outcome:
        participant_of(self, command.participant)
        if command.symbol is not None:
            instrument_of(self, command.symbol)
        targets = [
            order
            for order in self.open_orders.values()
            if order.participant == command.participant
            and (command.symbol is None or order.symbol == command.symbol)
        ]
        return self._cancel_each(targets, ts, {"canceled": [order.order_id for order in targets]})

    MAX_CANCEL_ORDERS = 10_000  # order ids in one CancelOrders

    def _cancel_orders(self, command: CancelOrders, ts: int) -> Outcome:
        participant_of(self, command.participant)
        order_ids = command.order_ids
        if (
            not isinstance(order_ids, (list, tuple))
            or len(order_ids) > self.MAX_CANCEL_ORDERS
            or any(type(order_id) is not int for order_id in order_ids)
        ):
            raise VenueError(
                ErrorCode.BAD_PARAMETER,
                f"order_ids must be a list of at most {self.MAX_CANCEL_ORDERS} integer order ids",
                field="order_ids",
            )
        targets, skipped = [], []
        for order_id in dict.fromkeys(order_ids):  # each once, in the given order
            order = self.orders.get(order_id)
            if order is not None and order.participant != command.participant:
                raise VenueError(ErrorCode.NOT_ORDER_OWNER, f"order {order_id} is not yours",
                                 order_id=order_id)  # fmt: skip
            if order is None or not order.is_open:
                skipped.append(order_id)
            else:
                targets.append(order)
        result = {"canceled": [order.order_id for order in targets], "skipped": skipped}
        return self._cancel_each(targets, ts, result)

    def _cancel_each(self, targets: list[Order], ts: int, result: dict[str, Any]) -> Outcome:
        """Cancel every one of ``targets`` (checked open orders) in one command; with none,
        the command changes nothing and is not journaled."""
        if not targets:
            return self.unchanged(result)
        seq = self.next_seq()
        settled = _Settled()
        day = trade_date(ts)
        for order in targets:
            self.process_engine_events(self.books[order.symbol].cancel(order.order_id), ts, day,
                                       settled)  # fmt: skip
        return self.outcome(seq, result, settled.entries, settled.events)

    def _replace(self, command: ReplaceOrder, ts: int) -> Outcome:
        day = trade_date(ts)
        ticket = check_replace(self, command, day)
        order = ticket.order
        seq = self.next_seq()
        self.accounts.set_reservation(order.order_id, ticket.need, check=False)
        engine_events = self.books[order.symbol].replace(order.order_id, ticket.price, ticket.qty)
        return self._matched(seq, order, engine_events, ts, day)

    def _expire_day(self, command: ExpireDay, ts: int) -> Outcome:
        seq = self.next_seq()
        settled = _Settled()
        expired: list[int] = []
        day = trade_date(ts)
        for symbol in sorted(self.books):
            engine_events = self.books[symbol].expire_day()
            expired.extend(event[1] for event in engine_events)
            self.process_engine_events(engine_events, ts, day, settled)
        self.last_expiry_ts = ts
        return self.outcome(seq, {"expired": expired}, settled.entries, settled.events)

    def _matched(self, seq: int, order: Order, engine_events: list, ts: int, day: date) -> Outcome:
        """The outcome of a command on one ``order``: its report is the result."""
        settled = _Settled()
        self.process_engine_events(engine_events, ts, day, settled)
        if self.mmp_tripped:
            quoting.pull_tripped(self, ts, day, settled)
        report = settled.reports.get(order.order_id)
        if report is None:
            report = self.order_report(order)
        return self.outcome(seq, report, settled.entries, settled.events)

    # ====================================================================== engine events
    def new_settlement(self) -> _Settled:
        """An empty collector of one command's ledger entries, events and reports."""
        return _Settled()

    def process_engine_events(
        self,
        engine_events: list[tuple],
        ts: int,
        day: date,
        settled: _Settled,
        cancel_reason: str | None = None,
    ) -> None:
        """Turn engine events into order state, settlement and published reports
        (``cancel_reason`` names why cancelled orders were, if not the engine's reason)."""
        touched: dict[int, Order] = {}
        orders = self.orders
        accounts = self.accounts
        for event in engine_events:
            kind = event[0]
            if kind == matching.FILL:
                _, maker_id, taker_id, price, qty = event
                maker, taker = orders[maker_id], orders[taker_id]
                self._settle(maker, taker, price, qty, ts, day, settled)
                touched[maker_id] = maker
                touched[taker_id] = taker
            elif kind == matching.FILLED:
                order = orders[event[1]]
                accounts.release(order.order_id)
                touched[order.order_id] = order
            elif kind == matching.RESTED:
                touched[event[1]] = orders[event[1]]
            elif kind == matching.CANCELLED:
                _, order_id, reason, _qty = event
                order = orders[order_id]
                status = "expired" if reason == matching.EXPIRED else "canceled"
                order.close(status, cancel_reason or matching.REASON_NAMES[reason], ts)
                accounts.release(order_id)
                touched[order_id] = order
            elif kind == matching.REPLACED:
                _, order_id, price, qty, _kept = event
                order = orders[order_id]
                order.price = price
                order.qty = order.cum_qty + qty
                order.leaves_qty = qty
                order.updated_ts = ts
                touched[order_id] = order
            else:  # REJECTED: every reason was checked before the state changed
                raise IntegrityError(f"engine rejected a pre-checked command: {event!r}")
        emit = self.emit_events
        reports = settled.reports
        for order in touched.values():
            if order.is_open:
                # Release what the fills left over: the reservation is need(leaves_qty).
                accounts.set_reservation(order.order_id, self.need(order, day), check=False)
            else:
                self.open_orders.pop(order.order_id, None)
            if emit:
                report = order_report(order, accounts.reservation_of(order.order_id))
                reports[order.order_id] = report
                settled.events.append(order_event(report))
        if emit and touched:
            settled.events.append(book_event(next(iter(touched.values())).symbol))

    def _settle(
        self, maker: Order, taker: Order, price: int, qty: int, ts: int, day: date,
        settled: _Settled,
    ) -> None:  # fmt: skip
        """Settle one fill: reservations and balances move, its block and prints are emitted."""
        symbol = maker.symbol
        instrument = self.instruments[symbol]
        trade_id = f"T{self.next_trade_number:012d}"
        self.next_trade_number += 1
        fill = settle_fill(
            instrument, maker, taker, self.participants[maker.participant],
            self.participants[taker.participant], price, qty, day, ts, trade_id,
            self.fee_schedule,
        )  # fmt: skip
        accounts = self.accounts
        accounts.consume(fill.buy_order.order_id, fill.buyer_cost)
        accounts.consume(fill.sell_order.order_id, qty)
        accounts.apply_deltas(fill.deltas)
        maker.record_fill(trade_id, price, qty, ts)
        taker.record_fill(trade_id, price, qty, ts)
        if self.mmp:
            quoting.note_maker_fill(self, maker, qty, ts)
        if instrument.reference_price != price:  # the last trade is the band's new centre
            self.instruments[symbol] = instrument.with_reference_price(price)
        # No deltas given: the ledger derives a fill's from its payload with the same rule
        # (ledger.block.fill_deltas) that moved the balances here, instead of checking a copy.
        settled.entries.append(("fill", fill.payload, None))
        trade = trade_print(symbol, trade_id, price, qty, taker.side, ts)
        recent = self.last_trades.get(symbol)
        if recent is None:
            recent = self.last_trades[symbol] = []
        recent.append(trade)
        if len(recent) > RECENT_TRADES:
            del recent[:-RECENT_TRADES]
        if self.emit_events:
            settled.events.append(fill_event(fill.payload, maker.participant, taker.participant))
            settled.events.append(trade_event(trade))

    def re_reserve_buys(self, symbol: str, ts: int, reason: str, events: list) -> None:
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
        cancelled = False
        for order in list(self.open_orders.values()):
            if not (order.symbol == symbol and order.side == "buy"):
                continue
            need = self.need(order, day)
            increase = need - self.accounts.reservation_of(order.order_id)
            if increase <= self.accounts.available(order.participant, CASH):
                self.accounts.set_reservation(order.order_id, need, check=False)
            else:
                book.cancel(order.order_id)
                order.close("canceled", reason, ts)
                self.accounts.release(order.order_id)
                del self.open_orders[order.order_id]
                cancelled = True
                if self.emit_events:
                    events.append(order_event(self.order_report(order)))
        if cancelled and self.emit_events:
            events.append(book_event(symbol))

    # ====================================================================== integrity
    def validate(self) -> None:
        """Cross-check orders, books and reservations (tests call this after every step).

        Raises :class:`~venue.core.integrity.IntegrityError` (also under ``python -O``).
        """
        self.accounts.validate()
        open_orders = {oid: o for oid, o in self.orders.items() if o.is_open}
        check(open_orders == self.open_orders, "the open-order index is out of date")
        check(list(self.open_orders) == sorted(self.open_orders), "open orders out of id order")
        resting = 0
        for book in self.books.values():
            book.validate()
            resting += len(book)
        check(resting == len(open_orders), f"{resting} resting vs {len(open_orders)} open orders")
        for order_id, order in open_orders.items():
            view = self.books[order.symbol].get(order_id)
            check(view is not None, f"open order {order_id} is not in its book")
            check(view[2] == order.leaves_qty and view[1] == order.price, f"order {order_id}")
            check(order.cum_qty + order.leaves_qty == order.qty, f"order {order_id} quantities")
            check(self.accounts.reservation_of(order_id) >= 0, f"order {order_id} reservation")
        check(set(self.accounts.reservations) == set(open_orders), "reservation without order")
        for (participant, symbol), order_ids in self.quotes.items():
            for order_id in order_ids:
                order = self.orders.get(order_id)
                owner = None if order is None else (order.participant, order.symbol)
                check(owner == (participant, symbol), f"quote order {order_id} is not its set's")
        check(not self.mmp_tripped, "a triggered protection was not acted on")

    # ====================================================================== persistence
    def snapshot(self) -> dict[str, Any]:
        """Everything needed to rebuild this exact state (JSON-safe), every order included."""
        state = self._state()
        state["orders"] = [order.snapshot() for order in self.orders.values()]
        return state

    def snapshot_parts(self) -> tuple[dict[str, Any], list[Order]]:
        """The live state (for ``msgspec``: the open orders' rows are already-encoded JSON) and
        the orders closed since the last call, which leave :attr:`unarchived`: the caller
        archives them (closed orders never change, so they may be encoded later in another
        thread) or, if it fails to, puts them back with :meth:`unarchive`."""
        closed = [order for order in self.unarchived.values() if not order.is_open]
        for order in closed:
            del self.unarchived[order.order_id]
        state = self._state()
        # The open orders' rows, encoded now (in C, one call): they change as trading goes on.
        state["orders"] = msgspec.Raw(ROW_ENCODER.encode(list(self.open_orders.values())))
        return state, closed

    def unarchive(self, orders: list[Order]) -> None:
        """Orders from :meth:`snapshot_parts` that did not reach an archive."""
        for order in orders:
            self.unarchived[order.order_id] = order

    def _state(self) -> dict[str, Any]:
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
            "accounts": self.accounts.snapshot(),
            "next_order_id": self.next_order_id,
            "next_trade_number": self.next_trade_number,
            "last_trades": {symbol: list(trades) for symbol, trades in self.last_trades.items()},
            "last_expiry_ts": self.last_expiry_ts,
            "quotes": [[pid, symbol, list(ids)] for (pid, symbol), ids in self.quotes.items()],
            "mmp": [[pid, symbol, state.to_wire()] for (pid, symbol), state in self.mmp.items()],
            "deals": deals.snapshot(self.deals),
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
        # Archived orders (all closed) first, then the snapshot's own rows, which no archive
        # holds yet; open orders keep their id (= time) order.
        for row in data.get("archived_orders", ()):
            exchange._restore_order(Order.restore(row))
        for row in data["orders"]:
            order = Order.restore(row)
            exchange._restore_order(order)
            exchange.unarchived[order.order_id] = order
        exchange.accounts = Accounts.restore(data["accounts"])
        exchange.next_order_id = data["next_order_id"]
        exchange.next_trade_number = data["next_trade_number"]
        exchange.last_trades = data["last_trades"]
        exchange.last_expiry_ts = data["last_expiry_ts"]
        # (absent from snapshots written before mass quotes existed)
        exchange.quotes = {(pid, symbol): tuple(ids) for pid, symbol, ids in data.get("quotes", ())}
        exchange.mmp = {
            (pid, symbol): quoting.MmpState.from_wire(wire)
            for pid, symbol, wire in data.get("mmp", ())
        }
        exchange.deals = deals.restore(data.get("deals", []))
        return exchange

    def _restore_order(self, order: Order) -> None:
        self.orders[order.order_id] = order
        self.client_orders[(order.participant, order.client_order_id)] = order.order_id
        if order.is_open:
            self.open_orders[order.order_id] = order


class _Settled:
    """What the engine events of one command settle: ledger entries, events, and the latest
    report of each order touched (so the command's result is not built twice)."""

    __slots__ = ("entries", "events", "reports")

    def __init__(self) -> None:
        self.entries: list[tuple] = []
        self.events: list[tuple] = []
        self.reports: dict[int, dict[str, Any]] = {}


_HANDLERS = {
    PlaceOrder: Exchange._place,
    CancelOrder: Exchange._cancel,
    CancelAll: Exchange._cancel_all,
    CancelOrders: Exchange._cancel_orders,
    ReplaceOrder: Exchange._replace,
    ExpireDay: Exchange._expire_day,
    **operations.HANDLERS,
    **quoting.HANDLERS,
}
