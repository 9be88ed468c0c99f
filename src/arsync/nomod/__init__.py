"""Nomod, the payment provider: client, webhook signatures (and, with the mock, its test double)."""
