"""A Prefect worker of the compose stack, named after its container and taken off the pool's list when it stops.

    python worker.py POOL [prefect worker start options...]

Names: scaled replicas share one service definition, so nothing in their environment tells them
apart but the host name, a container id. Docker's DNS server answers a reverse lookup of the
container's address with its name (`churn-worker-2.churn_default`), which is what `docker compose
ps` and `docker logs` show; the hosts file, which the C library reads first, only knows the id, so
the query goes to Docker's DNS directly. A container that restarts keeps its name, so the pool
lists it once.

Stopping (`docker compose stop`, `up --scale worker=N` with fewer): SIGTERM is passed on twice
(a Prefect worker that has run flows forwards the first one to them and stops on the second), then
the worker is deleted from the pool, where the UI would otherwise list it as Offline for ever.
A killed container (SIGKILL) cannot do that; it keeps its entry until it restarts under the same name.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading

DOCKER_DNS = ("127.0.0.11", 53)  # Docker's embedded DNS server on user-defined networks
PTR = 12


def _encode_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"


def _read_name(msg: bytes, offset: int) -> tuple[str, int]:
    """A domain name at `offset` (following compression pointers) and the offset after it."""
    labels = []
    while msg[offset]:
        if msg[offset] & 0xC0 == 0xC0:
            pointer = struct.unpack(">H", msg[offset : offset + 2])[0] & 0x3FFF
            return ".".join([*labels, _read_name(msg, pointer)[0]]), offset + 2
        length = msg[offset]
        labels.append(msg[offset + 1 : offset + 1 + length].decode())
        offset += 1 + length
    return ".".join(labels), offset + 1


def reverse_lookup(ip: str, server: tuple[str, int] = DOCKER_DNS, timeout: float = 2.0) -> str | None:
    """The first PTR answer `server` gives for `ip` (one UDP query), or None."""
    query_id = random.randrange(1 << 16)
    qname = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
    query = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + _encode_name(qname) + struct.pack(">HH", PTR, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query, server)
        msg = sock.recv(4096)
    answer_id, _, questions, answers = struct.unpack(">HHHH", msg[:8])
    if answer_id != query_id or answers == 0:
        return None
    offset = 12
    for _ in range(questions):
        offset = _read_name(msg, offset)[1] + 4  # name, type, class
    offset = _read_name(msg, offset)[1]
    rtype, _, _, _ = struct.unpack(">HHIH", msg[offset : offset + 10])
    return _read_name(msg, offset + 10)[0] if rtype == PTR else None


def container_name() -> str:
    """`churn-worker-2` from Docker's DNS; the host name where there is no answer (not in Docker)."""
    host = socket.gethostname()
    try:
        name = reverse_lookup(socket.gethostbyname(host))
    except OSError:
        name = None
    return name.split(".")[0] if name else host


def forget(pool: str, name: str) -> None:
    """Delete worker `name` from `pool` on the Prefect server (HTTP basic login from PREFECT_API_AUTH_STRING)."""
    import httpx

    user, _, password = os.environ.get("PREFECT_API_AUTH_STRING", "").partition(":")
    url = f"{os.environ['PREFECT_API_URL'].rstrip('/')}/work_pools/{pool}/workers/{name}"
    try:
        response = httpx.delete(url, auth=(user, password) if password else None, timeout=5)
        print(f"worker {name}: removed from pool {pool} (HTTP {response.status_code})", file=sys.stderr, flush=True)
    except httpx.HTTPError as exc:
        print(f"worker {name}: could not remove it from pool {pool}: {exc}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    pool, options = argv[1], argv[2:]
    name = container_name()
    print(f"worker {name}: pool {pool}", file=sys.stderr, flush=True)
    proc = subprocess.Popen(["prefect", "worker", "start", "--pool", pool, "--name", name, *options])

    def stop(signum: int, frame: object) -> None:
        proc.send_signal(signal.SIGTERM)
        threading.Timer(1.5, lambda: proc.poll() is None and proc.send_signal(signal.SIGTERM)).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = proc.wait()
    forget(pool, name)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
