"""Answers in Xero's shapes."""

from __future__ import annotations

from typing import Any

from fastapi import Response

from arsync.erp import contract


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON with Decimals written as exact numbers, as Xero writes amounts."""
    return Response(contract.dumps(payload), status_code=status, media_type="application/json", headers=headers)


def xero_problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    # The problem shape of Xero's 401/403 answers ({"Type": null, "Title", "Status", "Detail", …}):
    # not in xero_accounting.yaml; as seen in the wild (freakboy3742/pyxero PR #337, a 401
    # TokenExpired body; dcblogdev/laravel-xero issue #40, a 403 AuthenticationUnsuccessful body).
    # Its "Instance" and "Extensions" members are left out: arsync reads neither.
    return json_response({"Type": None, "Title": title, "Status": status, "Detail": detail}, status, headers)


def validation_error(message: str) -> Response:
    # xero_accounting.yaml components.schemas.Error, as in its 400 examples (e.g. paths./Accounts.put).
    body = {"ErrorNumber": 10, "Type": "ValidationException", "Message": "A validation exception occurred",
            "Elements": [{"ValidationErrors": [{"Message": message}]}]}  # fmt: skip
    return json_response(body, 400)
