"""The report in a real browser: headless Chromium driven over the DevTools protocol.

Renders the report from real recorded results, opens it, and checks what a person would: the matrix is there, a
click on a failing cell opens its drill-down with the worst case and its reproduction, the filter works, a
backend's ``<script>`` name stays text, and the page logs no console error and makes no request; and at a laptop's
1280 × 900 the failing cells come first, each inside the window. Screenshots go to ``reports/out/`` (gitignored) and
to pytest's tmp dir so that a person can look at the page. Where no Chromium is installed the tests skip, saying so.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from conformance.reports.render import write_report
from conformance.reports.summarize import summarize
from test_report import record_error_results

websocket = pytest.importorskip("websocket", reason="websocket-client is not installed (pip install -e .[test])")
pytestmark = pytest.mark.slow  # a recorded run of the suite (a subprocess) and a browser

REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "reports" / "out"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0"]


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_binary() -> str | None:
    """A Chromium (or Chrome) on PATH, or None: the tests install nothing."""
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


CHROMIUM = chromium_binary()
if CHROMIUM is None:  # before any fixture records a run for nothing
    pytest.skip(f"no Chromium found: none of {', '.join(CHROMIUM_NAMES)} is on PATH (on Debian: apt-get install "
                "chromium)", allow_module_level=True)


class Page:
    """A DevTools-protocol session on one tab; events are kept, by method, for the checks."""

    def __init__(self, ws_url: str) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events:
                if e.get("method") == method:
                    return e
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)

    def js(self, expression: str) -> Any:
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise AssertionError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the centre of the element ``selector``."""
        box = self.js(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            e.scrollIntoView({{block: "center"}}); const r = e.getBoundingClientRect();
            return {{x: r.left + r.width / 2, y: r.top + r.height / 2}}; }})()""")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left", clickCount=1)

    def visible(self, selector: str) -> bool:
        """Rendered: not hidden by display, visibility or a closed <details> (content-visibility), and not empty."""
        return self.js(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            return !!e && e.checkVisibility({{visibilityProperty: true}}) && e.getBoundingClientRect().height > 0;
            }})()""")

    def screenshot(self, *paths: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)["data"]
        import base64

        for p in paths:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(base64.b64decode(data))


