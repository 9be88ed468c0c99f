"""Serialising response models once.

FastAPI validates a returned model against ``response_model`` again before serialising it. For
read routes that is pure overhead (the model was just built from the database), so they return
its JSON directly; ``response_model`` still documents the shape in OpenAPI.
"""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    return Response(model.model_dump_json(by_alias=True), status_code=status_code, media_type="application/json")
