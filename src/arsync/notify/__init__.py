"""Outbound notifications: signed webhooks and email when a connection, a sync or a push needs someone."""
