"""One JSON error shape for every failure: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from arsync.errors import ArsyncError

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
}  # fmt: skip


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "Malformed request"),
        (401, "Missing, unknown or revoked API key"),
        (403, "API key used outside its tenant and environment"),
        (404, "Not found in this tenant and environment"),
        (409, "Conflicts with the record's current state"),
        (422, "Validation failed; details name the fields"),
    )
}


def error_json(
    status: int, code: str, message: str, details: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details}}, status_code=status, headers=headers
    )


def _field_name(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def arsync_error(_request: Request, exc: ArsyncError) -> JSONResponse:
    return error_json(exc.status_code, exc.code, exc.message, exc.details or None)


async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return error_json(400, "INVALID_JSON", "The request body is not valid JSON")
    field_errors = [{"field": _field_name(tuple(e["loc"])), "message": str(e["msg"])} for e in errors]
    first = field_errors[0] if field_errors else {"field": "body", "message": "invalid"}
    return error_json(422, "VALIDATION_FAILED", f"{first['field']}: {first['message']}", {"fieldErrors": field_errors})


def allowed_methods(request: Request) -> str | None:
    """Every method the API serves at the request's path, as its OpenAPI document lists them
    (RFC 9110, section 10.2.1): Starlette names only those of the first route that matched."""
    for template, item in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)), request.url.path):
            return ", ".join(sorted(m.upper() for m in item if m in HTTP_METHODS))
    return None


HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    headers = dict(exc.headers or {})
    allowed = allowed_methods(request) if exc.status_code == 405 else None
    if allowed:
        headers["Allow"] = allowed
    return error_json(exc.status_code, code, str(exc.detail), headers=headers or None)


async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_json(500, "INTERNAL_ERROR", "An unexpected error occurred; it has been logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ArsyncError, arsync_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected)
