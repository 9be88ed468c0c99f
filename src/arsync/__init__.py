"""arsync: keeps an accounts-receivable ledger in sync with ERPs and payment providers."""

__version__ = "0.1.0"
