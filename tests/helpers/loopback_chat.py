"""An OpenAI-compatible ``/v1/chat/completions`` endpoint on 127.0.0.1 for tests of the chat clients (key steps,
the interactive teacher): it records every request and replies with a fixed message."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackChatServer:
    """Replies ``reply`` to every POST, after ``failures`` HTTP 500 replies (or 500 forever with ``always_fail``).

    Each request is recorded as ``{"path", "auth", "body"}`` (``auth``: the Authorization header, or ``None``).
    """

    def __init__(self, reply: str, failures: int = 0):
        self.reply = reply
        self.requests: list[dict] = []
        self.failures = failures
        self.always_fail = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if server.always_fail or server.failures > 0:
                    server.failures -= 1
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"overloaded")
                    return
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": server.reply}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
