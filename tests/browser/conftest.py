"""Browser fixtures: a real server for the app in a thread, and the system's headless Chromium."""
import shutil
import threading
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

from webapp.devrun import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def live_server(app):
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def page():
    """A page whose console errors are collected in page.console_errors."""
    assert CHROMIUM, "Chromium is required for the browser tests (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.console_errors = []
        page.on("console", lambda msg: msg.type == "error" and page.console_errors.append(msg.text))
        yield page
        browser.close()


AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture
def check_accessible():
    """check_accessible(page): run axe-core on the page as it is now and fail on any serious or
    critical violation, naming the rule and the elements. axe is evaluated through the browser's
    debugging protocol, so the page's strict CSP (no inline script) stays as it is."""
    assert AXE.exists(), "axe-core is missing: run `make assets` (npm ci) first"
    source = AXE.read_text()

    def check(page, context=None):
        page.evaluate(source)
        result = page.evaluate("(ctx) => axe.run(ctx || document, {resultTypes: ['violations']})", context)
        bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
        report = "\n".join(f"{v['impact']}: {v['id']} ({v['help']}) at "
                           + ", ".join(" ".join(node["target"]) for node in v["nodes"][:5]) for v in bad)
        assert not bad, f"axe-core on {page.url}:\n{report}"
        return result["violations"]

    return check
