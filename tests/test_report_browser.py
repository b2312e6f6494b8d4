"""The report in a real headless browser (Debian's chromium, driven over the DevTools protocol).

Skipped only where chromium is absent (`.ci/run` installs it); the test itself installs nothing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import websocket  # websocket-client, in the test extra: speaks the DevTools protocol
from report_fixtures import HOSTILE, make_results

from sieve.report import build_report

pytestmark = pytest.mark.browser

CHROMIUM = next(
    (p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"
)


class Browser:
    """Just enough of the Chrome DevTools protocol: commands, and the events seen so far."""

    def __init__(self, tmp: Path) -> None:
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--mute-audio",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                f"--user-data-dir={tmp / 'profile'}",
                "--window-size=1280,1600",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        port = None
        deadline = time.time() + 60
        while port is None and time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            port = int(m.group(1)) if m else None
        if port is None:
            raise RuntimeError("chromium did not open its DevTools port within 60 s")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as fh:
            page = next(t for t in json.load(fh) if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.settimeout(30)
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 30) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for e in self.events:
                if e.get("method") == method:
                    self.events.remove(e)
                    return e
            self.ws.settimeout(max(deadline - time.time(), 0.1))
            try:
                self.events.append(json.loads(self.ws.recv()))
            except websocket.WebSocketTimeoutException:
                break
        raise TimeoutError(f"no {method} within {timeout} s")

    def js(self, expr: str):
        res = self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expr}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_js(self, expr: str, timeout: float = 20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.js(expr)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"{expr} stayed false for {timeout} s")

    def problems(self) -> list[str]:
        """Console errors/warnings, uncaught exceptions, failed loads, CSP violations, dialogs (alert())."""
        self.send("Runtime.evaluate", expression="1")  # drain pending events
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails']}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                out.append(
                    f"console.{p['type']}: {[a.get('value', a.get('description')) for a in p['args']]}"
                )
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(f"log {p['entry']['level']}: {p['entry']['text']} {p['entry'].get('url', '')}")
            elif m == "Page.javascriptDialogOpening":
                out.append(f"dialog: {p.get('message')}")
        return out

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@needs_chromium
def test_report_in_headless_chromium(tmp_path: Path) -> None:
    n_neurons = 70  # more than one page of the table (50 rows)
    planted = make_results(tmp_path, n_neurons=n_neurons, concept_sets=("words", "more"), top_n=6)
    out = tmp_path / "results" / "report"
    data = build_report(
        out / "index.html",
        out / "assets",
        models=["toy"],
        probes=["pics"],
        concept_sets=["more", "words"],
        results=tmp_path / "results",
        benchmarks=tmp_path / "benchmarks",
        title="browser <b>test</b>",
    )
    run0 = planted["runs"][("toy", "pics", "more")]
    selected = run0["selected"]
    assert len(selected) > 5

    b = Browser(tmp_path)
    try:
        for domain in ("Runtime", "Log", "Page"):
            b.send(f"{domain}.enable")
        b.send("Page.navigate", url=(out / "index.html").as_uri())
        b.wait_event("Page.loadEventFired")
        b.wait_js("document.querySelectorAll('#neurons tbody tr').length > 0")

        screenshot(b, tmp_path / "report_top.png")
        # one section per (model, probe, concept set), and the comparison table has a row per method of each
        assert b.js("document.querySelectorAll('.run-tab').length") == 2
        assert b.js("document.title") == "browser <b>test</b>"
        # the table: all neurons, paged 50 at a time
        assert b.js("document.querySelectorAll('#neurons tbody tr').length") == 50
        assert f"of {n_neurons}" in b.js("document.getElementById('count').textContent")
        b.js("document.getElementById('next').click()")
        assert b.js("document.querySelectorAll('#neurons tbody tr').length") == n_neurons - 50
        b.js("document.getElementById('prev').click()")
        # filter: only selected neurons
        b.js(
            "var f = document.getElementById('filter'); f.value = 'selected'; f.dispatchEvent(new Event('change'))"
        )
        ids = b.js("Array.from(document.querySelectorAll('#neurons tbody tr')).map(r => r.dataset.neuron)")
        assert sorted(map(int, ids)) == sorted(selected)
        b.js(
            "var f = document.getElementById('filter'); f.value = 'all'; f.dispatchEvent(new Event('change'))"
        )

        # search by typing a concept: only the neurons with that hypothesis remain, hostile text included
        word = HOSTILE[0]
        run_data = data["runs"][0]
        expect = sorted(
            int(r["id"])
            for r in run_data["neurons"]
            if word in (r.get("truth") or "")
            or any(word == v[0] for vs in r["baselines"].values() for v in vs)
            or any(
                word == c["text"]
                for x in run_data["cards"].get(r["id"], {}).get("clusters", [])
                for c in x["concepts"]
            )
        )
        with_hyp = [
            n
            for n, cl in run0["hypotheses"].items()
            if any(c["text"] == word for x in cl for c in x["concepts"])
        ]
        assert with_hyp and set(with_hyp) <= set(expect) and len(expect) < n_neurons
        b.js("document.getElementById('search').focus()")
        b.send("Input.insertText", text=word)
        b.wait_js(f"document.querySelectorAll('#neurons tbody tr').length === {len(expect)}")
        ids = b.js("Array.from(document.querySelectorAll('#neurons tbody tr')).map(r => r.dataset.neuron)")
        assert sorted(map(int, ids)) == expect

        # the card of the first match: its top-image grid and generated thumbnails really load
        n = with_hyp[0]
        b.js(f"document.querySelector('#neurons tbody tr[data-neuron=\"{n}\"] a').click()")
        b.wait_js(f"location.hash === '#toy/pics/more/n{n}'")  # the link names the section and the neuron
        card = f"document.getElementById('toy/pics/more/n{n}')"
        b.js(f"{card}.scrollIntoView()")
        b.wait_js(
            f"(() => {{ const i = {card}.querySelector('img.topimgs'); return i && i.complete && i.naturalWidth > 0; }})()"
        )
        b.js(f"{card}.querySelector('img.gen').scrollIntoView()")
        b.wait_js(
            f"Array.from({card}.querySelectorAll('img.gen')).every(i => i.complete && i.naturalWidth > 0)"
        )
        assert b.js(f"{card}.querySelectorAll('img.gen').length") >= 3
        # each generated image shows the neuron's activation on it, marked fired or not; a dot per image
        card_data = data["runs"][0]["cards"][str(n)]
        hyps = [c for cl in card_data["clusters"] for c in cl["concepts"]]
        hyps += [c for cl in card_data.get("baselines", {}).get("clip_dissect", []) for c in cl["concepts"]]
        assert b.js(f"{card}.querySelectorAll('figure.gen-cell.fired').length") == sum(
            sum(h["gen_fired"]) for h in hyps
        )
        assert b.js(f"{card}.querySelectorAll('.dot.on').length") == sum(sum(h["fired"]) for h in hyps)
        assert b.js(f"{card}.querySelectorAll('.dot').length") == sum(len(h["acts"]) for h in hyps)
        captions = b.js(f"Array.from({card}.querySelectorAll('.gen-val')).map(e => e.textContent)")
        assert captions[0].split()[-1] == f"{hyps[0]['gen_acts'][0]:.3f}".rstrip("0").rstrip(".")
        # the links to the files the card was drawn from open existing files
        hrefs = b.js(f"Array.from({card}.querySelectorAll('p.files a')).map(a => a.href)")
        assert len(hrefs) == 3 and all(Path(unquote(urlparse(h).path)).is_file() for h in hrefs)
        first = min(selected)  # the fixture's neuron-ablation plot
        b.js(f"location.hash = '#toy/pics/more/n{first}'")
        b.wait_js(
            f"(() => {{ const c = document.getElementById('toy/pics/more/n{first}'); const i = c && c.querySelector('figure.ablation img'); "
            "if (!i) return false; i.scrollIntoView(); return i.complete && i.naturalWidth > 0; })()"
        )
        b.js(f"location.hash = '#toy/pics/more/n{n}'")
        b.wait_js(f"document.getElementById('toy/pics/more/n{n}') !== null")
        # hostile concept text is shown as text, never parsed: no injected element, no alert
        texts = b.js(f"Array.from({card}.querySelectorAll('td.concept')).map(e => e.textContent)")
        assert word in texts
        assert b.js("document.querySelectorAll('img[src=\"x\"]').length") == 0
        assert b.js("document.querySelectorAll('script').length") == 2
        # the AR bar width is the AR
        hyp = next(c for x in run0["hypotheses"][n] for c in x["concepts"] if c["text"] == word)
        assert hyp  # present in the card
        screenshot(b, tmp_path / "report_card.png")

        # deep link to a card on the second page of another section, and the sort buttons
        b.send("Page.navigate", url="about:blank")
        b.wait_event("Page.loadEventFired")
        last = max(planted["runs"][("toy", "pics", "words")]["selected"])
        b.send("Page.navigate", url=(out / "index.html").as_uri() + f"#toy/pics/words/n{last}")
        b.wait_event("Page.loadEventFired")
        b.wait_js("document.querySelector('.card:target') !== null")
        assert b.js("document.querySelector('.card:target').dataset.neuron") == str(last)
        assert (
            b.js("document.querySelector('.run-tab[aria-pressed=\"true\"]').textContent")
            == "toy / pics / words"
        )
        # the page's links to the run's files resolve to existing files (relative: ../toy/pics/...)
        hrefs = b.js("Array.from(document.querySelectorAll('p.files a, .note a')).map(a => a.href)")
        assert len(hrefs) >= 8 and all(Path(unquote(urlparse(h).path)).is_file() for h in hrefs), hrefs
        b.js("document.querySelectorAll('#neurons thead button.sort')[1].click()")  # ratio, descending
        first = b.js("document.querySelector('#neurons tbody tr').dataset.neuron")
        ratios = {r["id"]: r["ratio"] for r in data["runs"][1]["neurons"]}
        assert ratios[first] == max(ratios.values(), key=lambda v: float("inf") if v == "inf" else v)

        problems = b.problems()
        assert not problems, problems
    finally:
        b.close()
    assert (tmp_path / "report_top.png").stat().st_size > 10_000
    assert (tmp_path / "report_card.png").stat().st_size > 10_000


def screenshot(b: Browser, path: Path) -> None:
    """Save the viewport as PNG (also into $SIEVE_SCREENSHOT_DIR, to look at it)."""
    png = base64.b64decode(b.send("Page.captureScreenshot", format="png")["data"])
    path.write_bytes(png)
    if os.environ.get("SIEVE_SCREENSHOT_DIR"):
        Path(os.environ["SIEVE_SCREENSHOT_DIR"], path.name).write_bytes(png)


@needs_chromium
def test_2048_neurons_stay_usable(tmp_path: Path) -> None:
    make_results(
        tmp_path, n_neurons=2048, n_images=40, baseline=False, truth=False, grid_size=(96, 40), top_n=4
    )
    out = tmp_path / "results" / "report"
    build_report(
        out / "index.html",
        out / "assets",
        models=["toy"],
        probes=["pics"],
        concept_sets=["words"],
        results=tmp_path / "results",
        benchmarks=tmp_path / "benchmarks",
    )
    b = Browser(tmp_path)
    try:
        for domain in ("Runtime", "Log", "Page"):
            b.send(f"{domain}.enable")
        t = time.perf_counter()
        b.send("Page.navigate", url=(out / "index.html").as_uri())
        b.wait_event("Page.loadEventFired")
        b.wait_js("document.querySelectorAll('#neurons tbody tr').length === 50")
        assert time.perf_counter() - t < 10
        assert "page 1 / 41" in b.js("document.getElementById('pager').textContent")
        assert b.js("document.querySelectorAll('.card').length") <= 50
        # only the cards of the rows on screen exist: not the run's 683 grids and thousands of generated images
        assert b.js("document.images.length") < 300
        t = time.perf_counter()
        b.js("document.getElementById('search').focus()")
        b.send("Input.insertText", text="2047")
        b.wait_js("document.querySelectorAll('#neurons tbody tr').length === 1")
        assert b.js("document.querySelector('#neurons tbody tr').dataset.neuron") == "2047"
        assert time.perf_counter() - t < 5
        problems = b.problems()
        assert not problems, problems
    finally:
        b.close()
