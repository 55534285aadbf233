"""Arbitrary JSON in any field is refused with a VenueError, never with another exception.

This is the domain's half of "never a 500 for bad input": the API layer maps VenueError to a
problem document, so anything else escaping from here would be a server error.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.venue.domain.helpers import instrument_wire
from venue.domain import demo
from venue.domain.instruments import Instrument, parse_side
from venue.domain.money import parse_cny, parse_iso_date, parse_quantity
from venue.domain.participants import Participant, parse_scopes
from venue.domain.pricing import FeeSchedule
from venue.errors import VenueError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)
# Text that looks almost right is where parsers break: digits, signs, dots, dashes, exponents.
NEAR_MISS = st.text(alphabet="0123456789.-+eE :T/_ ", max_size=24)


def accepted_or_refused(call, *args) -> None:
    """Either outcome is fine; any exception other than VenueError fails the test."""
    with contextlib.suppress(VenueError):
        call(*args)


@settings(max_examples=200, deadline=None)
@given(
    field=st.sampled_from(
        [*sorted(instrument_wire()), "isin", "tick_size", "status", "pool_factor", "face_per_unit"]
    ),
    value=JSON | NEAR_MISS,
)
def test_instrument_listing_never_crashes(field: str, value: object) -> None:
    accepted_or_refused(Instrument.from_wire, {**instrument_wire(), field: value})


@settings(max_examples=200, deadline=None)
@given(value=JSON)
def test_whole_instrument_documents_never_crash(value: object) -> None:
    accepted_or_refused(Instrument.from_wire, value)


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(["participant_id", "name", "role", "segment"]), value=JSON)
def test_participant_admission_never_crashes(field: str, value: object) -> None:
    accepted_or_refused(Participant.from_wire, {**demo.PARTICIPANTS[0], field: value})


@settings(max_examples=200, deadline=None)
@given(
    segment=st.sampled_from(["interbank", "exchange"]),
    field=st.sampled_from(["maker_bps", "taker_bps"]),
    value=JSON | NEAR_MISS,
)
def test_fee_schedules_never_crash(segment: str, field: str, value: object) -> None:
    wire = {name: dict(rates) for name, rates in demo.FEE_SCHEDULE.items()}
    wire[segment][field] = value
    accepted_or_refused(FeeSchedule.from_wire, wire)


@settings(max_examples=150, deadline=None)
@given(value=JSON | NEAR_MISS)
def test_edge_parsers_never_crash(value: object) -> None:
    instrument = Instrument.from_wire(demo.INSTRUMENTS[0])
    for parse in (parse_cny, parse_quantity, instrument.parse_price, parse_side):
        accepted_or_refused(parse, value)
    accepted_or_refused(lambda v: parse_iso_date(v, field="date"), value)
    accepted_or_refused(parse_scopes, value if isinstance(value, list) else [value])


def test_non_string_keys_are_refused_too() -> None:
    with pytest.raises(VenueError):
        Instrument.from_wire({**instrument_wire(), 1: "x"})
    with pytest.raises(VenueError):
        Participant.from_wire({**demo.PARTICIPANTS[0], None: "x"})
