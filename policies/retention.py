"""How long billing records are kept, per the seller's jurisdiction; ``now`` is always an argument.

- Norway: 5 years after the end of the financial year (bokføringsloven § 13 (1) and (2):
  "primærdokumentasjon ... skal oppbevares i fem år etter regnskapsårets slutt").
- France: 10 years (Code de commerce L123-22: "les documents comptables et les pièces
  justificatives sont conservés pendant dix ans"), counted, as is the practice, from the close of
  the financial year the record belongs to.

Both count from the end of the financial year (the calendar year unless set otherwise). Billing
records (amounts, dates, invoice numbers, pseudonymous ids) stay for this period even after the
tenant is deleted; their personal data is sealed and erased with the subject's key.
"""

from __future__ import annotations

from datetime import UTC, datetime

RETENTION_YEARS: dict[str, int] = {"NO": 5, "FR": 10}
SOURCES: dict[str, str] = {
    "NO": "bokføringsloven § 13: five years after the end of the financial year",
    "FR": "Code de commerce L123-22: ten years",
}


def financial_year_end(record_at: datetime, year_end_month: int = 12) -> datetime:
    """The first instant after the financial year of ``record_at`` (a year ending with ``year_end_month``)."""
    at = record_at.astimezone(UTC)
    year = at.year if at.month <= year_end_month else at.year + 1
    if year_end_month == 12:
        return datetime(year + 1, 1, 1, tzinfo=UTC)
    return datetime(year, year_end_month + 1, 1, tzinfo=UTC)


def retained_until(jurisdiction: str, record_at: datetime, year_end_month: int = 12) -> datetime:
    """The instant from which a billing record made at ``record_at`` may be deleted."""
    years = RETENTION_YEARS.get(jurisdiction.upper())
    if years is None:
        raise ValueError(f"no retention rule for {jurisdiction!r}; one of {', '.join(RETENTION_YEARS)}")
    end = financial_year_end(record_at, year_end_month)
    return end.replace(year=end.year + years)


def may_delete(jurisdiction: str, record_at: datetime, now: datetime, year_end_month: int = 12) -> bool:
    """True once the record's retention period is over."""
    return now >= retained_until(jurisdiction, record_at, year_end_month)
