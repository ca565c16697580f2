"""Container healthcheck without curl: `python /app/services/healthcheck.py URL [EXPECTED_BODY]`.

Exit 0 when URL answers 2xx (and, if given, the body stripped equals EXPECTED_BODY), else 1.
"""

import sys
import urllib.request


def main(argv: list[str]) -> int:
    url = argv[1]
    expected = argv[2] if len(argv) > 2 else None
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = resp.read(4096).decode("utf-8", "replace").strip()
            ok = 200 <= resp.status < 300 and (expected is None or body == expected)
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if not ok:
        print(f"unhealthy: {url}: body {body[:80]!r}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
