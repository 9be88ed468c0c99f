"""Xero: the first native ERP connector (OAuth 2, Accounting API)."""
