"""One place that knows what a secret looks like: masking for anything printed, logged or stored.

Config values routinely carry credentials (database URLs with passwords, S3 keys). Everything
that leaves a process — log lines, error messages, MLflow params, stored configs, Prefect
flow-run parameters — goes through these functions, so there is one rule and one test.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

MASK = "***"
# key names whose values are secrets whatever they look like
SECRET_KEY_PARTS = ("password", "secret", "token", "access_key", "auth_string", "webhook")  # a webhook URL is a bearer token
# scheme://user:password@ — greedy up to the last "@" before the path, so an unencoded "@" in the
# password is masked too
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<password>[^\s/]+)@")


def url_password(url: str) -> str:
    """The password of `scheme://user:password@host...`, or ''."""
    match = _URL_PASSWORD.search(url)
    return match.group("password") if match else ""


def mask_url(text: str) -> str:
    """Every `scheme://user:secret@` in `text` becomes `scheme://user:***@` (URLs inside longer text too)."""
    return _URL_PASSWORD.sub(rf"\g<head>{MASK}@", text)


def is_secret_key(key: str) -> bool:
    return any(part in key.lower() for part in SECRET_KEY_PARTS)


def has_secret(key: str, value: Any) -> bool:
    """A config value that must not travel as a parameter: a secret-named key or a URL with a password."""
    if value is None or value == "":
        return False
    return is_secret_key(key) or (isinstance(value, str) and bool(url_password(value)))


def mask_value(key: str, value: Any) -> Any:
    """`value` as it may be shown: secret-named keys fully masked, passwords in URLs masked."""
    if is_secret_key(key) and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, Mapping):
        return mask_mapping(value)
    if isinstance(value, list):
        return [mask_value(key, v) for v in value]
    return value


def mask_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """A nested mapping (a config dump) with every secret masked; the structure is kept."""
    return {key: mask_value(str(key), value) for key, value in data.items()}


def secret_paths(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, value) of every secret-bearing leaf of a nested mapping."""
    for key, value in data.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping):
            yield from secret_paths(value, path)
        elif has_secret(str(key), value):
            yield path, value


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with URL passwords masked and every known secret value replaced (for log tails)."""
    text = mask_url(text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text
