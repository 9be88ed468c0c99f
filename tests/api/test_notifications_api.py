"""Notification endpoints over HTTP: the secret is shown once, the test-send goes through the job
queue to the delivery log, and another tenant sees none of it."""

from __future__ import annotations

from arsync.bootstrap import Container
from tests.api.conftest import Tenant, until


def test_endpoints_test_send_and_delivery_log(container: Container, alice: Tenant, bob: Tenant) -> None:
    created = alice.client.post(
        "/api/v1/notification-endpoints",
        json={"kind": "webhook", "url": "http://127.0.0.1:9/hooks?team=ar", "events": ["push.failed"]},
    )
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["secret"].startswith("whsec_") and endpoint["events"] == ["push.failed"]
    listed = alice.client.get("/api/v1/notification-endpoints").json()
    assert [e["id"] for e in listed] == [endpoint["id"]] and "secret" not in listed[0]
    assert endpoint["secret"] not in alice.client.get("/api/v1/notification-endpoints").text

    sent = alice.client.post(f"/api/v1/notification-endpoints/{endpoint['id']}/test")
    assert sent.status_code == 202 and sent.json()["eventType"] == "notification.test"
    # Nothing listens on port 9: the job ran, and the delivery log says why it waits for a retry.
    log = until(alice.client, "/api/v1/notification-deliveries", lambda b: b["items"] and b["items"][0]["attempts"])
    [delivery] = log["items"]
    assert delivery["id"] == sent.json()["id"] and delivery["status"] == "PENDING"
    assert delivery["lastError"] and delivery["nextAttemptAt"]

    assert bob.client.get("/api/v1/notification-deliveries").json()["items"] == []
    assert bob.client.post(f"/api/v1/notification-endpoints/{endpoint['id']}/test").status_code == 404
    assert bob.client.delete(f"/api/v1/notification-endpoints/{endpoint['id']}").status_code == 404

    for bad, expected in [
        ({"kind": "webhook", "url": "https://x.example/h", "events": ["sync.exploded"]}, "sync.exploded"),
        ({"kind": "webhook", "url": "https://x.example/h#frag"}, "fragment"),
        ({"kind": "email", "email": "ops@example.com"}, "SMTP"),
        ({"kind": "pager", "url": "https://x.example/h"}, "kind"),
    ]:
        refused = alice.client.post("/api/v1/notification-endpoints", json=bad)
        assert refused.status_code in (409, 422) and expected in refused.text, refused.text

    assert alice.client.delete(f"/api/v1/notification-endpoints/{endpoint['id']}").status_code == 204
    assert alice.client.get("/api/v1/notification-endpoints").json() == []
    assert alice.client.get("/api/v1/notification-deliveries").json()["items"] == []  # the log goes with it
