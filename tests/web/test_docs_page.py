"""The API docs page in a real browser (Debian's Chromium driven by Playwright): it renders every
operation and loads nothing from outside this machine."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from api.app import create_app
from api.services import build_services
from api.settings import load_settings
from tests.support.server import ServerThread

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Chromium is missing: `make test` installs Debian's chromium package"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def test_the_docs_page_renders_offline_with_every_operation(browser: Browser, tmp_path: Path) -> None:
    settings = load_settings({}, var_dir=str(tmp_path), inference=False)
    server = ServerThread(create_app(settings, build_services(settings))).start()
    try:
        page = browser.new_page()
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(server.base_url + "/schema", wait_until="networkidle")
        page.wait_for_selector(".opblock", timeout=15_000)
        operations = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/api/v1/tenants" in " ".join(operations)
        assert len(operations) >= 20
        assert page.locator("button.authorize").count() == 1  # bearer keys can be entered in the UI
        page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)
        outside = [url for url in requested if not url.startswith((server.base_url, "data:"))]
        assert outside == [], f"the docs page fetched from outside: {outside}"
    finally:
        server.stop()
