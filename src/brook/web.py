"""The chat page, and the security headers every response carries."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template

from .config import MODEL_HELP, Settings
from .identity import current_owner, is_admin, signed_in, signed_in_email

bp = Blueprint("web", __name__)

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


@bp.get("/")
def index() -> str:
    settings: Settings = current_app.config["BROOK_SETTINGS"]
    if settings.auth_mode == "anonymous":
        # Give a new browser its owner cookie now, so the page's first API calls, made
        # at once, cannot each create a different anonymous owner.
        current_owner()
    elif settings.auth_mode == "oidc" and not signed_in():
        # The page's API calls would all be refused: a sign-in button instead.
        return render_template("signin.html", app_name="Brook", title="Sign in",
                               message="Sign in to use Brook.", sign_in=True, next_path="/")
    return render_template(
        "index.html",
        app_name="Brook",
        model_ready=bool(settings.model_specs),
        model_help=MODEL_HELP,
        max_message_chars=settings.max_message_chars,
        sign_out=settings.auth_mode == "oidc",
        email=signed_in_email(),
        admin=is_admin(),
    )


@bp.get("/healthz")
def health() -> dict[str, str]:
    return {"status": "ok"}


@bp.after_app_request
def security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response
