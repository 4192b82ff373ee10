"""The report in a real browser: headless Chromium driven over the DevTools protocol.

Renders the report from real recorded results, opens it, and checks what a person would: the matrix is there, a
click on a failing cell opens its drill-down with the worst case and its reproduction, the filter works, a
backend's ``<script>`` name stays text, and the page logs no console error and makes no request. Screenshots go to
``reports/out/`` (gitignored) and to pytest's tmp dir so that a person can look at the page.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from reports.render import write_report
from reports.summarize import summarize

websocket = pytest.importorskip("websocket", reason="websocket-client is not installed (pip install -e .[test])")

REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "reports" / "out"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000", "--remote-debugging-port=0"]


def chromium_binary() -> str:
    """Debian's chromium, installed with apt-get when missing; skip (with the reason) where that cannot be done."""
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)  # type: ignore[return-value]
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("chromium is not installed, and apt-get is not available as root to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.skip(f"chromium could not be installed: {' '.join(cmd)} exited {proc.returncode}: "
                        f"{proc.stderr.strip()[-500:]}")
    if not shutil.which("chromium"):
        pytest.skip("apt-get install chromium succeeded but no chromium binary is on PATH")
    return shutil.which("chromium")  # type: ignore[return-value]


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


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Page]:
    binary = chromium_binary()
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        yield page
        page.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


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
    assert failing.worst[0]["problem_text"] in browser.js(f"document.querySelector('{drill} table.worst').innerText")
    browser.click(f"{drill} details.case > summary")
    assert browser.visible(f"{drill} pre.repro")
    assert browser.js(f"document.querySelector('{drill} pre.repro').textContent") == failing.worst[0]["repro"]
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
