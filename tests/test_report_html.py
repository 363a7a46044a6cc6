"""The HTML report (`snakemake --report`) carries every week's tables, claims and report.md, grouped by
week and captioned from the week file, beside the figures.

A small real workdir: the kept H100 Week 3 Parquet stands in for stage 3's output
(results/week03/_extract/metrics.parquet), and Snakemake runs stage 4 for real on it
(``--allowed-rules aggregate_week week03_all``: no engine, no cell records needed), so the report has
the job's metadata. Then ``snakemake --report report.html`` and two checks: the report's embedded data
(a table's page holds the Parquet's numbers, its caption the week file's title and notes), and the
page rendered in headless Chromium (driven over the DevTools protocol on a pipe), clicked as a reader
would: week03 -> tables -> the eye of decode_per_token, whose table text must be visible.
"""

import base64
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT

SNAKEMAKE = Path(sys.executable).parent / "snakemake"
KEPT = ROOT / "docs/validation/h100-week03/week03.parquet"


def smk(work: Path, *args):
    cmd = [
        str(SNAKEMAKE),
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(work),
        "--cores",
        "1",
        "--configfile",
        str(work / "preset.yaml"),
        "--replace-workflow-config",
        "--allowed-rules",
        "aggregate_week",
        "week03_all",
        *args,
        "--",
        "week03_all",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    w = tmp_path_factory.mktemp("report")
    p = yaml.safe_load((ROOT / "config" / "h100-validation.yaml").read_text())
    p["catalog"] = str(ROOT / "config")
    p["engine_identity"] = False
    (w / "preset.yaml").write_text(yaml.safe_dump(p))
    extract = w / "results" / "week03" / "_extract"
    extract.mkdir(parents=True)
    shutil.copy(KEPT, extract / "metrics.parquet")
    out = smk(w)
    assert "aggregate_week" in out
    smk(w, "--report", "report.html")
    return w


def embedded(html: str, name: str):
    """A JS variable the report embeds as JSON (``var results = {...};``)."""
    m = re.search(rf'<script id="{name}">\s*var {name} = (.*?);?\s*</script>', html, re.S)
    assert m, name
    return json.loads(m.group(1))


def data_of(entry: dict) -> str:
    return base64.b64decode(entry["data_uri"].split("base64,", 1)[1]).decode()


def test_report_has_the_tables_claims_and_page_grouped_by_week(work):
    html = (work / "report.html").read_text()
    categories = embedded(html, "categories")
    results = embedded(html, "results")
    assert set(categories) == {"week03"}
    groups = categories["week03"]
    assert set(groups) == {"tables", "figures", "claims", "report"}
    tables = {Path(p).name for p in groups["tables"]}
    # every table stage 4 wrote is in the report
    written = {p.name for p in (work / "results" / "week03" / "tables").glob("*.html")}
    assert tables == written
    assert {"decode_per_token.html", "prefill_latency.html", "comparison_h100.html", "ridge.html"} <= tables
    assert {Path(p).name for p in groups["figures"]} == {"decode_batch_sweep.png", "prefill_length_sweep.png"}
    assert groups["report"] == ["results/week03/report.md"]

    # a table: its page holds the Parquet's numbers; its caption the week file's title and notes
    key = "results/week03/tables/decode_per_token.html"
    entry = results[key]
    assert entry["mime_type"] == "text/html" and entry["labels"] == {"table": "decode_per_token", "week": "week03"}
    page = data_of(entry)
    df = pd.read_parquet(KEPT)
    v = df[(df.cell == "bs512") & (df.metric == "latency_per_output_token")]["value"].iloc[0]
    assert f'<td class="num">{v:.2f}</td>' in page  # 42.83
    assert "<th>bs=512</th>" in page and "Decode batch sweep: per-output-token latency (ms/token)" in page
    assert "Decode batch sweep: per-output-token latency (ms/token)" in entry["caption"]
    assert "Per-token latency = latency_avg / output_len" in entry["caption"]
    # the page links its CSV (the same rows as tables/decode_per_token.csv)
    csv = re.search(r'download="decode_per_token.csv" href="data:text/csv;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(csv).decode() == (work / "results/week03/tables/decode_per_token.csv").read_text()
    # a for_each table's caption is filled from the run's matrix
    assert "h100: this pipeline vs the course" in results["results/week03/tables/comparison_h100.html"]["caption"]
    # the figures keep their captions (a literal AI*, not reStructuredText emphasis)
    fig = results["results/week03/figures/decode_batch_sweep.png"]["caption"]
    assert "AI* = peak FLOP/s / HBM bandwidth" in fig and "system-message" not in fig

    # the claims: the kept H100 verdicts
    claims = data_of(results["results/week03/claims.html"])
    assert "prefill_floor_short_inputs" in claims and '<td class="disagrees">disagrees</td>' in claims
    assert claims.count('<td class="agrees">agrees</td>') == 3
    assert "single run, no CI" in results["results/week03/claims.html"]["caption"]
    # the week's page
    assert "## Claims" in data_of(results["results/week03/report.md"])


# -- headless Chromium over the DevTools protocol (--remote-debugging-pipe: fd 3 in, fd 4 out) --------
class Chromium:
    def __init__(self, exe: str):
        r_cmd, w_cmd = os.pipe()
        r_out, w_out = os.pipe()
        self.profile = tempfile.mkdtemp()
        args = [
            exe,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--remote-debugging-pipe",
            f"--user-data-dir={self.profile}",
            "--window-size=1400,1000",
            "about:blank",
        ]

        def fds():
            os.dup2(r_cmd, 3)
            os.dup2(w_out, 4)

        self.proc = subprocess.Popen(
            args, pass_fds=(3, 4), preexec_fn=fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        os.close(r_cmd)
        os.close(w_out)
        self.w, self.r = w_cmd, r_out
        self.buf, self.id, self.events = b"", 0, []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30):
        self.id += 1
        msg = {"id": self.id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        while True:
            m = self._recv(end)
            if m.get("id") == self.id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]
            self.events.append(m)

    def _recv(self, end: float) -> dict:
        while b"\0" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium")
            if select.select([self.r], [], [], left)[0]:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    raise EOFError("Chromium closed the pipe")
                self.buf += chunk
        m, self.buf = self.buf.split(b"\0", 1)
        return json.loads(m)

    def wait_event(self, name: str, timeout: float = 30) -> dict:
        end = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.events):
                if m.get("method") == name:
                    return self.events.pop(i)
            self.events.append(self._recv(end))

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, EOFError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self.w)
        os.close(self.r)
        shutil.rmtree(self.profile, ignore_errors=True)


