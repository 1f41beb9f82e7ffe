"""A local HTTP server standing in for Slack and PagerDuty webhooks in the tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """An HTTP server in a thread that records every JSON body POSTed to it.

    `fail_first` requests are answered 503 (counted in `attempts`, not in `received`), like a webhook
    endpoint during an outage.
    """

    def __init__(self, fail_first: int = 0) -> None:
        received: list[tuple[str, dict]] = []
        attempts: list[str] = []
        owner = self
        self.fail_first = fail_first

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                attempts.append(self.path)
                if owner.fail_first > 0:
                    owner.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    self.wfile.write(b"unavailable")
                    return
                received.append((self.path, json.loads(body)))
                self.send_response(202 if self.path == "/pd" else 200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.received = received
        self.attempts = attempts
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def by_path(self, path: str) -> list[dict]:
        return [body for p, body in self.received if p == path]

    def pages(self, action: str | None = None) -> list[dict]:
        return [b for b in self.by_path("/pd") if action is None or b["event_action"] == action]
