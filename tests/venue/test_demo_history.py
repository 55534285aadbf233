"""The demo deal's first year through ``Venue.open`` on a fresh data directory: the deal is
listed, four generated servicer reports are published and distributed, the tranches end the year
on the demo date's coupon periods, the tapes are the seeded generator's (the same on every first
start), and the history serves the valuation helper."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from decimal import Decimal
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.keys import public_key_bytes
from tests.venue.core.helpers import venue_config
from venue.core.deals import Deal
from venue.domain import demo
from venue.domain.disclosures import build_report, verify_report
from venue.domain.valuation import PoolModel, annualised_default_rate_ppm, value_tranche
from venue.service import Venue

SENIOR = "IPABS-2025-1-A"


def first_start(data_dir: Path) -> tuple[Deal, dict, dict, dict]:
    """Open (and so seed) a venue; its deal, instruments, balances and the servicer's
    credentials, read before it closes."""

    async def run() -> tuple[Deal, dict, dict, dict]:
        venue = await Venue.open(venue_config(data_dir))
        try:
            exchange = venue.exchange
            deal = Deal.from_record(exchange.deals[demo.DEAL_ID].to_record())
            return deal, dict(exchange.instruments), dict(exchange.accounts.balances), {}
        finally:
            await venue.close()

    deal, instruments, balances, _ = asyncio.run(run())
    credentials = json.loads((data_dir / "credentials.json").read_text())["participants"]
    servicer = next(
        c for c in credentials if c["participant_id"] == demo.SERVICER["participant_id"]
    )
    return deal, instruments, balances, servicer


def test_a_new_venue_shows_the_demo_deal_s_year_of_reports_and_payments(tmp_path: Path) -> None:
    deal, instruments, balances, servicer = first_start(tmp_path / "data")
    history = demo.servicer_history()
    assert len(deal.reports) == len(deal.waterfalls) == demo.HISTORY_PERIODS == 4
    assert deal.state.period == 4
    assert [(r.period_start, r.period_end) for r in deal.reports] == [
        (date(2025, 11, 15), date(2026, 2, 15)), (date(2026, 2, 15), date(2026, 5, 15)),
        (date(2026, 5, 15), date(2026, 8, 15)), (date(2026, 8, 15), date(2026, 11, 15)),
    ]  # fmt: skip
    # the servicer's key is in its credentials; each report is signed with it over its tape
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(servicer["report_signing_key"]))
    assert deal.terms.servicer_public_key == public_key_bytes(key).hex()
    for report, tape, period in zip(deal.reports, deal.tapes, history, strict=True):
        verify_report(report, deal.terms.servicer_public_key, tape)
        assert tape == period.lines  # the seeded generator's tape, line for line
    # the year is real history: collections, principal paid, defaults disclosed
    assert all(report.totals.collected > 0 for report in deal.reports)
    assert deal.reports[-1].totals.defaulted_balance > 0
    assert sum(w["principal_paid"] for w in deal.waterfalls) > 0
    # every fen collected was paid out: the collection account is empty, and the servicer, which
    # was given exactly the year's collections to remit, holds exactly its fees
    assert balances.get((deal.collection_account, "CNY"), 0) == 0
    fees = sum(w["servicer_fee"]["paid"] for w in deal.waterfalls)
    assert fees > 0
    assert balances[(demo.SERVICER["participant_id"], "CNY")] == fees
    assert balances[(deal.trustee_account, "CNY")] == sum(
        w["trustee_fee"]["paid"] for w in deal.waterfalls
    )
    # the tranches end the year on the demo date's coupon periods, the senior amortised by the
    # waterfall (its factor derived from its balance), the others at full face
    for wire in demo.INSTRUMENTS:
        instrument = instruments[wire["symbol"]]
        assert instrument.accrual_start.isoformat() == wire["accrual_start"]
        assert instrument.next_coupon_date.isoformat() == wire["next_coupon_date"]
        tranche = deal.terms.tranche(instrument.symbol)
        assert instrument.pool_factor == tranche.factor_of(
            deal.state.tranche(tranche.symbol).balance
        )
    assert instruments[SENIOR].pool_factor < 784_213
    assert instruments["IPABS-2025-1-B"].pool_factor == 1_000_000
    # the demo participants hold exactly their funding (they were funded after the year)
    for participant_id, asset, amount in demo.FUNDING:
        assert balances[(participant_id, asset)] == amount


def test_the_history_is_the_same_on_every_first_start(tmp_path: Path) -> None:
    first, _, _, _ = first_start(tmp_path / "one")
    second, _, _, _ = first_start(tmp_path / "two")
    # a fresh report key each time (so the signatures differ), the same tapes and payments
    assert first.terms.servicer_public_key != second.terms.servicer_public_key
    assert [r.tape_root for r in first.reports] == [r.tape_root for r in second.reports]
    assert first.waterfalls == second.waterfalls
    expected = [
        build_report(demo.DEAL_ID, p.period, p.start, p.end, p.pool_balance_start, p.lines,
                     first.terms.servicer_public_key).tape_root
        for p in demo.servicer_history()
    ]  # fmt: skip
    assert [r.tape_root for r in first.reports] == expected


def test_the_demo_history_prices_the_senior(tmp_path: Path) -> None:
    deal, instruments, _, _ = first_start(tmp_path / "data")
    cdr = annualised_default_rate_ppm(deal.reports)
    assert 0 < cdr < 200_000
    model = PoolModel.from_history(deal.reports, cpr_ppm=50_000, remaining_periods=20)
    assert model.cdr_ppm == cdr
    valuation = value_tranche(
        deal.terms, deal.state, instruments, SENIOR, clean_price=Decimal("100.1250"),
        settlement=demo.AS_OF, model=model, first_period_start=deal.reports[-1].period_end,
    )  # fmt: skip
    assert valuation.principal_lost == 0
    assert (
        sum(flow.principal for flow in valuation.cash_flows) == deal.state.tranche(SENIOR).balance
    )
    # a little over par: a yield a little under the 3.6 % coupon
    assert 30_000 < valuation.yield_rate < 36_000
