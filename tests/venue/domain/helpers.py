"""Shared builders for the domain tests: a plain, valid instrument wire form to vary."""

from __future__ import annotations

from venue.domain.instruments import Instrument


def instrument_wire(**overrides: object) -> dict[str, object]:
    """A valid senior-tranche listing; keyword arguments replace (or, if None, drop) fields."""
    wire: dict[str, object] = {
        "symbol": "IPABS-2019-1-A",
        "deal_name": "Test Patent Licence ABS 2019-1",
        "tranche_class": "senior",
        "seniority_rank": 1,
        "rating": "AAA",
        "underlying": "patent licence receivables",
        "coupon_rate": "5.0000",
        "coupon_frequency": 2,
        "day_count": "ACT/365F",
        "accrual_start": "2026-08-15",
        "next_coupon_date": "2027-02-15",
        "maturity_date": "2029-08-15",
        "min_qty": "10",
        "qty_increment": "10",
        "price_band_pct": "2.00",
        "reference_price": "100.0000",
    }
    for key, value in overrides.items():
        if value is None:
            wire.pop(key, None)
        else:
            wire[key] = value
    return wire


def make_instrument(**overrides: object) -> Instrument:
    return Instrument.from_wire(instrument_wire(**overrides))
