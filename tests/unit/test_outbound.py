"""The outbound address rule: what arsync calls on a tenant's behalf."""

from __future__ import annotations

import ipaddress

import pytest

from arsync import outbound
from arsync.config import Settings
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
    with outbound.private_addresses(allowed=True):
        outbound.check_url("http://localhost:8000", "baseUrl")
    with outbound.private_addresses(allowed=False), pytest.raises(InvalidInput, match=r"localhost \(.+\): a loopback"):
        outbound.check_url("http://localhost:8000", "baseUrl")
    outbound.check_url("http://name-that-does-not-resolve.invalid", "baseUrl")  # the call will say so


def test_private_addresses_are_refused_unless_the_setting_allows_them():

    assert Settings.model_fields["outbound_allow_private"].default is False


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::a00:1",  # local-use NAT64 of 10.0.0.1
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "::127.0.0.1",  # IPv4-compatible
        "::ffff:10.0.0.1",  # IPv4-mapped
    ],
)
def test_ipv6_forms_that_carry_a_private_ipv4_address_are_judged_by_it(address: str):
    with outbound.private_addresses(allowed=False):
        assert outbound.refusal(ipaddress.ip_address(address)) is not None
    assert outbound.refusal(ipaddress.ip_address("64:ff9b::808:808")) is None  # NAT64 of a public address


def test_a_trusted_origin_is_admitted_only_while_trusted_and_only_on_its_port():
    with outbound.private_addresses(allowed=False):
        with outbound.trusted("http://127.0.0.1:8123"):
            outbound.check_url("http://127.0.0.1:8123/nudge", "baseUrl")
            with pytest.raises(InvalidInput):
                outbound.check_url("http://127.0.0.1:8124", "baseUrl")
        with pytest.raises(InvalidInput):
            outbound.check_url("http://127.0.0.1:8123", "baseUrl")
