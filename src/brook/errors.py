"""JSON errors: `{"error": {"code", "message"}}` with the right status, never a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class APIError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 retry_after: int | None = None, **details: object) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after
        self.details = details  # more fields of the error object (a limit's name, its reset)


def error_response(status: int, code: str, message: str, **details: object) -> Response:
    response = jsonify(error={"code": code, "message": message, **details})
    response.status_code = status
    return response


def _api_error(exc: APIError) -> Response:
    response = error_response(exc.status, exc.code, exc.message, **exc.details)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _http_error(exc: HTTPException) -> Response | HTTPException:
    if not request.path.startswith("/api/"):
        return exc
    code = (exc.name or "error").lower().replace(" ", "_")
    response = error_response(exc.code or 500, code, exc.description or exc.name)
    if exc.code == 405 and exc.response is None:
        response.headers["Allow"] = ", ".join(exc.valid_methods or [])  # type: ignore[attr-defined]
    return response


def _database_down(exc: OperationalError) -> Response:
    log.error("database unavailable on %s %s: %s", request.method, request.path,
              type(exc.orig).__name__ if exc.orig else exc)
    response = error_response(503, "database_unavailable",
                              "Brook cannot reach its database right now. Please try again "
                              "in a moment.")
    response.headers["Retry-After"] = "5"
    return response


def _pool_exhausted(_exc: PoolTimeout) -> Response:
    log.warning("no free database connection for %s %s", request.method, request.path)
    response = error_response(503, "overloaded",
                              "Brook is very busy right now. Please try again in a moment.")
    response.headers["Retry-After"] = "2"
    return response


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, "internal_error", "Something went wrong on the server.")


def init_app(app: Flask) -> None:
    app.register_error_handler(APIError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(OperationalError, _database_down)
    app.register_error_handler(PoolTimeout, _pool_exhausted)
    app.register_error_handler(Exception, _unexpected)
