"""Drive headless Chromium through the Chrome DevTools Protocol over a pipe.

Chromium's --remote-debugging-pipe reads protocol messages from its fd 3 and
writes them to its fd 4, each JSON message ended by a NUL byte. That needs
nothing but the standard library: no websocket client, no npm package, no
browser download. Used by tests/browser and bench/html_bench.py.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("SESSREC_CHROMIUM", "/usr/bin/chromium")

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    "--remote-debugging-pipe",
)


class CDPError(RuntimeError):
    pass


class Chromium:
    """One headless Chromium with one page attached (flattened session)."""

    def __init__(self, width: int = 1600, height: int = 1000, executable: str = CHROMIUM):
        self.profile = tempfile.mkdtemp(prefix="sessrec-chromium-")
        self.log_path = os.path.join(self.profile, "chromium.log")
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        # Move the child's ends above 9 so the dup2s to 3 and 4 cannot collide.
        hi_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD_CLOEXEC, 10)
        hi_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_child_r)
        os.close(from_child_w)
        argv = [executable, *FLAGS, f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}", "about:blank"]
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, self.log_path, os.O_WRONLY | os.O_CREAT, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
            (os.POSIX_SPAWN_DUP2, hi_r, 3),
            (os.POSIX_SPAWN_DUP2, hi_w, 4),
        ]
        try:
            self.pid = os.posix_spawn(executable, argv, dict(os.environ), file_actions=actions,
                                      setsid=True)
        finally:
            os.close(hi_r)
            os.close(hi_w)
        self._out = to_child_w
        self._in = from_child_r
        self._next_id = 0
        self._lock = threading.Lock()
        self._replies: dict[int, queue.Queue[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._event_cv = threading.Condition()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        self.session: str | None = None
        self.width, self.height = width, height
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.call("Target.attachToTarget",
                             {"targetId": target["targetId"], "flatten": True}, session=False)
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    # --- the pipe ---

    def _read_loop(self) -> None:
        buf = b""
        while True:
            try:
                data = os.read(self._in, 1 << 20)
            except OSError:
                data = b""
            if not data:
                with self._event_cv:
                    self._event_cv.notify_all()
                for q in list(self._replies.values()):
                    q.put({"error": {"message": "Chromium closed the pipe"}})
                return
            buf += data
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    q = self._replies.get(msg["id"])
                    if q is not None:
                        q.put(msg)
                else:
                    with self._event_cv:
                        self.events.append(msg)
                        self._event_cv.notify_all()

    def call(self, method: str, params: dict[str, Any] | None = None, *,
             session: bool = True, timeout: float = 60) -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            mid = self._next_id
            q: queue.Queue[dict[str, Any]] = queue.Queue()
            self._replies[mid] = q
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session and self.session is not None:
            msg["sessionId"] = self.session
        data = json.dumps(msg).encode() + b"\0"
        view = memoryview(data)
        while view:
            n = os.write(self._out, view)
            view = view[n:]
        try:
            reply = q.get(timeout=timeout)
        except queue.Empty:
            raise CDPError(f"{method}: no reply within {timeout} s") from None
        finally:
            self._replies.pop(mid, None)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error'].get('message')}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def wait_event(self, method: str, timeout: float = 60,
                   since: int = 0) -> dict[str, Any]:
        """The first event named method at or after index since."""
        deadline = time.monotonic() + timeout
        with self._event_cv:
            while True:
                for ev in self.events[since:]:
                    if ev.get("method") == method:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CDPError(f"no {method} within {timeout} s")
                self._event_cv.wait(left)

    # --- conveniences ---

    def evaluate(self, expression: str, *, await_promise: bool = False,
                 timeout: float = 60) -> Any:
        r = self.call("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": await_promise,
        }, timeout=timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text")
            raise CDPError(f"evaluate {expression[:60]!r}: {text}")
        return r["result"].get("value")

    def navigate(self, url: str, timeout: float = 60) -> int:
        """Open url and wait for its load event; return the index of the first
        event of this navigation in self.events."""
        with self._event_cv:
            mark = len(self.events)
        r = self.call("Page.navigate", {"url": url}, timeout=timeout)
        if r.get("errorText"):
            raise CDPError(f"navigate {url}: {r['errorText']}")
        self.wait_event("Page.loadEventFired", timeout, since=mark)
        return mark

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 60,
                 interval: float = 0.01) -> float:
        """Poll predicate until true; return the seconds it took."""
        t0 = time.monotonic()
        while not predicate():
            if time.monotonic() - t0 > timeout:
                raise CDPError(f"condition not met within {timeout} s")
            time.sleep(interval)
        return time.monotonic() - t0

    def click(self, x: float, y: float, count: int = 1) -> None:
        """A left click at (x, y); count=2: a double click."""
        for n in range(1, count + 1):
            for kind in ("mousePressed", "mouseReleased"):
                self.call("Input.dispatchMouseEvent", {
                    "type": kind, "x": x, "y": y, "button": "left", "clickCount": n})

    def click_selector(self, selector: str, count: int = 1) -> None:
        """Click the middle of the first element matching selector."""
        box = self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        self.click(box[0], box[1], count)

    def type_text(self, selector: str, text: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", {"text": text})

    def screenshot(self, path: str | os.PathLike[str]) -> None:
        r = self.call("Page.captureScreenshot", {"format": "png"})
        Path(path).write_bytes(base64.b64decode(r["data"]))

    def problems(self, since: int = 0) -> list[str]:
        """Console errors and warnings, exceptions and error log entries."""
        out = []
        with self._event_cv:
            events = list(self.events[since:])
        for ev in events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append("exception: " + (d.get("exception", {}).get("description")
                                            or d.get("text", "")))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning",
                                                                        "assert"):
                out.append(f"console.{p['type']}: " + " ".join(
                    str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(f"log {p['entry']['source']}: {p['entry']['text']}")
        return out

    def requests(self, since: int = 0) -> list[str]:
        """URLs of every request the page started (or tried to)."""
        with self._event_cv:
            events = list(self.events[since:])
        return [ev["params"]["request"]["url"] for ev in events
                if ev.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False, timeout=5)
        except (CDPError, OSError):
            pass
        for _ in range(50):
            pid, _status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
        else:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
        os.close(self._out)
        os.close(self._in)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