@contextlib.contextmanager
def launch(profile: Path, width: int, height: int) -> Iterator[Page]:
    """Headless Chromium with a ``width`` × ``height`` window and viewport, driven over the DevTools protocol."""
    profile.mkdir()
    proc = subprocess.Popen([str(CHROMIUM), *FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start its DevTools endpoint (exit {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = [t for t in json.load(r) if t.get("type") == "page"]
        page = Page(targets[0]["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.send(f"{domain}.enable")
        # the viewport itself, whatever the window's frame takes
        page.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        yield page
        page.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def error_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of backends that raise, crash and hang (tests/test_report.py records it once a session)."""
    return record_error_results(tmp_path_factory)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Page]:
    with launch(tmp_path / "chromium-profile", 1400, 1000) as page:
        yield page


@pytest.fixture
def browser_1280(tmp_path: Path) -> Iterator[Page]:
    """A laptop's window: 1280 × 900."""
    with launch(tmp_path / "chromium-profile", 1280, 900) as page:
        yield page


def test_report_in_headless_chromium(browser: Page, recorded_results: dict[str, Path], tmp_path: Path) -> None:
    results = [recorded_results["a"], recorded_results["b"]]
    report = write_report(results, tmp_path / "index.html")
    failing = summarize(results).cell("env-a", "flipped-conv", "forward")
    assert failing is not None and failing.state == "fail"

    browser.events.clear()
    browser.send("Page.navigate", url=report.as_uri())
    browser.wait_for("Page.loadEventFired")
    browser.screenshot(SHOTS / "screenshot.png", tmp_path / "screenshot.png")

    # the matrix: every implementation a row per environment, the checks as columns, colour-coded cells
    assert browser.js("document.querySelectorAll('#matrix thead th[scope=col]').length") >= 6
    impls = browser.js("[...new Set([...document.querySelectorAll('#matrix tbody tr')].map(r => r.dataset.impl))]")
    assert {"naive", "flipped-conv", "<script>alert(1)</script>"} <= set(impls)
    assert browser.js("document.querySelectorAll('#matrix td.st-pass').length") > 10
    assert browser.js("document.querySelectorAll('#matrix td.st-fail').length") >= 2

    # speed beside accuracy: each run cell's median time per call, and the Speed section's table and plot
    assert browser.js("document.querySelectorAll('#matrix td.st-pass .per-call').length") > 10
    assert browser.visible("#speed-table") and browser.visible("#speed-plot")
    assert browser.js("document.getElementById('speed-plot').naturalWidth") > 100  # the SVG plot decoded
    naive = browser.js("document.querySelector('#speed-table tr[data-impl=naive] td[data-column=forward]').innerText")
    assert "ms" in naive and "GFLOP/s" in naive

    # a click on the failing cell opens its drill-down: the worst case and its reproduction
    drill = f"details#{failing.ident}"
    assert not browser.js(f"document.querySelector('{drill}').open")
    assert not browser.visible(f"{drill} table.worst")
    browser.click(f'#matrix tr[data-env="env-a"] td[data-column="forward"].st-fail a[data-open="{failing.ident}"]')
    assert browser.js(f"document.querySelector('{drill}').open")
    assert browser.visible(f"{drill} table.worst") and browser.visible(f"{drill} img.plot")
    assert browser.js(f"document.querySelector('{drill} img.plot').naturalWidth") > 100  # the SVG plot decoded
    assert failing.worst[0].problem_text in browser.js(f"document.querySelector('{drill} table.worst').innerText")
    browser.click(f"{drill} details.case > summary")
    assert browser.visible(f"{drill} pre.repro")
    assert browser.js(f"document.querySelector('{drill} pre.repro').textContent") == failing.worst[0].repro
    browser.screenshot(SHOTS / "screenshot-drilldown.png", tmp_path / "screenshot-drilldown.png")

    # the filter box and the only-failing switch
    browser.click("#filter")
    browser.send("Input.insertText", text="naive")
    shown = ("[...document.querySelectorAll('#matrix tbody tr')]"
             ".filter(r => r.getClientRects().length).map(r => r.dataset.impl)")
    assert set(browser.js(shown)) == {"naive"}
    browser.click("#filter")
    for _ in "naive":
        browser.send("Input.dispatchKeyEvent", type="keyDown", key="Backspace", code="Backspace",
                     windowsVirtualKeyCode=8)
        browser.send("Input.dispatchKeyEvent", type="keyUp", key="Backspace", code="Backspace", windowsVirtualKeyCode=8)
    assert browser.js("document.getElementById('filter').value") == ""
    assert len(browser.js(shown)) == browser.js("document.querySelectorAll('#matrix tbody tr').length")
    browser.click("#only-failing")
    assert set(browser.js(shown)) == {"flipped-conv"}

    # a backend's <script> name is text: no dialog, no extra script element
    assert browser.js("document.querySelectorAll('script').length") == 1
    methods = [e.get("method") for e in browser.events]
    assert "Page.javascriptDialogOpening" not in methods

    errors = [e for e in browser.events if (e.get("method") == "Runtime.exceptionThrown")
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") in ("error", "assert"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error")]
    assert not errors, errors
    requests = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert requests and all(u.startswith(("file:", "data:")) for u in requests), requests


def test_failing_cells_fit_a_1280_px_window(browser_1280: Page, recorded_results: dict[str, Path],
                                            error_results: Path, tmp_path: Path) -> None:
    """Failure first: at 1280 × 900, before the matrix, a line per failing cell (flipped-conv's failing tiers out to
    the matrix's last columns, and the errors of backends that raise, crash and hang), each inside the window
    without any horizontal scrolling, each opening its drill-down; the chip links to that list; an error reads as
    its cause, not ∞×."""
    results = [recorded_results["a"], recorded_results["b"], error_results]
    report = write_report(results, tmp_path / "index.html")
    rep = summarize(results)
    failing = rep.failing
    last = {rep.columns.index(c.column) for c in failing}
    assert len(failing) >= 40 and max(last) >= len(rep.columns) - 3  # failing cells in the matrix's far columns
    errors = [c for c in failing if c.is_error]
    assert {c.impl for c in errors} == {"raising", "crashing", "hanging"}

    browser_1280.events.clear()
    browser_1280.send("Page.navigate", url=report.as_uri())
    browser_1280.wait_for("Page.loadEventFired")
    shots = [tmp_path / "failing-first-1280.png", SHOTS / "failing-first-1280.png"]
    browser_1280.screenshot(*shots)
    width = browser_1280.js("document.documentElement.clientWidth")  # the window less its vertical scrollbar
    assert 1200 <= width <= 1280 and browser_1280.js("window.innerWidth") == 1280
    assert browser_1280.js("document.documentElement.scrollWidth") <= width  # the page itself never scrolls sideways

    # the list comes before the matrix, and the chip links to it
    assert browser_1280.js("document.getElementById('failing').getBoundingClientRect().top") < browser_1280.js(
        "document.getElementById('matrix').getBoundingClientRect().top")
    chip = browser_1280.js("(() => { const a = document.getElementById('failing-chip');"
                           " return {href: a.getAttribute('href'), text: a.textContent, cls: a.className}; })()")
    assert chip == {"href": "#failing", "text": f"{len(failing)} failing cell(s)", "cls": "c-fail"}

    # a line per failing cell, each link wholly inside the window horizontally
    boxes = browser_1280.js("""[...document.querySelectorAll('#failing a[data-open]')].map(a => {
        const r = a.getBoundingClientRect(); return {id: a.dataset.open, left: r.left, right: r.right,
        width: r.width, line: a.closest('tr').innerText}; })""")
    assert [b["id"] for b in boxes] == [c.ident for c in failing]
    for box in boxes:
        assert box["width"] > 0 and 0 <= box["left"] and box["right"] <= width, box
    lines = {b["id"]: b["line"] for b in boxes}
    for cell in errors:
        assert cell.cause in lines[cell.ident] and "∞" not in lines[cell.ident], lines[cell.ident]
    hanging = next(c for c in errors if c.impl == "hanging")
    assert "timed out after" in lines[hanging.ident]

    # a click on a line opens its drill-down (a closed <details> until then), which names the error's cause
    crash = next(c for c in errors if c.impl == "crashing")
    drill = f"details#{crash.ident}"
    assert not browser_1280.js(f"document.querySelector('{drill}').open")
    browser_1280.click(f'#failing a[data-open="{crash.ident}"]')
    assert browser_1280.js(f"document.querySelector('{drill}').open")
    assert browser_1280.visible(f"{drill} p.cause")
    assert "SIGABRT" in browser_1280.js(f"document.querySelector('{drill} p.cause').innerText")
    browser_1280.screenshot(tmp_path / "failing-first-1280-drilldown.png", SHOTS / "failing-first-1280-drilldown.png")

    # in the matrix an error cell says "error" and its cause
    cell = browser_1280.js(f"document.querySelector('#matrix a[data-open=\"{crash.ident}\"]').innerText")
    assert cell.startswith("error") and crash.cause in cell and "∞" not in cell

    # the switch keeps only failing rows and only the columns with a failing cell
    browser_1280.click("#only-failing")
    shown_cols = browser_1280.js("[...document.querySelectorAll('#matrix thead th[data-column]')]"
                                 ".filter(th => th.getClientRects().length).map(th => th.dataset.column)")
    assert set(shown_cols) == {c.column for c in failing}
    shown_rows = browser_1280.js("[...document.querySelectorAll('#matrix tbody tr')]"
                                 ".filter(r => r.getClientRects().length).map(r => r.dataset.impl)")
    assert set(shown_rows) == {c.impl for c in failing}
    errors_seen = [e for e in browser_1280.events if e.get("method") == "Runtime.exceptionThrown"]
    assert not errors_seen, errors_seen
