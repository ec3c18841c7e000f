"""Which addresses may open a FastAGI session: `ivr.allowed_peers` (addresses or networks,
IPv4 or IPv6).  Anyone else is refused before a byte is read or a command sent."""
from __future__ import annotations

import ipaddress
from typing import Iterable

DEFAULT_PEERS = ("127.0.0.0/8", "::1")       # loopback: Asterisk on the gateway's own host


def parse_peers(entries: Iterable[str]) -> tuple:
    """Networks from config entries; ValueError naming the entry that is not an address or network."""
    nets = []
    for entry in entries:
        try:
            nets.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            raise ValueError(f"allowed_peers: {entry!r} is not an IP address or network "
                             "(e.g. 10.20.0.7, 10.20.0.0/24, ::1)") from None
    return tuple(nets)


class PeerGate:
    """admit(addr) for the factory's buildProtocol; refusals go to a RefusalAudit."""

    def __init__(self, allowed: Iterable[str], refusals):
        self.networks = parse_peers(allowed)
        self.refusals = refusals

    def allows(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False                    # not an IP peer (a UNIX socket, garbage): not Asterisk
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped             # a dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d
        return any(ip in net for net in self.networks)

    def admit(self, addr) -> bool:
        host = getattr(addr, "host", None) or str(addr)
        if self.allows(host):
            return True
        self.refusals.refused_peer(host, "peer_not_allowed",
                                   {"port": getattr(addr, "port", None),
                                    "allowed": [str(n) for n in self.networks]})
        return False
