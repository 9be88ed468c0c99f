"""The events arsync notifies about, and which an endpoint gets unless it chooses.

Names follow the Standard Webhooks convention of full-stop delimited types
(github.com/standard-webhooks/standard-webhooks, spec/standard-webhooks.md, "Event types").
Stored with endpoints and deliveries: never rename one.
"""

from __future__ import annotations

EVENTS: dict[str, str] = {
    "connection.failed": "A connection's sync failed and the connection is now FAILED.",
    "connection.needs_reauth": "A native ERP refused arsync's sign-in; someone must reconnect it.",
    "connection.paused": "A connection was paused after too many scheduled syncs in a row failed.",
    "connection.recovered": "A FAILED, NEEDS_REAUTH or PAUSED connection synced successfully again.",
    "sync.failed": "A sync or reconciliation run failed.",
    "sync.succeeded": "A sync or reconciliation run succeeded (off unless chosen: one per run).",
    "push.failed": "An invoice or payment could not be pushed to the ERP and needs someone.",
    "reconcile.drift": "A reconciliation found the ledger and the ERP differ.",
    "nomod.webhook.unmatched": "A Nomod paid webhook could not be applied to an invoice.",
}
TEST_EVENT = "notification.test"  # sent by the test-send button to one endpoint, whatever it subscribes to
DEFAULT_EVENTS = [name for name in EVENTS if name != "sync.succeeded"]

# A connection status reached at the end of a run, and the event that says so.
CONNECTION_STATUS_EVENTS = {
    "FAILED": "connection.failed",
    "NEEDS_REAUTH": "connection.needs_reauth",
    "PAUSED": "connection.paused",
}
