"""The legal documents: versioned files whose front matter the loader checks, and the version in force."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from legal import documents
from legal.documents import InvalidDocument

T0 = datetime(2026, 11, 30, tzinfo=UTC)


def _text(kind: str, version: int, published: datetime, effective: datetime, material: bool = True) -> str:
    return (
        f"---\ndocument: {kind}\nversion: {version}\ntitle: T\npublished_at: {published.isoformat()}\n"
        f"effective_at: {effective.isoformat()}\nmaterial: {'true' if material else 'false'}\n---\n# Body\n"
    )


def test_the_bundled_documents_load_and_one_version_of_each_is_in_force_today():
    docs = documents.load()
    assert {d.kind for d in docs} == set(documents.KINDS)
    for kind in documents.KINDS:
        current = documents.in_force(docs, kind, T0)
        assert current is not None and current.version == 1
        assert len(current.sha256) == 64 and current.body.startswith("# ")


def test_the_terms_hold_the_sections_other_documents_and_notices_cite():
    terms = documents.in_force(documents.load(), "terms", T0)
    assert terms is not None
    headings = {line.split(".")[0].removeprefix("## ") for line in terms.body.splitlines() if line.startswith("## ")}
    assert {"3", "6", "8", "9", "11", "18"} <= headings
    assert "30 days before it takes effect" in terms.body  # §18's notice, which policies.terms enforces


def test_a_material_change_with_less_than_30_days_notice_is_refused(tmp_path: Path):
    (tmp_path / "terms-1.md").write_text(_text("terms", 1, T0, T0))
    (tmp_path / "terms-2.md").write_text(_text("terms", 2, T0, T0 + timedelta(days=30) - timedelta(seconds=1)))
    with pytest.raises(InvalidDocument, match="30 days' notice"):
        documents.load(tmp_path)
    (tmp_path / "terms-2.md").write_text(_text("terms", 2, T0, T0 + timedelta(days=30)))
    assert [d.ref for d in documents.load(tmp_path)] == ["terms-1", "terms-2"]


def test_a_non_material_change_may_apply_at_once(tmp_path: Path):
    (tmp_path / "terms-1.md").write_text(_text("terms", 1, T0, T0))
    (tmp_path / "terms-2.md").write_text(_text("terms", 2, T0 + timedelta(days=1), T0 + timedelta(days=1), False))
    assert documents.in_force(documents.load(tmp_path), "terms", T0 + timedelta(days=1)).version == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# no front matter\n", "no front matter"),
        ("---\ndocument: terms\n---\n", "lacks version"),
        (_text("terms", 1, T0, T0).replace("document: terms", "document: eula"), "document must be"),
        (_text("terms", 1, T0, T0).replace("version: 1", "version: one"), "positive integer"),
        (_text("terms", 1, T0, T0).replace("material: true", "material: yes"), "true or false"),
        (_text("terms", 1, T0, T0).replace("+00:00", "", 1), "time zone"),
    ],
)
def test_malformed_front_matter_is_refused_with_what_is_wrong(text: str, message: str):
    with pytest.raises(InvalidDocument, match=message):
        documents.parse(text, "x.md")


def test_versions_must_take_effect_in_order(tmp_path: Path):
    (tmp_path / "terms-1.md").write_text(_text("terms", 1, T0, T0 + timedelta(days=60)))
    (tmp_path / "terms-2.md").write_text(_text("terms", 2, T0, T0 + timedelta(days=40)))
    with pytest.raises(InvalidDocument, match="must take effect after"):
        documents.load(tmp_path)


@given(offset=st.integers(min_value=-86_400 * 40, max_value=86_400 * 80))
def test_the_version_in_force_switches_exactly_at_its_effective_instant(offset: int):
    docs = (
        documents.parse(_text("terms", 1, T0, T0)),
        documents.parse(_text("terms", 2, T0, T0 + timedelta(days=30))),
    )
    now = T0 + timedelta(days=30) + timedelta(seconds=offset)
    current = documents.in_force(docs, "terms", now)
    if now < T0:
        assert current is None
    else:
        assert current is not None and current.version == (2 if offset >= 0 else 1)
    assert [d.version for d in documents.pending(docs, "terms", now)] == (
        [2] if T0 <= now < T0 + timedelta(days=30) else []
    )
