"""report.html in headless Chromium: it renders (every section, decoded images) and fetches nothing.

Needs the Debian package `chromium`; skipped with a message when it is absent. Chromium runs with
its network pointed at a local recording proxy (and name resolution disabled), so any request the
page made would be caught, not sent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socketserver
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest

from orchestrator.rundir import RunDir

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install -y chromium)")
SECTIONS = ["question", "answer", "findings", "circuit", "evidence", "tried", "budget"]
PROBE = """<script>
window.addEventListener("load", () => {
  const out = {
    images: [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
    sections: [...document.querySelectorAll("section")].map(s => [s.id, s.getBoundingClientRect().height]),
    height: document.documentElement.scrollHeight,
    resources: performance.getEntriesByType("resource").map(r => r.name),
  };
  document.body.setAttribute("data-probe", JSON.stringify(out));
});
</script>"""


# Chromium's own services (component updater, sign-in, network time): it calls them even with
# --disable-background-networking. They reach only the recorder and are not requests of the page.
BROWSER_HOSTS = re.compile(r"(^|\.)(google\.com|googleapis\.com|gvt1\.com|gstatic\.com)$")


def _host(request_line: str) -> str:
    """The host of 'GET http://host/path HTTP/1.1' or 'CONNECT host:443 HTTP/1.1'."""
    target = request_line.split()[1] if len(request_line.split()) > 1 else ""
    target = target.split("://", 1)[-1]
    return target.split("/", 1)[0].rsplit(":", 1)[0]


class _Recorder(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self) -> None:
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    def page_requests(self) -> list[str]:
        return [r for r in self.requests if not BROWSER_HOSTS.search(_host(r))]


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline(4096).decode("latin-1").strip()
        if line:
            self.server.requests.append(line)  # type: ignore[attr-defined]
        self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    server = _Recorder()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def chromium(tmp: Path, proxy_port: int, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", f"--user-data-dir={tmp / 'profile'}",
        f"--proxy-server=http://127.0.0.1:{proxy_port}", "--proxy-bypass-list=<-loopback>",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--virtual-time-budget=5000",
    ]
    # `python -m tests` preloads OpenBLAS for MLX; Chromium's zygote dies with it preloaded.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    proc = subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_report_renders_offline_with_every_section_and_fetches_nothing(default_run: RunDir, tmp_path: Path,
                                                                      recorder: _Recorder) -> None:
    page = (default_run.root / "report.html").read_text(encoding="utf-8")
    # A probe copy (CSP removed so its script may run) measures what Chromium actually laid out.
    probe = tmp_path / "probe.html"
    probe.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page).replace("</body>", PROBE + "</body>"))
    dom = chromium(tmp_path, recorder.server_address[1], "--dump-dom", probe.as_uri()).stdout
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, "the probe did not run: " + dom[:500]
    data = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert [s for s, _ in data["sections"]] == SECTIONS
    assert all(height > 40 for _, height in data["sections"]), data["sections"]
    assert len(data["images"]) >= 10 and all(ok and w > 200 and h > 150 for ok, w, h in data["images"]), data["images"]
    assert data["resources"] == []

    # The real file, as a person opens it: a screenshot of the whole page.
    shot = tmp_path / "report.png"
    height = min(int(data["height"]) + 20, 16000)
    chromium(tmp_path, recorder.server_address[1], f"--window-size=1280,{height}", f"--screenshot={shot}",
             (default_run.root / "report.html").as_uri())
    assert shot.is_file() and shot.stat().st_size > 100_000
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1280, height)
        colours = img.convert("RGB").resize((320, height // 4)).getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 500  # plots drawn, not a blank page
    assert recorder.page_requests() == [], f"the report tried to fetch: {recorder.page_requests()}"
    if os.environ.get("REPORT_SCREENSHOT"):  # keep it for a person to look at
        shutil.copyfile(shot, os.environ["REPORT_SCREENSHOT"])


def test_the_recording_proxy_would_catch_a_fetch(tmp_path: Path, recorder: _Recorder) -> None:
    """Control: without it, an empty request list could just mean the proxy was never used."""
    page = tmp_path / "leaky.html"
    page.write_text('<!doctype html><img src="http://report-test.invalid/x.png"><p>x</p>')
    chromium(tmp_path, recorder.server_address[1], "--dump-dom", page.as_uri())
    assert [_host(r) for r in recorder.page_requests()] == ["report-test.invalid"], recorder.requests
