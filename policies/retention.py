"""How long records are kept, per jurisdiction: ONE table for billing and activity records; ``now`` is an argument.

The law (confirm with counsel):

- Norway: 5 years after the end of the financial year (bokføringsloven § 13 (1) and (2):
  "primærdokumentasjon ... skal oppbevares i fem år etter regnskapsårets slutt").
- France: 10 years (Code de commerce L123-22: "les documents comptables et les pièces
  justificatives sont conservés pendant dix ans"), counted, as is the practice, from the close of
  the financial year the record belongs to.
- Elsewhere: 5 years, our default (the issue's "billing and activity logs kept at least 5 years").
- GDPR Art. 17(3)(b): retention required by law survives erasure; once it ends, so does the reason
  to keep the record, and it is erased (Art. 5(1)(e), storage limitation).

Whose jurisdiction applies:

- BILLING records (invoices, payments, the billed party's contact): the SELLER's, i.e. the
  operator's, since the accounting duty is the operator's (``OWNLLM_SELLER_JURISDICTION``). The
  seller must have a rule in the table: an unknown seller jurisdiction is refused, never guessed.
- ACTIVITY records (audit events, usage counts): the TENANT's (set by its admin; the operator's
  ``OWNLLM_DEFAULT_JURISDICTION`` until then); a jurisdiction without a rule keeps the default.

Both count from the end of the financial year (the calendar year unless ``year_end_month`` says
otherwise). A fiscal year is named by the calendar year it ends in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

DEFAULT_RETENTION_YEARS = 5  # bokføringsloven § 13, and our default everywhere without a rule
RETENTION_YEARS: dict[str, int] = {"NO": 5, "FR": 10}
SOURCES: dict[str, str] = {
    "NO": "bokføringsloven § 13: five years after the end of the financial year",
    "FR": "Code de commerce L123-22: ten years",
}

# ISO 3166-1 alpha-2, the 249 officially assigned codes (no user-assigned or reserved ones such as XK or EU).
ISO_3166_ALPHA2 = frozenset({
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA", "BB", "BD",
    "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA",
    "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE",
    "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA",
    "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK",
    "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP",
    "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT",
    "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS",
    "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ",
    "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS",
    "RU", "RW", "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST",
    "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW",
    "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI", "VN", "VU", "WF", "WS", "YE", "YT", "ZA",
    "ZM", "ZW",
})  # fmt: skip


class Records(StrEnum):
    """Which kind of record, hence whose jurisdiction (see the module docstring)."""

    BILLING = "billing"  # the seller's jurisdiction
    ACTIVITY = "activity"  # the tenant's jurisdiction


def is_jurisdiction(code: str) -> bool:
    """An officially assigned ISO 3166-1 alpha-2 code, upper case (Norway is NO, France FR)."""
    return code in ISO_3166_ALPHA2


def retention_years(jurisdiction: str, records: Records = Records.ACTIVITY) -> int:
    """Years records are kept in ``jurisdiction``; billing refuses a jurisdiction without a rule."""
    code = jurisdiction.strip().upper()
    if code in RETENTION_YEARS:
        return RETENTION_YEARS[code]
    if records == Records.BILLING:
        raise ValueError(f"no retention rule for {jurisdiction!r}; one of {', '.join(RETENTION_YEARS)}")
    return DEFAULT_RETENTION_YEARS


def financial_year_end(record_at: datetime, year_end_month: int = 12) -> datetime:
    """The first instant after the financial year of ``record_at`` (a year ending with ``year_end_month``)."""
    at = record_at.astimezone(UTC)
    year = at.year if at.month <= year_end_month else at.year + 1
    return fiscal_year_end(year, year_end_month)


def fiscal_year(record_at: datetime, year_end_month: int = 12) -> int:
    """The fiscal year ``record_at`` belongs to, named by the calendar year it ends in."""
    return (financial_year_end(record_at, year_end_month) - timedelta(microseconds=1)).year


def fiscal_year_end(year: int, year_end_month: int = 12) -> datetime:
    """The first instant after fiscal year ``year``."""
    if year_end_month == 12:
        return datetime(year + 1, 1, 1, tzinfo=UTC)
    return datetime(year, year_end_month + 1, 1, tzinfo=UTC)


def fiscal_year_retained_until(
    jurisdiction: str, year: int, records: Records = Records.BILLING, year_end_month: int = 12
) -> datetime:
    """The instant from which the records of fiscal year ``year`` may be deleted."""
    end = fiscal_year_end(year, year_end_month)
    return end.replace(year=end.year + retention_years(jurisdiction, records))


def fiscal_year_retention_ended(
    jurisdiction: str, year: int, now: datetime, records: Records = Records.BILLING, year_end_month: int = 12
) -> bool:
    """The retention of fiscal year ``year`` is over at ``now`` (never a second early)."""
    return now >= fiscal_year_retained_until(jurisdiction, year, records, year_end_month)


def retained_until(jurisdiction: str, record_at: datetime, year_end_month: int = 12) -> datetime:
    """The instant from which a billing record made at ``record_at`` may be deleted."""
    return fiscal_year_retained_until(jurisdiction, fiscal_year(record_at, year_end_month), Records.BILLING,
                                      year_end_month)  # fmt: skip


def may_delete(jurisdiction: str, record_at: datetime, now: datetime, year_end_month: int = 12) -> bool:
    """True once the billing record's retention period is over."""
    return now >= retained_until(jurisdiction, record_at, year_end_month)


def retention_ends_at(recorded_at: datetime, jurisdiction: str) -> datetime:
    """When an activity record of ``recorded_at`` may be deleted: N years after the end of its (calendar) year."""
    return fiscal_year_retained_until(jurisdiction, fiscal_year(recorded_at), Records.ACTIVITY)


def retention_ended(recorded_at: datetime, jurisdiction: str, now: datetime) -> bool:
    """The activity record's legal retention is over at ``now`` (Art. 17(3)(b) no longer keeps it)."""
    return now >= retention_ends_at(recorded_at, jurisdiction)
