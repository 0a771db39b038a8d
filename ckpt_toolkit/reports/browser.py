"""Open an HTML report in headless Chromium and report what a reader would see.

A small client of the Chrome DevTools protocol (over ``websocket-client``, which Jupyter already
depends on): it loads a ``file://`` page with the network disabled for the page's purposes,
collects console errors, uncaught exceptions and failed requests, and takes a PNG screenshot.
Used by the tests and by anyone checking that a report renders offline.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CkptError

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
)


class BrowserError(CkptError):
    """Chromium is missing or did not answer."""


@dataclass
class PageCheck:
    """What loading one page produced."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    network_requests: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    title: str = ""
    images: int = 0
    images_loaded: int = 0


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """A headless Chromium with a fresh profile, driven over the DevTools protocol.

    >>> with Chromium() as browser:                         # doctest: +SKIP
    ...     check = browser.check("reports/index.html")
    """

    def __init__(self, executable: str | None = None, width: int = 1200, height: int = 1600):
        self.executable = executable or find_chromium()
        if not self.executable:
            raise BrowserError("Chromium not found (Debian: apt-get install -y chromium)")
        self.width, self.height = width, height
        self._profile = tempfile.mkdtemp(prefix="ckpt-chromium-")
        self._proc: subprocess.Popen | None = None
        self._ws: Any = None
        self._id = 0
        self._events: list[dict[str, Any]] = []

    # -- process ----------------------------------------------------------------------------
    def __enter__(self) -> Chromium:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self, timeout: float = 60) -> None:
        """Launch Chromium and attach to its first page."""
        import urllib.request

        import websocket

        args = [
            self.executable,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={self._profile}",
            f"--window-size={self.width},{self.height}",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            "about:blank",
        ]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.exists() or not port_file.read_text().strip():
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace")[-2000:]
                raise BrowserError(f"Chromium exited ({self._proc.returncode}): {err}")
            if time.monotonic() > deadline:
                raise BrowserError("Chromium did not open its DevTools port in time")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.loads(r.read())
        page = next(t for t in targets if t.get("type") == "page")
        self._ws = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True
        )
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def close(self) -> None:
        """Stop Chromium and remove its profile."""
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:  # noqa: BLE001
                pass
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        shutil.rmtree(self._profile, ignore_errors=True)

    # -- protocol ---------------------------------------------------------------------------
    def send(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        """Call a DevTools method and return its result (events received meanwhile are kept)."""
        self._id += 1
        my_id = self._id
        self._ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self._ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self._events.append(msg)
        raise BrowserError(f"{method}: no answer within {timeout} s")

    def _wait_event(self, name: str, timeout: float) -> None:
        if any(e["method"] == name for e in self._events):
            return
        deadline = time.monotonic() + timeout
        self._ws.settimeout(timeout)
        while time.monotonic() < deadline:
            msg = json.loads(self._ws.recv())
            if "method" in msg:
                self._events.append(msg)
                if msg["method"] == name:
                    return
        raise BrowserError(f"page did not fire {name} within {timeout} s")

    # -- the check --------------------------------------------------------------------------
    def check(
        self, page: str | Path, settle: float = 0.5, timeout: float = 60, full_page: bool = False
    ) -> PageCheck:
        """Load ``page`` (a file path or URL), wait for it, collect errors and a screenshot
        (of the window, or with ``full_page`` of the whole page up to 12,000 px)."""
        url = page if isinstance(page, str) and "://" in page else Path(page).resolve().as_uri()
        self._events = []
        self.send("Page.navigate", url=url)
        self._wait_event("Page.loadEventFired", timeout)
        time.sleep(settle)
        info = self.send(
            "Runtime.evaluate",
            expression="JSON.stringify({title: document.title, "
            "images: document.images.length, "
            "loaded: Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0)"
            ".length})",
            returnByValue=True,
        )
        data = json.loads(info["result"]["value"])
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            self.send(
                "Emulation.setDeviceMetricsOverride",
                width=self.width,
                height=int(min(size["height"], 12000)),
                deviceScaleFactor=1,
                mobile=False,
            )
        shot = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        if full_page:
            self.send("Emulation.clearDeviceMetricsOverride")
        out = PageCheck(
            url=url,
            screenshot=base64.b64decode(shot["data"]),
            title=data["title"],
            images=data["images"],
            images_loaded=data["loaded"],
        )
        for e in self._events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.console_errors.append(
                    " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
                )
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.console_errors.append(
                    d.get("exception", {}).get("description") or d.get("text", "exception")
                )
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.console_errors.append(p["entry"].get("text", ""))
            elif m == "Network.loadingFailed":
                out.failed_requests.append(p.get("errorText", "") + " " + p.get("requestId", ""))
            elif m == "Network.requestWillBeSent":
                req_url = p.get("request", {}).get("url", "")
                if req_url.startswith(("http:", "https:", "ws:", "wss:")):
                    out.network_requests.append(req_url)
        return out


def distinct_colors(png: bytes) -> int:
    """How many distinct RGB colours a PNG screenshot holds (a blank page has one or two)."""
    import io

    import numpy as np
    from PIL import Image

    arr = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    return int(len(np.unique(arr, axis=0)))
