"""A JSON-over-HTTP server on 127.0.0.1 for tests of remote services (reward servers): subclass it, answer POSTs.

class Scorer(JSONServer):
    def answer(self, path, payload, headers):
        return 200, 1.0

with Scorer() as server:
    ...  # POST JSON to server.url + "/score"
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JSONServer(ThreadingHTTPServer):
    """Serves in a background thread while used as a context manager; ``answer`` gives each POST's status and
    JSON value. Handlers run in threads of their own, so ``answer`` may sleep (a hanging server)."""

    daemon_threads = True  # a hanging handler must not keep the process alive

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()  # for subclasses' state: requests are answered concurrently

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, path: str, payload: Any, headers: Any) -> tuple[int, Any]:
        """The HTTP status and JSON value to send for a POST of ``payload`` (parsed JSON) to ``path``."""
        raise NotImplementedError

    def __enter__(self) -> "JSONServer":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: JSONServer

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status, value = self.server.answer(self.path, payload, self.headers)
        body = json.dumps(value).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on a slow answer
