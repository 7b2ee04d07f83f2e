"""`ownllm projections status` and `rebuild NAME`, against a real event store, from another process's view."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence

import pytest
from eventsourcing.persistence import OperationalError
from eventsourcing.utils import get_topic
from typer.testing import CliRunner

from api.cli import app
from api.services import Services, build_services
from api.settings import Settings
from domain.tenant import Tenant
from projections.log import Recorded


@pytest.fixture
def cli(make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str]]:
    """Run ``ownllm`` on the same store as ``make_settings()`` (through OWNLLM_* like an operator)."""
    settings_ = make_settings()
    monkeypatch.delenv("OWNLLM_TEST_POSTGRES_DSN", raising=False)  # the CLI refuses unknown OWNLLM_* variables
    monkeypatch.setenv("OWNLLM_VAR_DIR", settings_.var_dir)
    monkeypatch.setenv("OWNLLM_PERSISTENCE", settings_.persistence)
    monkeypatch.setenv("COLUMNS", "200")  # one table row per line
    if settings_.persistence == "postgres":
        monkeypatch.setenv("OWNLLM_POSTGRES_DSN", settings_.postgres_dsn)
        monkeypatch.setenv("OWNLLM_POSTGRES_SCHEMA", settings_.postgres_schema)
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        return result.exit_code, result.output

    return invoke


def record(services: Services, tenant: uuid.UUID, tokens: int) -> None:
    services.app.record_usage(
        tenant_id=tenant, user_id=uuid.uuid4(), key_id=uuid.uuid4(), agent_id=None, model="m", endpoint="chat",
        stream=False, status="ok", prompt_tokens=tokens, completion_tokens=0, ttft_ms=1, duration_ms=10,
        request_id=str(uuid.uuid4()),
    )  # fmt: skip


def totals(services: Services, tenant: uuid.UUID) -> tuple[int, int]:
    rows = services.usage.query(tenant)
    return sum(r.requests for r in rows), sum(r.prompt_tokens for r in rows)


def status_rows(output: str) -> dict[str, list[str]]:
    """The status table's cells by read model name."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if cells and cells[0] not in {"", "read model"}:
            rows[cells[0]] = cells[1:]
    return rows


