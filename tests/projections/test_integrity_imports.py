"""The integrity core stands alone: the standard library and ``cryptography``, nothing else of ours or others'."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "projections" / "integrity"
ALLOWED = {*sys.stdlib_module_names, "cryptography", "projections", "policies"}


def test_the_integrity_modules_import_only_the_standard_library_and_cryptography() -> None:
    wrong = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                ours = name == "projections" or name.startswith("projections.")
                if name.split(".")[0] not in ALLOWED or (ours and not name.startswith("projections.integrity")):
                    wrong.append(f"{path.name}: {name}")
    assert wrong == []


@pytest.mark.parametrize("module", ["verify", "bundle", "ledger", "export"])
def test_importing_the_verifier_loads_nothing_of_the_product(module: str) -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        f"import projections.integrity.{module}\n"
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    loaded = set(ast.literal_eval(out))
    assert "projections" in loaded and loaded <= {"projections", "cryptography", "_cffi_backend", "_openssl"}, loaded
