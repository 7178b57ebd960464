"""Security headers on every HTTP response: pages, API answers and error bodies alike.

* ``Content-Security-Policy``: only this origin's scripts (no inline script), styles from this
  origin (inline ``style`` attributes allowed: plots and reports use them), images from this
  origin or ``data:``, no plugins, no framing (``frame-ancestors 'none'``), forms post only here.
  A route that sets its own policy keeps it: the API docs (app/api/docs.py) allow their one
  inline bootstrap script by its hash, and load Swagger UI / ReDoc from this origin only.
* ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` (for browsers without
  ``frame-ancestors``), ``Referrer-Policy: no-referrer`` (review URLs name patients' fractions),
  ``Cross-Origin-Opener-Policy: same-origin``, ``Permissions-Policy`` switching off sensors.
* ``Strict-Transport-Security`` only when ``MVCT_GUIDE_HSTS_MAX_AGE_S`` > 0 (set it when the
  service is reached over HTTPS only).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, hsts_max_age_s: int = 0) -> None:
        self.app = app
        self.common: list[tuple[bytes, bytes]] = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), usb=()"),
        ]
        if hsts_max_age_s > 0:
            value = f"max-age={hsts_max_age_s}; includeSubDomains".encode()
            self.common.append((b"strict-transport-security", value))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in self.common:
                    if name not in present:
                        headers.append((name, value))
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", policy.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
