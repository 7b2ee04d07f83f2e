"""Generated secrets of the embedded setup: 0600 files, created once, read back ever after."""

from __future__ import annotations

import multiprocessing
import os
import secrets
import stat
from pathlib import Path

import pytest

from api.embedded_nats import proxy_password
from api.secret_files import SecretFileError, pepper_problem, read_or_create_secret
from api.services import build_services
from api.settings import Settings, SettingsError, load_settings
from api.stores import pepper

STRONG = "q3JcZ8v1TtQ0m4bV7xYkR2sN9pLwE5hA6uGdF0iCjKo"  # 43 base64url characters: 32 bytes' worth


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
    configured = Settings(var_dir=str(tmp_path / "other"), nats_proxy_password="p", key_pepper=STRONG)
    assert (proxy_password(configured), pepper(configured)) == ("p", STRONG.encode())
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


@pytest.mark.parametrize(
    ("given", "complaint"),
    [("", "is empty"), ("   ", "is empty"), ("short", "is 5 characters long; at least 43"),
     (secrets.token_hex(21), "is 42 hex digits long; at least 64"), ("ab" * 40, "repeats fewer than 8 distinct")],
)  # fmt: skip
def test_an_empty_or_weak_pepper_in_the_environment_is_refused_at_start(given: str, complaint: str) -> None:
    with pytest.raises(SettingsError, match=f"OWNLLM_KEY_PEPPER {complaint}"):
        load_settings({"OWNLLM_KEY_PEPPER": given})
    with pytest.raises(SecretFileError, match=f"OWNLLM_KEY_PEPPER\\) {complaint}"):
        pepper(Settings(key_pepper=given or " "))  # built without load_settings ("" there means generate)


def test_strong_peppers_are_accepted_as_given() -> None:
    for given in (STRONG, secrets.token_hex(32), secrets.token_urlsafe(32), "x" + STRONG + " "):
        assert pepper_problem(given) is None
        assert load_settings({"OWNLLM_KEY_PEPPER": given}).key_pepper == given
        assert pepper(Settings(key_pepper=given)) == given.encode()


def test_an_empty_pepper_file_left_by_a_crash_is_refused_and_kept(tmp_path: Path) -> None:
    settings = Settings(var_dir=str(tmp_path / "var"))
    path = tmp_path / "var" / "secrets" / "key-pepper"
    path.parent.mkdir(parents=True)
    path.write_text("\n")
    with pytest.raises(SecretFileError, match=f"{path} is empty .* delete the file .* restore it from a backup"):
        pepper(settings)
    assert path.read_text() == "\n"  # not replaced: only the operator knows whether it was ever used
    path.write_text("short\n")  # an operator's own, too short
    with pytest.raises(SecretFileError, match=f"pepper \\({path}\\) is 5 characters long"):
        pepper(settings)


def _first_start(path: str, barrier: object, results: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    results.put(read_or_create_secret(Path(path)))  # type: ignore[attr-defined]


def test_processes_starting_at_once_end_with_one_secret_and_no_crash(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    for round_ in range(5):
        path = tmp_path / f"round-{round_}" / "secrets" / "key-pepper"
        barrier, results = context.Barrier(6), context.Queue()
        workers = [context.Process(target=_first_start, args=(str(path), barrier, results)) for _ in range(6)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert [worker.exitcode for worker in workers] == [0] * 6
        values = {results.get(timeout=5) for _ in workers}
        assert values == {path.read_text()} and len(path.read_text()) >= 43
        assert [p.name for p in path.parent.iterdir()] == ["key-pepper"]  # no temporary file left
