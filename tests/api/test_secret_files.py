"""Generated secrets of the embedded setup: 0600 files, created once, read back ever after."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from api.embedded_nats import proxy_password
from api.secret_files import read_or_create_secret
from api.services import build_services, pepper
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


def private_modes(var: Path) -> dict[str, int]:
    """The mode of var/ and of every file of the embedded store that exists now."""
    names = ["events.sqlite", "subject-keys.sqlite", "secrets/key-pepper"]
    names += [f"{db}{suffix}" for db in ("events.sqlite", "subject-keys.sqlite") for suffix in ("-wal", "-shm")]
    found = {name: mode(var / name) for name in names if (var / name).exists()}
    return found | {".": mode(var), "secrets": mode(var / "secrets")}


def test_var_is_0700_and_its_databases_and_secrets_0600_fresh_and_after_a_restart(tmp_path: Path) -> None:
    var = tmp_path / "var"
    settings = Settings(var_dir=str(var), inference=False)
    expected_files = {"events.sqlite", "subject-keys.sqlite", "subject-keys.sqlite-wal", "secrets/key-pepper"}
    previous = os.umask(0o022)  # the usual default, under which files were created 0644
    try:
        services = build_services(settings, start_runner=False)
        try:
            modes = private_modes(var)
            assert expected_files <= modes.keys()
            assert modes == {name: 0o700 if name in (".", "secrets") else 0o600 for name in modes}
        finally:
            services.close()
        for name in private_modes(var):  # as an older version left them
            (var / name).chmod(0o755 if name in (".", "secrets") else 0o644)
        services = build_services(settings, start_runner=False)
        try:
            modes = private_modes(var)
            assert expected_files <= modes.keys()
            assert modes == {name: 0o700 if name in (".", "secrets") else 0o600 for name in modes}
        finally:
            services.close()
    finally:
        os.umask(previous)
