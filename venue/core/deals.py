"""What the venue keeps of each listed deal: its terms, the waterfall's carried state, every
signed pool report with its tape, and every payment date's waterfall.

Held on the exchange as ``exchange.deals`` (deal id -> :class:`Deal`), changed only by the deal
commands in ``venue/core/operations.py``, and saved in snapshots through :func:`snapshot` /
:func:`restore`. The tapes stay here so that any line can be served with its inclusion proof
(``venue.domain.disclosures.line_proof``) against the report on the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.block import DEAL_ACCOUNT_PREFIX
from venue.domain.disclosures import AssetLine, PoolReport
from venue.domain.waterfall import DealState, DealTerms

TRUSTEE_ACCOUNT_PREFIX = "external:trustee:"  # the trustee is paid outside the venue


@dataclass(slots=True)
class Deal:
    """One listed deal. ``reports[i]`` / ``tapes[i]`` are period ``i + 1``'s; ``waterfalls[i]``
    is the record of period ``i + 1``'s distribution (``Waterfall.to_record``)."""

    terms: DealTerms
    state: DealState
    reports: list[PoolReport] = field(default_factory=list)
    tapes: list[tuple[AssetLine, ...]] = field(default_factory=list)
    waterfalls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def collection_account(self) -> str:
        """Where the servicer's collections wait for the payment date: ``venue:deal:<id>``."""
        return DEAL_ACCOUNT_PREFIX + self.terms.deal_id

    @property
    def trustee_account(self) -> str:
        return TRUSTEE_ACCOUNT_PREFIX + self.terms.deal_id

    def to_record(self) -> dict[str, Any]:
        return {
            "terms": self.terms.to_record(),
            "state": self.state.to_record(),
            "reports": [report.to_record() for report in self.reports],
            "tapes": [[line.to_record() for line in tape] for tape in self.tapes],
            "waterfalls": list(self.waterfalls),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Deal:
        return cls(
            DealTerms.from_record(record["terms"]),
            DealState.from_record(record["state"]),
            [PoolReport.from_record(report) for report in record["reports"]],
            [tuple(AssetLine.from_record(line) for line in tape) for tape in record["tapes"]],
            list(record["waterfalls"]),
        )


def deal_of_tranche(deals: dict[str, Deal], symbol: str) -> Deal | None:
    """The deal ``symbol`` is a tranche of, if any (a tranche belongs to one deal at most)."""
    for deal in deals.values():
        if any(tranche.symbol == symbol for tranche in deal.terms.tranches):
            return deal
    return None


def snapshot(deals: dict[str, Deal]) -> list[dict[str, Any]]:
    """The deals in a snapshot's JSON-safe form."""
    return [deal.to_record() for deal in deals.values()]


def restore(records: list[dict[str, Any]]) -> dict[str, Deal]:
    """Inverse of :func:`snapshot` (an older snapshot without deals gives none)."""
    deals = [Deal.from_record(record) for record in records]
    return {deal.terms.deal_id: deal for deal in deals}
