"""The client's address, and when ``X-Forwarded-For`` may name it.

The rate limit counts failures per client address, so a forged header must not pick the address.
``X-Forwarded-For`` is read only when the connection comes from a proxy listed in
``MVCT_GUIDE_TRUSTED_PROXIES`` (addresses or networks, comma-separated; empty by default): then
the client is the right-most address in the header that is not itself a trusted proxy (each
proxy appends the address it saw, so addresses left of it were written by the client and prove
nothing). ``mvct-guide serve`` tells uvicorn not to rewrite the address itself.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from starlette.requests import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def trusted_networks(setting: str) -> tuple[Network, ...]:
    """``"10.0.0.5, 10.1.0.0/16"`` → networks; ValueError naming a bad entry."""
    networks = []
    for entry in (part.strip() for part in setting.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"MVCT_GUIDE_TRUSTED_PROXIES entry {entry!r} is not an address or network"
            ) from None
    return tuple(networks)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(request: Request, trusted_setting: str) -> str:
    """The address the rate limit and the audit trail name (see the module docstring)."""
    peer = request.client.host if request.client is not None else "unknown"
    networks = trusted_networks(trusted_setting)
    if not networks or not _trusted(peer, networks):
        return peer
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a malformed entry: fall back to what we know
    return hops[0] if hops else peer
