"""Risk: accounts, reservations and the rule for how much an order must hold reserved.

Balances are integers per (account, asset): fen for ``"CNY"``, units for a tranche symbol. Each
open order holds one *reservation* of what it could still need -- units for a sell, cash for a
buy (:meth:`ReservationRule.need`) -- and ``available = balance - reserved``. An order is accepted
only if its reservation fits in what is available, fills consume reserved value, and the
reservation is reset to the need of what remains (or released when the order ends). No account
other than an ``external:`` one (the ledger's own rule, ``ledger.block.is_external_account``)
can ever go negative, nor below what it holds reserved.

The buy need: the worst-case cost (settlement amount at the limit price with the largest accrued
interest reachable before the next coupon date, plus the largest fee), a whole number of fen per
unit, plus two fen per unit for the two half-up roundings (amount and fee) each fill can add.
Because the need is linear in the quantity, after any fill ``need(old) - cost(fill) >=
need(new)``, so every open order's reservation is always exactly ``need(leaves_qty)`` and
settlement can never fail.

:class:`Accounts` raises :class:`venue.errors.VenueError` for business refusals (nothing
changed) and :class:`venue.core.integrity.IntegrityError` for broken invariants (bugs).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from ledger.block import CASH_ASSET as CASH
from ledger.block import EXTERNAL_PREFIX, FEE_ACCOUNT, is_external_account
from venue.core.integrity import IntegrityError, check
from venue.domain import pricing
from venue.domain.instruments import Instrument
from venue.domain.participants import Segment
from venue.errors import ErrorCode, VenueError

BANK_ACCOUNT = "external:bank"
ISSUER_ACCOUNT = "external:issuer"
__all__ = [
    "BANK_ACCOUNT",
    "CASH",
    "EXTERNAL_PREFIX",
    "FEE_ACCOUNT",
    "ISSUER_ACCOUNT",
    "Accounts",
    "ReservationRule",
]


class ReservationRule:
    """How much an order must hold reserved (module docstring): units for a sell, the buy need
    in fen for a buy. The per-unit buy need is cached, keyed by everything it depends on,
    because every buy asks for it at least twice (entry and after each fill)."""

    CACHE_LIMIT = 100_000

    def __init__(self, fee_schedule: pricing.FeeSchedule) -> None:
        self.fee_schedule = fee_schedule
        self._per_unit: dict[tuple, int] = {}

    def buy_need(
        self, instrument: Instrument, segment: Segment, price: int, qty: int, day: date
    ) -> int:
        """Fen a buy of ``qty`` at limit ``price`` on trade date ``day`` must hold reserved."""
        key = (
            instrument.symbol, instrument.pool_factor, instrument.accrual_start,
            instrument.next_coupon_date, instrument.coupon_rate, price, day, segment,
        )  # fmt: skip
        per_unit = self._per_unit.get(key)
        if per_unit is None:
            if len(self._per_unit) > self.CACHE_LIMIT:
                self._per_unit.clear()
            per_unit = pricing.buy_reservation_fen(
                instrument, price, 1, pricing.accrued_upper(instrument, day),
                self.fee_schedule, segment,
            )  # fmt: skip
            self._per_unit[key] = per_unit
        return qty * per_unit


Key = tuple[str, str]  # (account, asset)


class Accounts:
    """Balances and per-order reservations of every account."""

    def __init__(self) -> None:
        self.balances: dict[Key, int] = defaultdict(int)
        self.reserved: dict[Key, int] = defaultdict(int)
        # order id -> (account, asset, reserved amount)
        self.reservations: dict[int, tuple[str, str, int]] = {}

    # -- queries ---------------------------------------------------------------------------
    def balance(self, account: str, asset: str) -> int:
        return self.balances.get((account, asset), 0)

    def reserved_amount(self, account: str, asset: str) -> int:
        return self.reserved.get((account, asset), 0)

    def available(self, account: str, asset: str) -> int:
        key = (account, asset)  # (inlined: asked several times per order)
        return self.balances.get(key, 0) - self.reserved.get(key, 0)

    def reservation_of(self, order_id: int) -> int:
        entry = self.reservations.get(order_id)
        return 0 if entry is None else entry[2]

    # -- changes ---------------------------------------------------------------------------
    def check_available(self, account: str, asset: str, amount: int) -> None:
        """Raise ``risk.insufficient_*`` unless ``amount`` more can be reserved or debited."""
        available = self.available(account, asset)
        if amount > available:
            code = ErrorCode.INSUFFICIENT_CASH if asset == CASH else ErrorCode.INSUFFICIENT_UNITS
            raise VenueError(
                code,
                f"{account} needs {amount} {asset} but has {available} available",
                account=account,
                asset=asset,
                needed=amount,
                available=available,
            )

    def reserve(
        self, order_id: int, account: str, asset: str, amount: int, *, checked: bool = False
    ) -> None:
        """Reserve ``amount`` for a new order, or raise (nothing changed). ``checked``: the
        caller has just called :meth:`check_available` for exactly this."""
        if order_id in self.reservations or amount < 0:
            raise IntegrityError(f"order {order_id}: bad new reservation {amount}")
        if not checked:
            self.check_available(account, asset, amount)
        self.reservations[order_id] = (account, asset, amount)
        self.reserved[(account, asset)] += amount

    def set_reservation(self, order_id: int, amount: int, *, check: bool = True) -> None:
        """Change an order's reservation to ``amount`` (an increase must fit when ``check``)."""
        account, asset, current = self.reservations[order_id]
        if amount < 0:
            raise IntegrityError(f"order {order_id}: negative reservation {amount}")
        if check and amount > current:
            self.check_available(account, asset, amount - current)
        self.reservations[order_id] = (account, asset, amount)
        self.reserved[(account, asset)] += amount - current

    def release(self, order_id: int) -> None:
        """Drop an ended order's reservation entirely (idempotent)."""
        entry = self.reservations.pop(order_id, None)
        if entry is not None:
            account, asset, amount = entry
            self.reserved[(account, asset)] -= amount

    def consume(self, order_id: int, amount: int) -> None:
        """A fill used ``amount`` of the order's reservation (the balance moves via deltas)."""
        account, asset, current = self.reservations[order_id]
        if not 0 <= amount <= current:
            raise IntegrityError(
                f"order {order_id} consumed {amount} of a {current} reservation: the reservation "
                "bound is broken"
            )
        self.reservations[order_id] = (account, asset, current - amount)
        self.reserved[(account, asset)] -= amount

    def apply_deltas(self, deltas: list[tuple[str, str, int]]) -> None:
        """Apply balance changes that were already checked (a broken check is a bug)."""
        for account, asset, delta in deltas:
            self.balances[(account, asset)] += delta
        for account, asset, _delta in deltas:
            if not is_external_account(account) and self.available(account, asset) < 0:
                raise IntegrityError(f"{account} {asset} went below its reservations")

    # -- integrity and persistence ---------------------------------------------------------
    def validate(self) -> None:
        """Reserved totals equal the sum of reservations; nothing internal is negative."""
        totals: dict[Key, int] = defaultdict(int)
        for account, asset, amount in self.reservations.values():
            check(amount >= 0, f"negative reservation for {account} {asset}")
            totals[(account, asset)] += amount
        for key in set(totals) | set(self.reserved):
            check(totals.get(key, 0) == self.reserved.get(key, 0), f"reserved total off for {key}")
        for (account, asset), balance in self.balances.items():
            if not is_external_account(account):
                reserved = self.reserved.get((account, asset), 0)
                check(balance >= reserved >= 0, f"{account} {asset}: {balance} < {reserved}")

    def snapshot(self) -> dict:
        return {
            "balances": [[a, s, v] for (a, s), v in self.balances.items() if v],
            "reservations": [[oid, a, s, v] for oid, (a, s, v) in self.reservations.items()],
        }

    @classmethod
    def restore(cls, data: dict) -> Accounts:
        accounts = cls()
        for account, asset, value in data["balances"]:
            accounts.balances[(account, asset)] = value
        for order_id, account, asset, value in data["reservations"]:
            accounts.reservations[order_id] = (account, asset, value)
            accounts.reserved[(account, asset)] += value
        return accounts