def until(fn, timeout: float = 10):
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > end:
            return v
        time.sleep(0.1)


def test_a_table_is_visible_in_the_rendered_report(work):
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium); the data checks above still ran")
    c = Chromium(exe)
    try:
        t = c.send("Target.createTarget", {"url": "about:blank"})
        s = c.send("Target.attachToTarget", {"targetId": t["targetId"], "flatten": True})["sessionId"]
        c.send("Page.enable", session=s)
        c.send("Page.navigate", {"url": (work / "report.html").as_uri()}, session=s)
        c.wait_event("Page.loadEventFired")

        def js(expr, context=None):
            p = {"expression": expr, "returnByValue": True}
            if context is not None:
                p["contextId"] = context
            return c.send("Runtime.evaluate", p, session=s)["result"].get("value")

        def click(text_, selector="a"):
            return js(
                f"(() => {{ const a = [...document.querySelectorAll({json.dumps(selector)})]"
                f".find(x => x.innerText.trim() === {json.dumps(text_)}); if (!a) return false; a.click(); return true; }})()"
            )

        # the menu: Results -> week03 -> tables, as a reader clicks
        assert until(lambda: click("Results")), js("document.body.innerText")
        assert until(lambda: click("week03")), js("document.body.innerText")
        assert until(lambda: click("tables")), js("document.body.innerText")
        assert until(lambda: "decode_per_token" in js("document.body.innerText"))
        names = js("document.body.innerText")
        for name in ("comparison_h100", "decode_per_token", "prefill_latency", "ridge", "decode_floor"):
            assert name in names
        # the eye of the decode_per_token row shows the table in place
        shown = js(
            "(() => { const tr = [...document.querySelectorAll('tr')].find(r => r.innerText.includes('decode_per_token'));"
            " if (!tr) return false; tr.querySelector('a').click(); return true; })()"
        )
        assert shown
        box = until(
            lambda: js(
                "(() => { const f = document.querySelector('iframe'); return f && f.getBoundingClientRect().width; })()"
            )
        )
        assert box and box > 300
        frames = until(lambda: c.send("Page.getFrameTree", session=s)["frameTree"].get("childFrames"))
        assert frames, "the table is not shown in a frame"
        world = c.send("Page.createIsolatedWorld", {"frameId": frames[0]["frame"]["id"]}, session=s)
        ctx = world["executionContextId"]
        text_ = until(lambda: js("document.body && document.body.innerText", ctx))
        # innerText is what is rendered: the title, the header, the numbers of the Parquet
        assert "Decode batch sweep: per-output-token latency (ms/token)" in text_
        assert "bs=512" in text_ and "42.83" in text_ and "6.66" in text_
        assert (
            js(
                "(() => { const t = document.querySelector('table').getBoundingClientRect(); return t.width * t.height; })()",
                ctx,
            )
            > 0
        )
        # the info button shows the caption from the week file
        js(
            "(() => { const tr = [...document.querySelectorAll('tr')].find(r => r.innerText.includes('decode_per_token'));"
            " tr.querySelectorAll('a')[1].click(); return true; })()"
        )
        assert until(lambda: "Per-token latency = latency_avg / output_len" in js("document.body.innerText"))
    finally:
        c.close()
