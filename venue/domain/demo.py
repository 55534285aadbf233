"""The demo seed: one IP-ABS deal, six participants, funded accounts, a fee schedule. Data only.

The core turns this into ordinary commands on first start (list, admit, deposit), so the demo
goes through exactly the validation and the ledger any operator action does. Everything is in
wire form (decimal strings, ISO dates) -- what an operator would send.

The deal is fictional but modelled on China's first patent-licence IP ABS (Shenzhen, 2019: a
securities-firm plan whose cash flows were licence fees that technology SMEs pay for patents
they license from an originator): three tranches of a 2025 deal, live on 2026-11-26.

================  ==============  ======  =======  =============  ====================  =========
symbol            class (rank)    rating  coupon   day count      period (accrual)      maturity
================  ==============  ======  =======  =============  ====================  =========
IPABS-2025-1-A    senior (1)      AAA     3.60 %   ACT/365F, 4/y  2026-11-15..02-15     2028-08-15
IPABS-2025-1-B    mezzanine (2)   AA      4.80 %   ACT/ACT, 2/y   2026-08-15..02-15     2029-08-15
IPABS-2025-1-C    subordinated    NR      6.00 %   30/360, 2/y    2026-08-15..02-15     2030-08-15
================  ==============  ======  =======  =============  ====================  =========

The senior tranche amortises (pool factor 0.784213); mezzanine and subordinated are still at full
face. Coupon dates are the 15th of Feb/May/Aug/Nov, anchored on each maturity date.

Participants: two market makers and two brokers spread across both segments, a settlement clerk
and an operator (no segment: they never trade). Fees: interbank maker -0.20 bp (rebate) / taker
0.50 bp; exchange maker -0.10 bp / taker 0.30 bp (lowest maker -0.20 + lowest taker 0.30 >= 0).

Public API::

    AS_OF: date                                          # the day the seed was designed live for
    INSTRUMENTS: tuple[dict, ...]                        # Instrument.from_wire input
    PARTICIPANTS: tuple[dict, ...]                       # Participant.from_wire input
    FUNDING: tuple[tuple[str, str, int], ...]            # (participant_id, asset, amount)
                                                         # asset "CNY" -> fen; a symbol -> units
    FEE_SCHEDULE: dict                                   # FeeSchedule.from_wire input
"""

from __future__ import annotations

from datetime import date

AS_OF = date(2026, 11, 26)

_DEAL = "Shenzhen Nanshan Patent Licence Receivables ABS 2025-1 (demo)"
_UNDERLYING = "patent licence receivables from Shenzhen technology SMEs"

INSTRUMENTS: tuple[dict[str, object], ...] = (
    {
        "symbol": "IPABS-2025-1-A",
        "isin": None,  # the demo deal is fictional: no real ISIN
        "deal_name": _DEAL,
        "tranche_class": "senior",
        "seniority_rank": 1,
        "rating": "AAA",
        "underlying": _UNDERLYING,
        "currency": "CNY",
        "face_per_unit": "100.00",
        "pool_factor": "0.784213",
        "coupon_rate": "3.6000",
        "coupon_frequency": 4,
        "day_count": "ACT/365F",
        "accrual_start": "2026-11-15",
        "next_coupon_date": "2027-02-15",
        "maturity_date": "2028-08-15",
        "tick_size": "0.0001",
        "min_qty": "10",
        "qty_increment": "10",
        "price_band_pct": "2.00",
        "reference_price": "100.1250",
        "status": "open",
    },
    {
        "symbol": "IPABS-2025-1-B",
        "isin": None,  # the demo deal is fictional: no real ISIN
        "deal_name": _DEAL,
        "tranche_class": "mezzanine",
        "seniority_rank": 2,
        "rating": "AA",
        "underlying": _UNDERLYING,
        "currency": "CNY",
        "face_per_unit": "100.00",
        "pool_factor": "1.000000",
        "coupon_rate": "4.8000",
        "coupon_frequency": 2,
        "day_count": "ACT/ACT",
        "accrual_start": "2026-08-15",
        "next_coupon_date": "2027-02-15",
        "maturity_date": "2029-08-15",
        "tick_size": "0.0001",
        "min_qty": "10",
        "qty_increment": "10",
        "price_band_pct": "3.00",
        "reference_price": "99.5000",
        "status": "open",
    },
    {
        "symbol": "IPABS-2025-1-C",
        "isin": None,  # the demo deal is fictional: no real ISIN
        "deal_name": _DEAL,
        "tranche_class": "subordinated",
        "seniority_rank": 3,
        "rating": "NR",
        "underlying": _UNDERLYING,
        "currency": "CNY",
        "face_per_unit": "100.00",
        "pool_factor": "1.000000",
        "coupon_rate": "6.0000",
        "coupon_frequency": 2,
        "day_count": "30/360",
        "accrual_start": "2026-08-15",
        "next_coupon_date": "2027-02-15",
        "maturity_date": "2030-08-15",
        "tick_size": "0.005",
        "min_qty": "100",
        "qty_increment": "100",
        "price_band_pct": "5.00",
        "reference_price": "96.000",
        "status": "open",
    },
)

PARTICIPANTS: tuple[dict[str, object], ...] = (
    {
        "participant_id": "P-MM1",
        "name": "Pearl River Securities Market Making",
        "segment": "interbank",
        "role": "market_maker",
    },
    {
        "participant_id": "P-MM2",
        "name": "Qianhai Capital Market Making",
        "segment": "exchange",
        "role": "market_maker",
    },
    {
        "participant_id": "P-BRK1",
        "name": "Bund Commercial Bank Treasury",
        "segment": "interbank",
        "role": "broker",
    },
    {
        "participant_id": "P-BRK2",
        "name": "Lotus Securities Brokerage",
        "segment": "exchange",
        "role": "broker",
    },
    {"participant_id": "P-CLK1", "name": "Settlement Clerk", "segment": None, "role": "clerk"},
    {"participant_id": "P-OPS1", "name": "Venue Operations", "segment": None, "role": "operator"},
)

FUNDING: tuple[tuple[str, str, int], ...] = (
    ("P-MM1", "CNY", 20_000_000_000),  # 200,000,000.00 CNY
    ("P-MM1", "IPABS-2025-1-A", 200_000),
    ("P-MM1", "IPABS-2025-1-B", 100_000),
    ("P-MM2", "CNY", 20_000_000_000),  # 200,000,000.00 CNY
    ("P-MM2", "IPABS-2025-1-A", 150_000),
    ("P-MM2", "IPABS-2025-1-C", 50_000),
    ("P-BRK1", "CNY", 5_000_000_000),  # 50,000,000.00 CNY
    ("P-BRK1", "IPABS-2025-1-B", 20_000),
    ("P-BRK2", "CNY", 3_000_000_000),  # 30,000,000.00 CNY
    ("P-BRK2", "IPABS-2025-1-A", 10_000),
    ("P-BRK2", "IPABS-2025-1-C", 5_000),
)

FEE_SCHEDULE: dict[str, dict[str, str]] = {
    "interbank": {"maker_bps": "-0.20", "taker_bps": "0.50"},
    "exchange": {"maker_bps": "-0.10", "taker_bps": "0.30"},
}
