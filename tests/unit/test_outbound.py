"""The outbound address rule: what arsync calls on a tenant's behalf."""

from __future__ import annotations

import ipaddress

import pytest

from arsync import outbound
from arsync.errors import InvalidInput


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "fe80::1", "::ffff:169.254.169.254", "0.0.0.0", "::", "224.0.0.1", "ff02::1"],
)
def test_link_local_unspecified_and_multicast_are_always_refused(address: str):
    assert outbound.refusal(ipaddress.ip_address(address)) is not None
    with outbound.private_addresses(allowed=True):
        assert outbound.refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "::1", "10.1.2.3", "192.168.0.10", "172.16.5.4", "fd00::1", "100.64.0.1", "240.0.0.1"]
)
def test_loopback_and_private_addresses_follow_the_setting(address: str):
    with outbound.private_addresses(allowed=True):
        assert outbound.refusal(ipaddress.ip_address(address)) is None
    with outbound.private_addresses(allowed=False):
        assert "ARSYNC_OUTBOUND_ALLOW_PRIVATE" in (outbound.refusal(ipaddress.ip_address(address)) or "")


def test_public_addresses_are_called():
    with outbound.private_addresses(allowed=False):
        assert outbound.refusal(ipaddress.ip_address("93.184.216.34")) is None
        assert outbound.refusal(ipaddress.ip_address("2606:4700::1111")) is None


def test_a_saved_url_is_checked_by_what_its_name_resolves_to():
    with pytest.raises(InvalidInput, match=r"169\.254\.169\.254: a link-local") as refused:
        outbound.check_url("http://169.254.169.254/latest/meta-data", "baseUrl")
    assert refused.value.details == {"field": "baseUrl"}
    outbound.check_url("http://localhost:8000", "baseUrl")  # loopback is allowed by default
    with outbound.private_addresses(allowed=False), pytest.raises(InvalidInput, match=r"localhost \(.+\): a loopback"):
        outbound.check_url("http://localhost:8000", "baseUrl")
    outbound.check_url("http://name-that-does-not-resolve.invalid", "baseUrl")  # the call will say so
