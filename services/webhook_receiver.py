"""A tiny webhook receiver: records every POST so tests can assert which alerts were sent.

Stands in for a chat tool or a pager in the local tests and the compose stack, where nothing
outside may be called. Standard library only, so it runs in any image with Python.

    python services/webhook_receiver.py [--host H] [--port P] [--log FILE]

Environment (flags win): WEBHOOK_RECEIVER_HOST (default 0.0.0.0), WEBHOOK_RECEIVER_PORT (8080;
0 picks a free port), WEBHOOK_RECEIVER_LOG (optional JSON-lines file; calls already in it are
loaded at start, so a restart loses none). On start it prints `listening on http://HOST:PORT`.

- POST <any path>: recorded as {"received_at", "path", "content_type", "body"} (body parsed as
  JSON when it is JSON, else the text); answers 200 {"recorded": n}.
- GET /calls: every recorded call, oldest first, as a JSON list.
- GET /health: 200 "ok" (for healthchecks).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class CallLog:
    """The recorded calls, in memory and (optionally) appended to a JSON-lines file."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._calls: list[dict] = []
        if path is not None and path.exists():
            self._calls = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def record(self, call: dict) -> int:
        with self._lock:
            self._calls.append(call)
            if self._path is not None:
                with self._path.open("a") as fh:
                    fh.write(json.dumps(call) + "\n")
            return len(self._calls)

    def all(self) -> list[dict]:
        with self._lock:
            return list(self._calls)


def _parse_body(raw: bytes) -> object:
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


class _Handler(BaseHTTPRequestHandler):
    calls: CallLog  # set on the subclass made by make_server

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        call = {
            "received_at": datetime.now(UTC).isoformat(),
            "path": self.path,
            "content_type": self.headers.get("Content-Type"),
            "body": _parse_body(self.rfile.read(length)),
        }
        self._reply(200, {"recorded": self.calls.record(call)})

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/calls":
            self._reply(200, self.calls.all())
        elif self.path == "/health":
            self._reply(200, "ok")
        else:
            self._reply(404, {"error": f"no such path {self.path}; try /calls or /health"})

    def _reply(self, status: int, payload: object) -> None:
        body = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        """One line per request on stderr, as docker logs expect."""
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def make_server(host: str, port: int, log_path: Path | None = None) -> ThreadingHTTPServer:
    """A receiver bound to host:port (0: a free port; read it from `server.server_address`)."""
    handler = type("Handler", (_Handler,), {"calls": CallLog(log_path)})
    return ThreadingHTTPServer((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("WEBHOOK_RECEIVER_HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("WEBHOOK_RECEIVER_PORT", "8080")))
    parser.add_argument("--log", type=Path, default=os.environ.get("WEBHOOK_RECEIVER_LOG") or None)
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, args.log)
    # as PID 1 in a container SIGTERM is ignored unless handled: `docker compose stop` would wait 10 s
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
