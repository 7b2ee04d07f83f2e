"""The one-way import rule, checked on the source: policies → legal → domain → projections → api.

``domain`` knows no framework, driver or transport; its adapters (``domain/adapters``) are picked by
the composition root and imported by nothing else in ``domain``; ``agent`` shares only its protocol.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("policies", "legal", "domain", "projections", "api", "agent")
INFRASTRUCTURE = ("litestar", "nats", "stripe", "psycopg", "psycopg_pool", "sqlite3", "bcrypt", "httpx", "uvicorn")

ALLOWED_OURS = {
    "policies": set(),
    "legal": {"policies"},
    "domain": {"policies", "legal", "domain"},
    "projections": {"policies", "legal", "domain", "projections"},
    "api": {"policies", "legal", "domain", "projections", "api", "agent.protocol"},
    "agent": {"agent"},
}


def imports_of(path: Path) -> list[str]:
    """Every absolute module a file imports (also inside functions)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def allowed(package: str, name: str) -> bool:
    return any(name == rule or name.startswith(rule + ".") for rule in ALLOWED_OURS[package])


@pytest.mark.parametrize("package", OURS)
def test_imports_point_one_way(package: str) -> None:
    wrong = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in modules(package)
        for name in imports_of(path)
        if name.split(".")[0] in OURS
        and not allowed(package, name)
        # ``from agent import protocol`` names the module through its package
        and not (package == "api" and name in {"agent", "agent.protocol"})
    ]
    assert wrong == []


def test_the_domain_core_imports_no_infrastructure_and_no_adapter() -> None:
    core = [p for p in modules("domain") if "adapters" not in p.parts]
    assert len(core) > 10
    wrong = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in core
        for name in imports_of(path)
        if name.split(".")[0] in INFRASTRUCTURE or name.startswith("domain.adapters")
    ]
    assert wrong == []


def test_policies_and_legal_import_no_framework() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}: {name}"
        for package in ("policies", "legal")
        for path in modules(package)
        for name in imports_of(path)
        if name.split(".")[0] in {*INFRASTRUCTURE, "eventsourcing", "msgspec", "cryptography"}
    ]
    assert wrong == []
