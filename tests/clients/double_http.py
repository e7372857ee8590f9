"""What every provider test double shares: a threaded HTTP server on a free loopback
port whose handler answers JSON, and start / close."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JsonHandler(BaseHTTPRequestHandler):
    """Base handler: HTTP/1.1, quiet, `send_json`, and `read_body` (raw bytes)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length", "0")))

    def send_json(self, status: int, payload, content_type: str = "application/json"):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_events(self, content_type: str = "text/event-stream"):
        """Headers of a server-sent-event answer that ends when the connection closes."""
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True


class DoubleServer:
    """Serves `handler` on 127.0.0.1 (a free port) until `close`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
