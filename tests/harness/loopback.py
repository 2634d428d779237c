"""HTTP servers on 127.0.0.1 for tests: a handler served on a free port from a daemon thread."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that keeps its access log off the test's stderr."""

    def log_message(self, format, *args):
        pass


class Loopback:
    """Serves `handler` on 127.0.0.1 (`port`, `url`) until `close`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Receiver(Loopback):
    """Records POSTed JSON per path; /broken/... always answers 500."""

    def __init__(self):
        self.received: dict[str, list[dict]] = {}
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.setdefault(self.path, []).append(body)
                self.send_response(500 if self.path.startswith("/broken") else 200)
                self.end_headers()

        super().__init__(Handler)
