"""arsync: keeps an accounts-receivable ledger in sync with ERPs and payment providers."""
