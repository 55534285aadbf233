"""The operator's flow through the real server with the SDK: list an instrument, admit a
participant with an Ed25519 key, fund it, let it trade, halt and resume, publish a pool
factor, withdraw; and the clerk reads it all without changing anything."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.api.conftest import run
from venue.client import VenueAPIError

NEW = {
    "symbol": "IPABS-2026-2-A",
    "deal_name": "Suzhou Industrial Park Trademark Licence ABS 2026-2 (test)",
    "tranche_class": "senior",
    "seniority_rank": 1,
    "rating": "AA+",
    "underlying": "trademark licence receivables",
    "coupon_rate": "3.2000",
    "coupon_frequency": 4,
    "day_count": "ACT/360",
    "accrual_start": "2026-11-15",
    "next_coupon_date": "2027-02-15",
    "maturity_date": "2029-11-15",
    "min_qty": "10",
    "qty_increment": "10",
    "price_band_pct": "5.00",
    "reference_price": "100.0000",
}


def test_operator_lists_admits_funds_halts_and_updates_the_factor(server, clients):
    private_key = Ed25519PrivateKey.generate()
    public_hex = private_key.public_key().public_bytes_raw().hex()

    async def flow():
        async with clients("P-OPS1") as operator, clients(None) as public:
            listed = await operator.list_instrument(**NEW)
            with pytest.raises(VenueAPIError) as twice:
                await operator.list_instrument(**NEW)
            admitted = await operator.admit(
                "P-BRK9", "Harbour Trust Brokerage", "broker", "exchange", public_key=public_hex
            )
            cash = await operator.deposit("P-BRK9", "CNY", "2500000.50")
            units = await operator.deposit("P-BRK9", NEW["symbol"], "1000")
            async with clients(
                "P-BRK9", key_id=admitted.key_id, secret=None, private_key=private_key
            ) as newcomer:
                sell = await newcomer.place_order(NEW["symbol"], "sell", "100", price="100.5000")
                halted = await operator.halt(NEW["symbol"])
                with pytest.raises(VenueAPIError) as refused:
                    await newcomer.place_order(NEW["symbol"], "sell", "100", price="100.6000")
                resumed = await operator.resume(NEW["symbol"])
                factor = await operator.update_factor(NEW["symbol"], "0.950000")
                await newcomer.cancel_order(sell.order_id)
                withdrawn = await operator.withdraw("P-BRK9", "CNY", "500000.50")
                with pytest.raises(VenueAPIError) as overdraft:
                    await operator.withdraw("P-BRK9", "CNY", "99999999.00")
                accounts = await newcomer.accounts()
            participants = await operator.participants()
            seen = await public.instrument(NEW["symbol"])
        async with clients("P-CLK1") as clerk:
            audited = await clerk.accounts("P-BRK9")
            with pytest.raises(VenueAPIError) as clerk_deposit:
                await clerk.deposit("P-BRK9", "CNY", "1.00")
        return (listed, twice.value, admitted, cash, units, sell, halted, refused.value, resumed,
                factor, withdrawn, overdraft.value, accounts, participants, seen, audited,
                clerk_deposit.value)  # fmt: skip

    (listed, twice, admitted, cash, units, sell, halted, refused, resumed, factor, withdrawn,
     overdraft, accounts, participants, seen, audited, clerk_deposit) = run(flow())  # fmt: skip
    assert listed.symbol == NEW["symbol"] and listed.status == "open"
    assert (listed.band_lower, listed.band_upper) == ("95.0000", "105.0000")
    assert (twice.status, twice.code) == (409, "state.instrument_exists")
    assert (admitted.key_type, admitted.secret, admitted.segment) == ("ed25519", None, "exchange")
    assert admitted.scopes == ["read", "trade"]
    assert (cash.balance, units.balance) == ("2500000.50", "1000")
    assert sell.ord_status == "new" and sell.participant == "P-BRK9"
    assert halted.status == "halted" and resumed.status == "open"
    assert (refused.status, refused.code) == (409, "state.instrument_halted")
    assert factor.pool_factor == "0.950000"
    assert [point.pool_factor for point in factor.factor_history] == ["1.000000", "0.950000"]
    assert seen.factor_history == factor.factor_history
    assert (withdrawn.kind, withdrawn.balance) == ("withdrawal", "2000000.00")
    assert (overdraft.status, overdraft.code) == (422, "risk.insufficient_cash")
    assert [(b.asset, b.balance, b.reserved) for b in accounts.balances if b.asset != "CNY"][
        -1
    ] == (NEW["symbol"], "1000", "0")
    newcomer = next(p for p in participants if p.participant_id == "P-BRK9")
    assert [key.key_type for key in newcomer.keys] == ["ed25519"]
    assert audited.balances == accounts.balances
    assert (clerk_deposit.status, clerk_deposit.code) == (403, "auth.insufficient_scope")
