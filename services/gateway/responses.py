"""The job API's JSON responses rendered with orjson: several times faster than the standard
library's encoder on a job view, on the path every request takes (docs/performance.md).
Starlette's ``JSONResponse`` otherwise; the bytes differ only in whitespace."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
