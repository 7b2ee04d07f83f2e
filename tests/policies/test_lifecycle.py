"""The lifecycle windows: nothing is due a second early, everything is due from its instant on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import lifecycle, retention

instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC))
offsets = st.integers(min_value=-10 * 24 * 3600, max_value=10 * 24 * 3600)


@given(instants, offsets)
def test_a_deletion_is_due_thirty_days_after_the_request_and_not_a_second_before(
    requested: datetime, offset_s: int
) -> None:
    due = lifecycle.deletion_due_at(requested)
    assert due - requested == timedelta(days=30)
    now = due + timedelta(seconds=offset_s)
    assert lifecycle.is_due(due, now) == (offset_s >= 0)
    assert lifecycle.restorable(due, now) == (offset_s < 0)
    assert not lifecycle.is_due(due, due - timedelta(microseconds=1))


@given(instants, offsets)
def test_an_export_link_lives_exactly_24_hours(completed: datetime, offset_s: int) -> None:
    expires = lifecycle.export_expires_at(completed)
    assert expires - completed == timedelta(hours=24)
    assert lifecycle.export_expired(completed, expires + timedelta(seconds=offset_s)) == (offset_s >= 0)


@given(instants)
def test_tenant_data_goes_within_thirty_days_of_termination(terminated: datetime) -> None:
    assert lifecycle.termination_due_at(terminated) - terminated <= timedelta(days=30)


@given(instants, st.sampled_from(["NO", "FR", "fr", "DE", ""]))
def test_activity_records_are_kept_years_after_the_end_of_their_financial_year(
    recorded: datetime, jurisdiction: str
) -> None:
    ends = retention.retention_ends_at(recorded, jurisdiction)
    years = 10 if jurisdiction.upper() == "FR" else 5
    assert ends == datetime(recorded.year + 1 + years, 1, 1, tzinfo=UTC)
    assert not retention.retention_ended(recorded, jurisdiction, ends - timedelta(microseconds=1))
    assert retention.retention_ended(recorded, jurisdiction, ends)


def test_france_keeps_ten_years_and_the_default_is_five() -> None:
    assert retention.retention_years("FR") == 10
    assert retention.retention_years("NO") == 5
    assert retention.retention_years("SE") == 5


@given(instants, st.sampled_from([12, 6, 3]))
def test_a_fiscal_year_holds_its_instants_and_its_retention_starts_at_its_end(
    at: datetime, year_end_month: int
) -> None:
    year = retention.fiscal_year(at, year_end_month)
    end = retention.fiscal_year_end(year, year_end_month)
    assert end - timedelta(days=366) <= at < end  # the instant lies in the year that ends at ``end``
    assert retention.fiscal_year(end - timedelta(microseconds=1), year_end_month) == year
    assert retention.fiscal_year(end, year_end_month) == year + 1
    for code, years in (("NO", 5), ("FR", 10)):
        until = retention.fiscal_year_retained_until(code, year, year_end_month=year_end_month)
        assert until == end.replace(year=end.year + years)
        assert until == retention.retained_until(code, at, year_end_month)  # the record's year, the same rule
        assert not retention.fiscal_year_retention_ended(code, year, until - timedelta(microseconds=1),
                                                         year_end_month=year_end_month)  # fmt: skip
        assert retention.fiscal_year_retention_ended(code, year, until, year_end_month=year_end_month)


def test_billing_needs_the_sellers_rule_activity_falls_back_to_five_years() -> None:
    assert retention.retention_years("DE", retention.Records.ACTIVITY) == 5
    with pytest.raises(ValueError, match="no retention rule"):
        retention.retention_years("DE", retention.Records.BILLING)
    assert retention.is_jurisdiction("NO") and retention.is_jurisdiction("FR")
    assert not any(map(retention.is_jurisdiction, ["no", "XK", "EU", "ZZ", "N", "NOR", ""]))
    assert len(retention.ISO_3166_ALPHA2) == 249
