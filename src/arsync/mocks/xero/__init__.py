"""``arsync mock-xero``: a stateful stand-in for Xero's identity service and Accounting API.

It follows the rules arsync must live with:

* OAuth 2 authorization code with optional PKCE (S256). Access tokens expire (30 minutes by
  default); refresh tokens rotate on every use, the previous one keeps working for a grace
  period (it hands out the same successor again), an unused one expires, and a reused stale one
  gets ``invalid_grant``.
* ``GET /connections`` lists the organisations a token may use; every Accounting call needs the
  ``xero-tenant-id`` header.
* ``GET /api.xro/2.0/Contacts|Invoices|Payments`` page with ``page`` and ``pageSize`` (100 by
  default) and filter with ``If-Modified-Since``, ``where`` (``Field=="value"`` clauses joined
  by ``AND``) and ``InvoiceNumbers``.
* ``PUT /api.xro/2.0/Contacts|Invoices|Payments`` create records; an ``Idempotency-Key`` (up to
  128 characters) replays the first answer. A contact's name is unique among active contacts,
  and it becomes ``IsCustomer`` with its first sales invoice. Lines of an AUTHORISED invoice need the code of a
  revenue account (200, 260); payments need a bank account (090, 091).
* Per organisation: at most 5 calls in flight, 60 per minute and 1,000 per day (Xero's Starter
  tier; 5,000 on higher tiers). Over a limit the answer is 429 with ``Retry-After`` and
  ``X-Rate-Limit-Problem``; every answer carries ``X-DayLimit-Remaining`` and
  ``X-MinLimit-Remaining`` (Xero's API rate limits page).
* Apps created on or after 2 March 2026 (the default) may ask only for granular scopes
  (``accounting.invoices``, ``accounting.payments``, …); each endpoint needs its scope.
* ``unitdp=4`` keeps four decimals of ``UnitAmount``; without it two, and a ``LineAmount`` that no
  longer matches is refused. Contacts include suppliers, ``/Invoices`` bills, and ``/Payments``
  reversed payments (``Status`` DELETED).

Every limit and lifetime is configurable, so tests can run the rules in seconds. The control
surface under ``/_mock`` (no auth, loopback only): ``GET /_mock/state``, ``PUT /_mock/config``,
``POST /_mock/expire-access-tokens``, ``POST /_mock/refuse-refresh``, ``PUT /_mock/faults``.
"""

from arsync.mocks.xero._app import create_mock_xero_app, mock_xero_settings
from arsync.mocks.xero._state import MockXeroConfig, MockXeroFault, MockXeroState, Organisation, xero_date

__all__ = [
    "MockXeroConfig",
    "MockXeroFault",
    "MockXeroState",
    "Organisation",
    "create_mock_xero_app",
    "mock_xero_settings",
    "xero_date",
]
