"""Serialising response models once.

FastAPI validates a returned model against ``response_model`` again before serialising it. For
read routes that is pure overhead (the model was just built from the database), so they return
its JSON directly; ``response_model`` still documents the shape in OpenAPI.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response
from pydantic import BaseModel

from arsync.schemas import PageParams


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    return Response(model.model_dump_json(by_alias=True), status_code=status_code, media_type="application/json")


def page_response(items: list[dict[str, Any]], paging: PageParams, has_more: bool) -> Response:
    """A ``Page`` of items that are already in their wire shape (camelCase keys).

    For the busiest lists: building 100 models only to serialise them again costs more than the
    query. orjson writes UTC datetimes with a ``Z``, the same as pydantic.
    """
    body = {"items": items, "page": paging.page, "limit": paging.limit, "hasMore": has_more}
    return Response(orjson.dumps(body, option=orjson.OPT_UTC_Z), media_type="application/json")
