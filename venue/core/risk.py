"""Accounts and reservations: the venue's guarantee that settlement can never fail.

Balances are integers per (account, asset): fen for ``"CNY"``, units for a tranche symbol. Each
open order holds one *reservation* of what it could still need — units for a sell, cash for a
buy (see :func:`venue.core.exchange.buy_need`) — and ``available = balance - reserved``. An order is
accepted only if its reservation fits in what is available, fills consume reserved value, and the
reservation is reset to the need of what remains (or released when the order ends). No account
other than an ``external:`` one can ever go negative.

This module holds state only; the exchange decides what to reserve. It raises
:class:`venue.errors.VenueError` for business refusals (nothing changed) and ``AssertionError``
for broken invariants (bugs).
"""

from __future__ import annotations

from collections import defaultdict

from venue.errors import ErrorCode, VenueError

CASH = "CNY"
FEE_ACCOUNT = "venue:fees"
BANK_ACCOUNT = "external:bank"
ISSUER_ACCOUNT = "external:issuer"
EXTERNAL_PREFIX = "external:"

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
        return self.balance(account, asset) - self.reserved_amount(account, asset)

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

    def reserve(self, order_id: int, account: str, asset: str, amount: int) -> None:
        """Reserve ``amount`` for a new order, or raise (nothing changed)."""
        assert order_id not in self.reservations, f"order {order_id} already holds a reservation"
        assert amount >= 0
        self.check_available(account, asset, amount)
        self.reservations[order_id] = (account, asset, amount)
        self.reserved[(account, asset)] += amount

    def set_reservation(self, order_id: int, amount: int, *, check: bool = True) -> None:
        """Change an order's reservation to ``amount`` (an increase must fit when ``check``)."""
        account, asset, current = self.reservations[order_id]
        assert amount >= 0
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
        assert 0 <= amount <= current, (
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
            assert account.startswith(EXTERNAL_PREFIX) or self.available(account, asset) >= 0, (
                f"{account} {asset} went below its reservations"
            )

    # -- integrity and persistence ---------------------------------------------------------
    def validate(self) -> None:
        """Reserved totals equal the sum of reservations; nothing internal is negative."""
        totals: dict[Key, int] = defaultdict(int)
        for account, asset, amount in self.reservations.values():
            assert amount >= 0, f"negative reservation for {account} {asset}"
            totals[(account, asset)] += amount
        for key in set(totals) | set(self.reserved):
            assert totals.get(key, 0) == self.reserved.get(key, 0), f"reserved total off for {key}"
        for (account, asset), balance in self.balances.items():
            if not account.startswith(EXTERNAL_PREFIX):
                reserved = self.reserved.get((account, asset), 0)
                assert balance >= reserved >= 0, f"{account} {asset}: {balance} < {reserved}"

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
