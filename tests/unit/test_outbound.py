"""The outbound address rule: what arsync calls on a tenant's behalf."""

from __future__ import annotations

import ipaddress

import pytest

from arsync.config import Settings
from arsync.errors import InvalidInput
from arsync.outbound import OutboundPolicy, refusal


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "fe80::1", "::ffff:169.254.169.254", "0.0.0.0", "::", "224.0.0.1", "ff02::1"],
)
def test_link_local_unspecified_and_multicast_are_always_refused(address: str):
    assert refusal(ipaddress.ip_address(address), allow_private=False) is not None
    assert refusal(ipaddress.ip_address(address), allow_private=True) is not None


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "::1", "10.1.2.3", "192.168.0.10", "172.16.5.4", "fd00::1", "100.64.0.1", "240.0.0.1"]
)
def test_loopback_and_private_addresses_follow_the_setting(address: str):
    assert refusal(ipaddress.ip_address(address), allow_private=True) is None
    assert "ARSYNC_OUTBOUND_ALLOW_PRIVATE" in (refusal(ipaddress.ip_address(address), allow_private=False) or "")


def test_public_addresses_are_called():
    assert refusal(ipaddress.ip_address("93.184.216.34"), allow_private=False) is None
    assert refusal(ipaddress.ip_address("2606:4700::1111"), allow_private=False) is None


def test_a_saved_url_is_checked_by_what_its_name_resolves_to():
    strict, lenient = OutboundPolicy(allow_private=False), OutboundPolicy(allow_private=True)
    with pytest.raises(InvalidInput, match=r"169\.254\.169\.254: a link-local") as refused:
        lenient.check_url("http://169.254.169.254/latest/meta-data", "baseUrl")
    assert refused.value.details == {"field": "baseUrl"}
    lenient.check_url("http://localhost:8000", "baseUrl")
    with pytest.raises(InvalidInput, match=r"localhost \(.+\): a loopback"):
        strict.check_url("http://localhost:8000", "baseUrl")
    strict.check_url("http://name-that-does-not-resolve.invalid", "baseUrl")  # the call will say so


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
    assert refusal(ipaddress.ip_address(address), allow_private=False) is not None
    assert refusal(ipaddress.ip_address("64:ff9b::808:808"), allow_private=False) is None  # NAT64 of a public one


def test_a_trusted_origin_is_admitted_only_while_trusted_only_on_its_port_and_only_by_its_policy():
    policy, another = OutboundPolicy(allow_private=False), OutboundPolicy(allow_private=False)
    with policy.trusted("http://127.0.0.1:8123"):
        policy.check_url("http://127.0.0.1:8123/nudge", "baseUrl")
        with pytest.raises(InvalidInput):
            policy.check_url("http://127.0.0.1:8124", "baseUrl")
        with pytest.raises(InvalidInput):  # no process-wide state: another container's rule is its own
            another.check_url("http://127.0.0.1:8123/nudge", "baseUrl")
    with pytest.raises(InvalidInput):
        policy.check_url("http://127.0.0.1:8123", "baseUrl")
