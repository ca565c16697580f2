"""optuna-dashboard behind HTTP basic auth, on a read-only view of the Optuna storage.

The dashboard has no login of its own, so this serves its WSGI app through a small basic-auth
middleware (constant-time comparison). The storage URL comes from the environment, never the
command line, and its user may only SELECT (infra/mysql): the dashboard shows studies but cannot
change or delete them. `GET /health` answers without a login, for the container healthcheck.

    OPTUNA_DASHBOARD_STORAGE   mysql+pymysql://optuna_reader:...@mysql:3306/optuna
    OPTUNA_DASHBOARD_USER      login (default churn)
    OPTUNA_DASHBOARD_PASSWORD  password
"""

from __future__ import annotations

import argparse
import base64
import hmac
import os
import sys
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def basic_auth(app: WSGIApp, user: str, password: str, realm: str = "optuna-dashboard") -> WSGIApp:
    """Wrap `app`: 401 with a browser login prompt unless the request carries `user:password`."""
    expected = base64.b64encode(f"{user}:{password}".encode()).decode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/health":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        scheme, _, given = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() == "basic" and hmac.compare_digest(given.strip().encode(), expected.encode()):
            return app(environ, start_response)
        start_response("401 Unauthorized", [("WWW-Authenticate", f'Basic realm="{realm}"'), ("Content-Type", "text/plain")])
        return [b"login required"]

    return guarded


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if str(code) != "200":  # one line per refused or failed request, not per poll
            super().log_request(code, size)


def main(argv: list[str]) -> int:
    import optuna
    from optuna_dashboard import wsgi

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    storage = optuna.storages.RDBStorage(os.environ["OPTUNA_DASHBOARD_STORAGE"], skip_table_creation=True)
    app = basic_auth(wsgi(storage), os.environ.get("OPTUNA_DASHBOARD_USER", "churn"), os.environ["OPTUNA_DASHBOARD_PASSWORD"])
    with make_server(args.host, args.port, app, server_class=_ThreadingServer, handler_class=_QuietHandler) as server:
        print(f"optuna-dashboard on http://{args.host}:{args.port} (basic auth, read-only storage user)", flush=True)
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
