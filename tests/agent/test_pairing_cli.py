"""Pairing, credentials, settings and the CLI, against a tiny real HTTP server."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent import credentials as creds
from agent.cli import app
from agent.settings import AgentSettings, SettingsError, load_settings

GOOD_KEY = "pk-good"
ANSWER = {
    "agent_id": "agent-7",
    "tenant_id": "tenant-a",
    "nats_url": "nats://127.0.0.1:4222",
    "nats_user": "agent-7",
    "nats_password": "s3cret-pw",
}


class PairServer:
    """A real HTTP server answering POST /api/v1/agents/pair like the platform."""

    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "body": body})
                if self.path != "/api/v1/agents/pair":
                    self._send(404, {"title": "Not Found", "detail": "no such route"})
                elif body.get("pairing_key") == GOOD_KEY:
                    self._send(201, ANSWER, "application/json")
                else:
                    self._send(403, {"title": "Invalid pairing key", "detail": "the key is unknown or used"})

            def _send(self, status: int, body: object, kind: str = "application/problem+json") -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def pair_server() -> Iterator[PairServer]:
    server = PairServer()
    yield server
    server.close()


runner = CliRunner()


def test_pair_stores_credentials_0600(pair_server: PairServer, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "credentials.json"
    result = runner.invoke(
        app,
        [
            "pair",
            "--url",
            pair_server.url + "/",
            "--pairing-key",
            GOOD_KEY,
            "--name",
            "box-1",
            "--credentials",
            str(path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "agent-7" in result.output
    assert "s3cret-pw" not in result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == ANSWER
    assert pair_server.requests == [{"path": "/api/v1/agents/pair", "body": {"pairing_key": GOOD_KEY, "name": "box-1"}}]
    loaded = creds.load(path)
    assert loaded.agent_id == "agent-7" and "s3cret" not in repr(loaded)


def test_pair_refuses_overwrite_unless_forced(pair_server: PairServer, tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text("{}")
    args = ["pair", "--url", pair_server.url, "--pairing-key", GOOD_KEY, "--credentials", str(path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "already exists" in result.output and "--force" in result.output
    assert path.read_text() == "{}"
    path.chmod(0o644)
    result = runner.invoke(app, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["nats_user"] == "agent-7"


def test_pair_shows_problem_details(pair_server: PairServer, tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    result = runner.invoke(
        app, ["pair", "--url", pair_server.url, "--pairing-key", "pk-wrong", "--credentials", str(path)]
    )
    assert result.exit_code == 1
    assert "403" in result.output
    assert "Invalid pairing key" in result.output
    assert "the key is unknown or used" in result.output
    assert not path.exists()


def test_pair_unreachable_server(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    result = runner.invoke(
        app, ["pair", "--url", "http://127.0.0.1:9", "--pairing-key", GOOD_KEY, "--credentials", str(path)]
    )
    assert result.exit_code == 1
    assert "cannot reach http://127.0.0.1:9/api/v1/agents/pair" in result.output


def test_credentials_default_path_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNLLM_AGENT_CREDENTIALS", str(tmp_path / "c.json"))
    assert creds.default_path() == tmp_path / "c.json"
    monkeypatch.delenv("OWNLLM_AGENT_CREDENTIALS")
    assert creds.default_path().parts[-3:] == (".config", "ownllm-agent", "credentials.json")


def test_credentials_load_refuses_open_mode(tmp_path: Path) -> None:
    path = creds.save(creds.Credentials(**ANSWER), tmp_path / "c.json")
    path.chmod(0o644)
    with pytest.raises(creds.CredentialsError, match="readable by others"):
        creds.load(path)
    with pytest.raises(creds.CredentialsError, match="ownllm-agent pair"):
        creds.load(tmp_path / "missing.json")


def test_settings_from_environment() -> None:
    settings = load_settings(
        {
            "OWNLLM_AGENT_CAPACITY": "3",
            "OWNLLM_AGENT_BACKEND": "echo",
            "OWNLLM_AGENT_BUILTIN_MODEL": "false",
            "OWNLLM_AGENT_HEARTBEAT_INTERVAL_S": "0.5",
            "PATH": "/bin",
        }
    )
    assert settings == AgentSettings(capacity=3, backend="echo", builtin_model=False, heartbeat_interval_s=0.5)
    assert load_settings({}) == AgentSettings()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OWNLLM_AGENT_CAPACITY": "many"}, "OWNLLM_AGENT_CAPACITY"),
        ({"OWNLLM_AGENT_BACKEND": "vllm"}, "OWNLLM_AGENT_BACKEND"),
        ({"OWNLLM_AGENT_QUEUE_LIMT": "3"}, "OWNLLM_AGENT_QUEUE_LIMT"),
    ],
)
def test_settings_errors_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(env)


def test_cli_help_and_doctor_without_cuda() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "pair" in result.output and "serve" in result.output and "doctor" in result.output
    result = runner.invoke(app, ["serve", "--help"])
    assert "--model-dir" in result.output and "--backend" in result.output
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "torch" in result.output and "flash-attn" in result.output and "exllamav3" in result.output


def test_serve_without_credentials_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "--backend", "echo", "--credentials", str(tmp_path / "none.json")])
    assert result.exit_code == 1
    assert "run `ownllm-agent pair` first" in result.output


def test_import_agent_does_not_import_torch() -> None:
    code = (
        "import sys, agent, agent.cli, agent.worker, agent.selection, agent.models, agent.protocol;"
        "import agent.backends.echo, agent.backends.base;"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0, result.stderr
