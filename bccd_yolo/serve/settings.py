"""What a running page is allowed and defaults to: where it listens, who may use it, how much it accepts."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..core.edges import DEFAULT_EDGE

DEFAULT_MAX_UPLOAD_MB = 200.0


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 or ::1; anything else (0.0.0.0 included) is reachable from outside."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def upload_limit_text(limit: int) -> str:
    """The limit as users read it, e.g. "200 MB (200000000 bytes)"."""
    return f"{limit / 1e6:g} MB ({limit} bytes)"


@dataclass
class ServeSettings:
    """`weights` None: the shipped model. `token` None on a loopback host; on any other host one is made (the page
    then needs ?token= or an X-Token header). `conf`, `mpp` and `edge` are the page's defaults, as in `count`."""

    weights: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1e6)
    conf: float | dict[str, float] | None = None
    mpp: float | str | None = None
    edge: str = DEFAULT_EDGE.value
    differential: bool = True  # type white cells with the shipped classifier, as `count` does by default
    backend: str = "auto"
    keep_results: int = 20  # finished counts whose files stay downloadable; older ones are deleted

    def __post_init__(self) -> None:
        if self.token is None and not is_loopback(self.host):
            self.token = secrets.token_urlsafe(24)