class Refusing:
    """The usage view behind a database that refuses every batch (same name, topics and position)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.name = "usage"
        self.topics = inner.topics  # type: ignore[attr-defined]
        self.position = inner.position  # type: ignore[attr-defined]

    def process_records(self, records: Sequence[Recorded], through: int) -> None:
        raise OperationalError("connection refused")

    def stored_position(self) -> int:
        return self.position

    def clear(self) -> None:
        raise AssertionError("not rebuilt here")


def test_status_shows_position_head_lag_and_the_last_failure_of_the_running_process(
    make_settings: Callable[..., Settings], cli: Callable[..., tuple[int, str]]
) -> None:
    server = build_services(make_settings(), start_runner=False)  # the process that runs the usage view
    try:
        server.command(
            server.app.signup, slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example",
            request_id="r1",
        )  # fmt: skip
        for tokens in range(3):
            record(server, uuid.uuid4(), tokens)
        head = server.runner.log.head()
        server.runner.tracked = [Refusing(server.usage)]
        server.runner.catch_up()

        code, output = cli("projections", "status")
        assert code == 0, output
        rows = status_rows(output)
        assert rows["directory"][:5] == ["in-memory", str(head), str(head), "0", "0"]  # this command's own
        kind, position, shown_head, lag, failures, error = rows["usage"]
        assert (kind, shown_head, failures) == ("tracked", str(head), "1")
        assert int(position) < head and int(lag) == head - int(position)
        assert error.startswith("OperationalError at ")

        server.runner.tracked = [server.usage]
        server.runner.catch_up()
        kind, position, shown_head, lag, failures, error = status_rows(cli("projections", "status")[1])["usage"]
        assert (position, shown_head, lag, failures) == (str(head), str(head), "0", "0")
        assert error.startswith("OperationalError at ")  # the last error stays on record
    finally:
        server.close()


def test_rebuild_replays_a_registered_tracked_read_model(
    make_settings: Callable[..., Settings], cli: Callable[..., tuple[int, str]]
) -> None:
    services = build_services(make_settings(), start_runner=False)
    tenant = uuid.uuid4()
    try:
        for tokens in range(6):
            record(services, tenant, tokens)
        services.runner.catch_up()
        before = totals(services, tenant)
        assert before == (6, 15)
        services.usage.view.clear()  # wrong or lost: rebuild it
        assert services.usage.query(tenant) == []

        code, output = cli("projections", "rebuild", "usage")
        assert code == 0, output
        assert f"usage: replayed 6 events (log head {services.runner.log.head()})" in output
        assert totals(services, tenant) == before
        assert services.usage.stored_position() == services.runner.log.head()
    finally:
        services.close()


class Unreachable:
    """A reaction whose outside effect keeps failing."""

    name = "test-welcome-mail"
    topics = (get_topic(Tenant.Registered),)

    def handle(self, event: object, position: int) -> None:
        raise ConnectionRefusedError("smtp down")


def test_status_lists_a_failing_reaction_of_another_process(
    make_settings: Callable[..., Settings], cli: Callable[..., tuple[int, str]]
) -> None:
    server = build_services(make_settings(), start_runner=False)
    try:
        server.command(
            server.app.signup, slug="acme", name="Acme", admin_name="Ada", admin_email="ada@acme.example",
            request_id="r1",
        )  # fmt: skip
        server.reactions.add(Unreachable())
        server.reactions.run_once()
        head = server.runner.log.head()
        rows = status_rows(cli("projections", "status")[1])
        assert rows["test-welcome-mail"][:5] == ["reaction", "0", str(head), str(head), "1"]
        assert rows["test-welcome-mail"][5].startswith(
            "ConnectionRefusedError at "
        )  # its type: a message may quote data
        assert "smtp down" not in rows["test-welcome-mail"][5]
        assert "nats-authorization" not in rows  # it has never run against this store
    finally:
        server.close()


def test_rebuild_names_the_read_models_it_knows(cli: Callable[..., tuple[int, str]]) -> None:
    code, output = cli("projections", "rebuild", "directory")  # in-memory: every process rebuilds it at start
    assert code == 2
    assert "unknown projection 'directory'; tracked projections: audit, billing, credits, integrity, usage" in output


def test_status_shows_the_records_the_usage_view_quarantined(
    make_settings: Callable[..., Settings], cli: Callable[..., tuple[int, str]]
) -> None:
    server = build_services(make_settings(), start_runner=False)
    try:
        tenant = uuid.uuid4()
        for tokens in (1, 2**64 - 1, 2):
            record(server, tenant, tokens)
        server.runner.catch_up()
        quarantined = server.usage.quarantined()
        assert len(quarantined) == 1 and totals(server, tenant) == (2, 3)

        code, output = cli("projections", "status")
        assert code == 0, output
        assert status_rows(output)["usage"][3] == "0"  # no lag: the bad record did not stop the view
        assert f"usage: 1 records quarantined, not counted (notification ids {quarantined[0][0]})" in output
    finally:
        server.close()


def test_rebuild_integrity_replays_the_ledger_to_the_same_trees(
    make_settings: Callable[..., Settings], cli: Callable[..., tuple[int, str]]
) -> None:
    from projections.integrity.ledger_rows import GLOBAL

    services = build_services(make_settings(run_projections=True), start_runner=False)
    try:
        services.app.signup(slug="acme", name="A", admin_name="Ada", admin_email="a@acme.example", request_id="r")
        services.runner.catch_up()
        assert services.ledger is not None
        with services.ledger.tables.reading() as snapshot:
            before = snapshot.tree(GLOBAL).root()
        code, output = cli("projections", "rebuild", "integrity")
        assert code == 0 and "integrity: replayed 3 events" in output, output
        with services.ledger.tables.reading() as snapshot:
            assert snapshot.tree(GLOBAL).root() == before and snapshot.tree(GLOBAL).size == 3
    finally:
        services.close()
