"""OpenAI-style errors: ``{"error": {"message", "type", "param", "code"}}`` with a 4xx status for bad requests.

Routes raise ``APIError``; ``install_error_handlers`` turns it, FastAPI's request validation errors (422 there,
400 here, as OpenAI answers a malformed body), unknown routes (404 / 405) and any unexpected exception (500,
logged with its traceback, never shown to the client) into that body.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class APIError(Exception):
    """A request the server refuses: ``status`` (HTTP), ``message`` (for the client), the OpenAI error ``type``,
    the request field at fault (``param``) and a short machine-readable ``code``."""

    def __init__(self, message: str, status: int = 400, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def validation_message(errors: list[dict]) -> tuple[str, str | None]:
    """One readable line for pydantic's validation errors and the field of the first one (``messages.0.role``)."""
    parts, param = [], None
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        param = param or where or None
        msg = "unsupported parameter" if error.get("type") == "extra_forbidden" else error.get("msg", "invalid")
        parts.append(f"{where}: {msg}" if where else str(msg))
    return "; ".join(parts) or "invalid request body", param


def install_error_handlers(app) -> None:
    """Answer every error of ``app`` (a FastAPI app) in OpenAI's format."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    @app.exception_handler(APIError)
    async def api_error(request, error: APIError):
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request, error: RequestValidationError):
        message, param = validation_message(list(error.errors()))
        return JSONResponse(error_body(message, param=param, code="invalid_body"), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(error.detail), kind), status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request, error: Exception):
        logger.exception("unexpected error answering %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal server error (see the server log)", "internal_server_error",
                                       code="internal_error"), status_code=500)
