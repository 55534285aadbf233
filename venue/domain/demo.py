"""The demo seed: one IP-ABS deal with its first year of servicer reports, six participants and
the deal's servicer, funded accounts, a fee schedule. Data, and a seeded (deterministic)
generator of the year's tapes; no I/O.

The core turns this into ordinary commands on first start (list, admit, list the deal, the
year's reports and distributions, deposit), so the demo goes through exactly the validation and
the ledger any operator or servicer action does. Everything is in
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
    # the deal's first year (section at the end of this module)
    SERVICER: dict; DEAL_ID; UNITS_ON_ISSUE; POOL_AT_LISTING; HISTORY_PERIODS; HISTORY_SEED
    listing_instruments() -> tuple[dict, ...]            # INSTRUMENTS a year before AS_OF
    deal_terms(servicer_public_key) -> dict              # ListDeal terms
    @dataclass ReportedPeriod(period, start, end, pool_balance_start, lines)
    servicer_history() -> tuple[ReportedPeriod, ...]     # the generated tapes
    signed_reports(private_key, history) -> tuple[(report, lines), ...]   # PublishPoolReport
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.keys import public_key_bytes
from venue.domain.disclosures import AssetLine, AssetStatus, ReportTotals, build_report, sign_report
from venue.domain.instruments import Instrument, add_months
from venue.domain.waterfall import DealTerms, TrancheTerms, allocate

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


# ====================================================================== the deal's first year
# The tranches above are the deal as it stands on AS_OF. On first start the venue lists them as
# they stood a year earlier (``listing_instruments``), lists the deal over them with its
# servicer, and replays the year: four quarterly servicer reports over a generated tape and four
# payment dates, each through the ordinary ``publish_pool_report`` and ``distribute`` commands.
# The waterfall rolls the coupon periods, so the tranches end the year on AS_OF's coupon periods;
# the senior's factor (0.784213 at listing) is what the year's principal payments leave. The
# tranche units are with the issuer during the year (holders of record ``external:issuer``), and
# the demo participants are funded afterwards, with exactly ``FUNDING``. The distributions run
# on the first start's date (a payment date is its command's trade date), so they carry that
# date, not the quarter dates they stand for.

SERVICER: dict[str, object] = {
    "participant_id": "P-SVC1",
    "name": "Nanshan Licence Servicing",
    "segment": None,
    "role": "servicer",
}
DEAL_ID = "IPABS-2025-1"
UNITS_ON_ISSUE = {"IPABS-2025-1-A": 1_000_000, "IPABS-2025-1-B": 400_000, "IPABS-2025-1-C": 200_000}
SERVICER_FEE_PPM = 5_000  # 50 bp a year of the pool balance
TRUSTEE_FEE_PPM = 500  # 5 bp
POOL_AT_LISTING = 14_500_000_000  # 145,000,000.00 CNY over 138,421,300.00 CNY of notes
HISTORY_START = date(2025, 11, 15)
HISTORY_PERIODS = 4  # quarterly collection periods, ending 15 Feb/May/Aug/Nov 2026
HISTORY_SEED = 20251115  # the tape generator's seed: the same year on every first start
HISTORY_ASSETS = 240
_LICENCE_INCOME_PPM = 80_000  # 8 % a year of the receivable's balance, above its principal


def listing_instruments() -> tuple[dict[str, object], ...]:
    """``INSTRUMENTS`` as listed a year before AS_OF: each coupon period 12 months earlier."""
    listed = []
    for wire in INSTRUMENTS:
        moved = dict(wire)
        for field in ("accrual_start", "next_coupon_date"):
            moved[field] = add_months(date.fromisoformat(str(wire[field])), -12).isoformat()
        listed.append(moved)
    return tuple(listed)


def deal_terms(servicer_public_key: str) -> dict[str, object]:
    """The demo deal's terms (``DealTerms.to_record``) with the servicer's report key."""
    tranches = tuple(
        TrancheTerms.from_instrument(Instrument.from_wire(wire), UNITS_ON_ISSUE[wire["symbol"]])
        for wire in INSTRUMENTS
    )
    terms = DealTerms(DEAL_ID, str(SERVICER["participant_id"]), servicer_public_key,
                      SERVICER_FEE_PPM, TRUSTEE_FEE_PPM, tranches)  # fmt: skip
    return terms.to_record()


@dataclass(frozen=True, slots=True)
class ReportedPeriod:
    """One generated collection period: its dates, opening pool balance and tape."""

    period: int
    start: date
    end: date
    pool_balance_start: int
    lines: tuple[AssetLine, ...]


@dataclass(slots=True)
class _Receivable:
    asset_id: str
    licensee: str
    licence_id: str
    balance: int
    remaining: int  # scheduled quarters left
    status: AssetStatus = AssetStatus.PERFORMING
    days_past_due: int = 0
    unpaid_income: int = 0


def _step(asset: _Receivable, days: int, rng: random.Random) -> tuple[int, int]:
    """One quarter of one receivable: (scheduled, collected) fen; the asset moves on in place.

    Performing: pays its scheduled principal (straight line over the quarters left) and income,
    prepays in full (1.5 %), falls behind (4 %) or is disputed (1 %). Delinquent or disputed:
    cures (pays everything owed), stays behind, or (delinquent, 30 %, or once 180 days past due)
    defaults. Defaulted and prepaid lines stay on the tape and collect nothing.
    """
    if asset.status in (AssetStatus.DEFAULTED, AssetStatus.PREPAID):
        if asset.status is AssetStatus.DEFAULTED:
            asset.days_past_due += days
        return 0, 0
    principal = asset.balance // asset.remaining
    income = (asset.balance * _LICENCE_INCOME_PPM * days + 182_500_000_000) // 365_000_000
    scheduled = principal + income
    draw = rng.random()
    if asset.status is AssetStatus.PERFORMING:
        if draw < 0.015:
            collected = asset.balance + income
            asset.balance, asset.remaining, asset.status = 0, 1, AssetStatus.PREPAID
            return scheduled, collected
        if draw < 0.065:
            asset.status = AssetStatus.DELINQUENT if draw < 0.055 else AssetStatus.DISPUTED
            asset.days_past_due = rng.randint(1, days // 2)
            asset.unpaid_income += income
            return scheduled, 0
    elif draw < (0.35 if asset.status is AssetStatus.DELINQUENT else 0.5):
        asset.status, asset.days_past_due = AssetStatus.PERFORMING, 0  # cured: pays it all
    else:
        asset.days_past_due += days
        if asset.status is AssetStatus.DELINQUENT and (draw > 0.7 or asset.days_past_due >= 180):
            asset.status = AssetStatus.DEFAULTED
        else:
            asset.unpaid_income += income
        return scheduled, 0
    collected = principal + income + asset.unpaid_income
    asset.balance -= principal
    asset.remaining = max(1, asset.remaining - 1)
    asset.unpaid_income = 0
    return scheduled, collected


def servicer_history() -> tuple[ReportedPeriod, ...]:
    """The deal's first year of tapes, generated from ``HISTORY_SEED`` (deterministic).

    ``HISTORY_ASSETS`` licence receivables whose balances add up to ``POOL_AT_LISTING``
    (split by ``allocate``, so exactly), each with 16-40 quarters to run; every quarter each
    moves on by ``_step``. Pure: the same periods on every call.
    """
    rng = random.Random(HISTORY_SEED)
    weights = {index: rng.randint(50, 150) for index in range(HISTORY_ASSETS)}
    balances = allocate(POOL_AT_LISTING, weights)
    assets = [
        _Receivable(
            asset_id=f"LIC-{index:04d}",
            licensee=f"LSE-{rng.getrandbits(32):08x}",
            licence_id=(  # a Chinese patent number: CN + year + 1 + serial + check digit
                f"CN{rng.randint(2015, 2022)}1{rng.randrange(10**7):07d}.{rng.randrange(10)}"
            ),
            balance=balances[index],
            remaining=rng.randint(16, 40),
        )
        for index in range(HISTORY_ASSETS)
    ]
    periods = []
    start, pool = HISTORY_START, POOL_AT_LISTING
    for period in range(1, HISTORY_PERIODS + 1):
        end = add_months(HISTORY_START, 3 * period)
        lines = []
        for asset in assets:
            scheduled, collected = _step(asset, (end - start).days, rng)
            lines.append(
                AssetLine(
                    asset.asset_id,
                    asset.licensee,
                    asset.licence_id,
                    scheduled,
                    collected,
                    asset.balance,
                    asset.days_past_due,
                    asset.status,
                )
            )
        periods.append(ReportedPeriod(period, start, end, pool, tuple(lines)))
        pool = ReportTotals.of(lines).pool_balance
        start = end
    return tuple(periods)


def signed_reports(
    private_key: Ed25519PrivateKey, history: tuple[ReportedPeriod, ...]
) -> tuple[tuple[dict[str, Any], tuple[dict[str, Any], ...]], ...]:
    """Each period's report signed with the servicer's key, with its tape, in wire form: the
    ``report`` and ``lines`` of a ``PublishPoolReport``."""
    public_hex = public_key_bytes(private_key).hex()
    signed = []
    for period in history:
        report = build_report(DEAL_ID, period.period, period.start, period.end,
                              period.pool_balance_start, period.lines, public_hex)  # fmt: skip
        signed.append(
            (
                sign_report(report, private_key).to_record(),
                tuple(line.to_record() for line in period.lines),
            )
        )
    return tuple(signed)
