"""Where webhooks may go: the SSRF guard for callback URLs, which tenants choose.

Unchecked, a callback URL could make the fleet call Redis, the cloud metadata service
(169.254.169.254), a pod or a node. A URL must use an allowed scheme (https; http only for
trusted hosts), carry no credentials, name an allowed host and resolve to public addresses
only — every address it resolves to, since a name may resolve to [public, 127.0.0.1] — and not
into the denied networks (the cluster's pod/service CIDRs). The gateway checks at submit, for a
clear 422; the control worker checks again at each delivery attempt after its own resolution,
then connects to the very address it checked (pinned: the URL's host is replaced by it, the
``Host`` header and the TLS server name keep the name), so DNS cannot answer differently between
the check and the connect (rebinding). Trusted hosts (``webhook_trusted_hosts``) skip the address
checks: receivers inside your own network.

The URL is parsed by httpx, the client that sends the request, so the checked host and the
called host cannot differ through a parser disagreement.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import httpx

from services.core.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_KINDS = (
    ("a loopback address", lambda ip: ip.is_loopback),
    ("a link-local address (the cloud metadata service's range)", lambda ip: ip.is_link_local),
    ("a multicast address", lambda ip: ip.is_multicast),
    ("an unspecified address", lambda ip: ip.is_unspecified),
    ("a private address", lambda ip: ip.is_private),
    ("a reserved address", lambda ip: ip.is_reserved),
)


class CallbackRefused(ValueError):
    """The URL may not be called; the message says why, for the tenant who sent it."""


@dataclass(frozen=True, slots=True)
class Target:
    """A checked callback: the URL to request, its host replaced by the checked address, and
    what keeps it the same request to the receiver: the Host header and the TLS server name."""

    url: httpx.URL
    host_header: str
    sni_hostname: str | None


def check_callback(url: str, settings: Settings) -> Target:
    """Every check, resolution included; raises ``CallbackRefused`` with the reason."""
    return resolve(parse(url, settings), settings)


def parse(url: str, settings: Settings) -> httpx.URL:
    """The checks that need no DNS: length, syntax, scheme, credentials, host list."""
    if len(url) > settings.webhook_max_url_length:
        raise CallbackRefused(f"the URL is over {settings.webhook_max_url_length} characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise CallbackRefused(f"not a valid URL ({exc})") from None
    host = _host(parsed)
    if not parsed.is_absolute_url or not host:
        raise CallbackRefused("the callback must be an absolute https URL with a host")
    trusted = _listed(host, settings.webhook_trusted_hosts)
    schemes = ["http", "https"] if trusted else settings.webhook_schemes
    if parsed.scheme not in schemes:
        raise CallbackRefused(f"scheme '{parsed.scheme}' is not allowed (allowed: {schemes})")
    if parsed.userinfo:
        raise CallbackRefused("credentials in the URL are not allowed; verify the signature")
    if settings.webhook_hosts and not trusted and not _listed(host, settings.webhook_hosts):
        raise CallbackRefused(f"host '{host}' is not on this fleet's list of webhook hosts")
    return parsed


def resolve(parsed: httpx.URL, settings: Settings) -> Target:
    """Resolve the host, check every address, and pin the request to the first one."""
    host = _host(parsed)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parsed.raw_host.decode("ascii"), port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise CallbackRefused(f"host '{host}' does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not addresses:
        raise CallbackRefused(f"host '{host}' resolves to no address")
    if not _listed(host, settings.webhook_trusted_hosts):
        for address in addresses:
            reason = forbidden(address, settings.webhook_denied_networks)
            if reason:
                raise CallbackRefused(f"host '{host}' resolves to {address}, which is {reason}")
    named = parsed.scheme == "https" and _literal(host) is None
    return Target(
        url=parsed.copy_with(host=str(addresses[0])),
        host_header=parsed.netloc.decode("ascii"),
        sni_hostname=parsed.raw_host.decode("ascii") if named else None,
    )


def forbidden(address: IPAddress, denied: list[IPNetwork]) -> str | None:
    """Why the fleet must not call this address (None: it may). IPv6 forms that carry an IPv4
    address (mapped, 6to4, NAT64) are judged by that address too."""
    embedded: list[IPAddress | None] = []
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour]
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    for ip in [*(e for e in embedded if e is not None), address]:
        for kind, test in _KINDS:
            if test(ip):
                return kind
        for network in denied:
            if ip.version == network.version and ip in network:
                return f"in the denied network {network}"
        if not ip.is_global:
            return "not a public address"
    return None


def _host(url: httpx.URL) -> str:
    return url.host.lower().rstrip(".")


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _listed(host: str, patterns: list[str]) -> bool:
    """``host`` equals a pattern, or a ``*.example.com`` pattern covers it (not the apex)."""
    for pattern in patterns:
        wanted = pattern.lower().rstrip(".").strip("[]")
        if host == wanted or (wanted.startswith("*.") and host.endswith(wanted[1:])):
            return True
    return False
