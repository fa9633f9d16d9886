"""The SSRF guard's rules on their own: host lists, schemes, address classes, pinning. (The
gateway and control-worker paths are in tests/faults/test_webhook_ssrf.py.)"""

import ipaddress

import pytest

from services.control.egress import CallbackRefused, check_callback, forbidden, parse
from services.core.settings import Settings


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.53", "a loopback address"),
        ("::1", "a loopback address"),
        ("169.254.169.254", "a link-local address (the cloud metadata service's range)"),
        ("fe80::1", "a link-local address (the cloud metadata service's range)"),
        ("172.20.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fd12:3456::1", "a private address"),
        ("224.0.0.251", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("::ffff:10.0.0.1", "a private address"),  # IPv4-mapped
        ("2002:a9fe:a9fe::1", "a link-local address (the cloud metadata service's range)"),  # 6to4
        ("64:ff9b::7f00:1", "a loopback address"),  # NAT64
        ("100.64.1.1", "not a public address"),  # shared address space (CGNAT)
        ("198.51.100.7", "a private address"),  # documentation range
        ("1.1.1.1", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_address_classes(address, why):
    assert forbidden(ipaddress.ip_address(address), []) == why


def test_denied_networks_cover_public_pod_ranges():
    denied = [ipaddress.ip_network("8.8.0.0/16"), ipaddress.ip_network("2001:db8::/32")]
    assert forbidden(ipaddress.ip_address("8.8.8.8"), denied) == "in the denied network 8.8.0.0/16"
    assert forbidden(ipaddress.ip_address("1.1.1.1"), denied) is None


def test_host_lists_and_schemes():
    listed = Settings(webhook_hosts=["hooks.example.com", "*.example.org"])
    assert parse("https://hooks.example.com/x", listed).host == "hooks.example.com"
    assert parse("https://a.b.example.org/x", listed).host == "a.b.example.org"
    for url in ("https://example.org/", "https://evil-example.org/", "https://example.com/"):
        with pytest.raises(CallbackRefused, match="not on this fleet's list"):
            parse(url, listed)
    trusted = Settings(webhook_trusted_hosts=["*.internal.test", "::1"])
    assert parse("http://a.internal.test:8080/", trusted).scheme == "http"
    with pytest.raises(CallbackRefused, match="scheme 'http' is not allowed"):
        parse("http://public.example.com/", trusted)
    target = check_callback("http://[::1]:9000/hook?x=1", trusted)
    assert str(target.url) == "http://[::1]:9000/hook?x=1" and target.sni_hostname is None


def test_the_target_is_pinned_and_keeps_host_and_tls_name():
    target = check_callback("https://1.1.1.1:8443/hook", Settings())
    assert str(target.url) == "https://1.1.1.1:8443/hook"
    assert target.host_header == "1.1.1.1:8443" and target.sni_hostname is None
