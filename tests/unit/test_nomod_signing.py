"""Svix-style webhook signatures: what verifies, and every way a forgery is refused."""

from __future__ import annotations

import pytest

from arsync.nomod import signing

BODY = b'{"type":"charge.paid","data":{"id":"ch_1"}}'


def test_a_signed_message_verifies() -> None:
    secret = signing.new_secret()
    headers = signing.signed_headers(secret, "msg_1", BODY, timestamp=1_700_000_000)
    assert signing.verify(secret, headers, BODY, now=1_700_000_100) == "msg_1"


def test_any_of_several_signatures_may_match() -> None:
    secret = signing.new_secret()
    headers = signing.signed_headers(secret, "msg_1", BODY, timestamp=1_700_000_000)
    headers["svix-signature"] = "v1,AAAA " + headers["svix-signature"]
    assert signing.verify(secret, headers, BODY, now=1_700_000_000) == "msg_1"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h, b: (h, b + b" "), "no signature matches"),
        (lambda h, b: (h | {"svix-id": "msg_2"}, b), "no signature matches"),
        (lambda h, b: (h | {"svix-signature": "v1,forged"}, b), "no signature matches"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "svix-id"}, b), "missing"),
        (lambda h, b: (h | {"svix-timestamp": "soon"}, b), "not a Unix time"),
    ],
)
def test_tampering_is_refused(change, reason) -> None:
    secret = signing.new_secret()
    headers, body = change(signing.signed_headers(secret, "msg_1", BODY, timestamp=1_700_000_000), BODY)
    with pytest.raises(signing.InvalidSignature, match=reason):
        signing.verify(secret, headers, body, now=1_700_000_000)


def test_another_secret_is_refused() -> None:
    headers = signing.signed_headers(signing.new_secret(), "msg_1", BODY, timestamp=1_700_000_000)
    with pytest.raises(signing.InvalidSignature):
        signing.verify(signing.new_secret(), headers, BODY, now=1_700_000_000)


@pytest.mark.parametrize("age", [301, -301, 3600])
def test_stale_or_future_timestamps_are_refused(age: int) -> None:
    secret = signing.new_secret()
    headers = signing.signed_headers(secret, "msg_1", BODY, timestamp=1_700_000_000)
    with pytest.raises(signing.InvalidSignature, match="5 minutes"):
        signing.verify(secret, headers, BODY, now=1_700_000_000 + age)


def test_the_tolerance_edge_still_verifies() -> None:
    secret = signing.new_secret()
    headers = signing.signed_headers(secret, "msg_1", BODY, timestamp=1_700_000_000)
    assert signing.verify(secret, headers, BODY, now=1_700_000_300) == "msg_1"
