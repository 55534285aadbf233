"""A deal's block kinds: each accepts exactly the deltas its payload implies, and nothing else."""

from __future__ import annotations

import pytest

from ledger.block import (
    Block,
    BlockError,
    distribution_deltas,
    make_deltas,
    pool_report_deltas,
    validate_block,
)
from tests.ledger.test_block import DISTRIBUTION, POOL_REPORT, make_block


def test_a_pool_report_moves_the_collections_from_the_servicer_to_the_collection_account() -> None:
    assert pool_report_deltas(POOL_REPORT) == make_deltas(
        [("P-SRV1", "CNY", -5_000), ("venue:deal:IPABS-2019-1", "CNY", 5_000)]
    )


def test_a_distribution_pays_fees_and_holders_out_of_the_collection_account() -> None:
    assert distribution_deltas(DISTRIBUTION) == make_deltas(
        [
            ("venue:deal:IPABS-2019-1", "CNY", -5_000),
            ("P-SRV1", "CNY", 100),
            ("external:trustee:IPABS-2019-1", "CNY", 10),
            ("P-MM1", "CNY", 4_500),
            ("external:issuer", "CNY", 390),
        ]
    )


@pytest.mark.parametrize("kind", ["pool_report", "distribution"])
def test_other_deltas_are_refused_even_when_they_conserve_cash(kind: str) -> None:
    payload = POOL_REPORT if kind == "pool_report" else DISTRIBUTION
    skimmed = make_deltas([("venue:deal:IPABS-2019-1", "CNY", -5_000), ("P-MM2", "CNY", 5_000)])
    with pytest.raises(BlockError) as caught:
        validate_block(make_block(kind, payload, skimmed))
    assert caught.value.code == "block.bad_deltas"


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("pool_report", {"collection_account": "venue:deal:OTHER"}),
        ("pool_report", {"servicer": "external:bank"}),
        ("pool_report", {"signature": "ef" * 63}),
        ("pool_report", {"totals": {"collected": -1, "pool_balance": 0}}),
        ("distribution", {"payments": [["venue:fees", "IPABS-2019-1-A", 1, 0, 0]]}),
        ("distribution", {"payments": [["P-MM1", "IPABS-2019-1-A", -1, 0, 0]]}),
        ("distribution", {"trustee_account": "P-TRU1"}),
        ("distribution", {"factors": {"IPABS-2019-1-A": 1_000_001}}),
        ("deal_listed", {"collection_account": "venue:fees"}),
    ],
)
def test_a_malformed_deal_payload_is_refused(kind: str, change: dict) -> None:
    base = {
        "pool_report": POOL_REPORT,
        "distribution": DISTRIBUTION,
        "deal_listed": {"deal_id": "IPABS-2019-1", "terms": {}, "pool_balance": 0,
                        "collection_account": "venue:deal:IPABS-2019-1"},
    }[kind]  # fmt: skip
    payload = {**base, **change}
    # the payload's own implied deltas, so that only the schema can refuse it
    implied = {"pool_report": pool_report_deltas, "distribution": distribution_deltas}
    deltas = implied[kind](payload) if kind in implied else ()
    block: Block = make_block(kind, payload, deltas)
    with pytest.raises(BlockError):
        validate_block(block)
