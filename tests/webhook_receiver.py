"""A loopback webhook endpoint for alert tests (what on-call's pager would receive)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import free_port


class Receiver:
    """A loopback webhook endpoint that records every POST body (what on-call's pager would get)."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        received = self.bodies

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append(json.loads(raw or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):  # quiet
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def wait(self, n: int, timeout: float) -> list[dict]:
        deadline = time.time() + timeout
        while time.time() < deadline and len(self.bodies) < n:
            time.sleep(0.25)
        return list(self.bodies)

    def close(self) -> None:
        self.server.shutdown()
