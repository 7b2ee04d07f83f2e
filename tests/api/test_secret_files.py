"""Generated secrets of the embedded setup: 0600 files, created once, read back ever after."""

from __future__ import annotations

import stat
from pathlib import Path

from api.embedded_nats import proxy_password
from api.secret_files import read_or_create_secret
from api.services import pepper
from api.settings import Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_secret_is_created_0600_once_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "var" / "secrets" / "one"
    first = read_or_create_secret(path)
    assert len(first) >= 40 and mode(path) == 0o600
    assert read_or_create_secret(path) == first
    assert read_or_create_secret(tmp_path / "var" / "secrets" / "two") != first


def test_an_existing_secret_is_kept_as_written(tmp_path: Path) -> None:
    path = tmp_path / "given"
    path.write_text("operator-chosen\n")
    assert read_or_create_secret(path) == "operator-chosen"
    assert path.read_text() == "operator-chosen\n"


def test_the_pepper_and_the_proxy_password_are_such_files(tmp_path: Path) -> None:
    settings = Settings(var_dir=str(tmp_path / "var"))
    password, key_pepper = proxy_password(settings), pepper(settings)
    password_file, pepper_file = tmp_path / "var" / "nats" / "proxy.secret", tmp_path / "var" / "secrets" / "key-pepper"
    assert (password_file.read_text(), pepper_file.read_text().encode()) == (password, key_pepper)
    assert mode(password_file) == mode(pepper_file) == 0o600
    assert (proxy_password(settings), pepper(settings)) == (password, key_pepper)
    configured = Settings(var_dir=str(tmp_path / "other"), nats_proxy_password="p", key_pepper="k")
    assert (proxy_password(configured), pepper(configured)) == ("p", b"k")
    assert not (tmp_path / "other").exists()
