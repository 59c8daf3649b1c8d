"""What each emulator session logged in with, and what each statement carried: parameters, query tags, keys.

fakesnow accepts any login and ignores session and statement parameters. Here the emulator keeps
them, so the dev stack can behave (``STATEMENT_TIMEOUT_IN_SECONDS``) and tests can check what the
real connector sent over the wire:

- ``GET /sf2pg-devstack/v1/logins``: per login, the user, the authenticator, the session parameters
  and the client environment's timeouts; for a token, only its SHA-256 digest (never the secret);
- ``GET /sf2pg-devstack/v1/queries``: per statement, its text, effective ``QUERY_TAG`` and parameters.

Key-pair logins are verified as Snowflake does: the JWT must be signed by a public key registered
with ``ALTER USER <name> SET RSA_PUBLIC_KEY = '<base64 DER>'`` (or ``RSA_PUBLIC_KEY_2``), and its
issuer must name that key's fingerprint. Passwords, programmatic access tokens and OAuth tokens are
accepted as fakesnow accepts them (the emulator has no user store), and recorded by digest.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

HISTORY = 20000  # statements kept for the introspection route
_SET_KEY = re.compile(
    r"""^\s*ALTER\s+USER\s+(?:IF\s+EXISTS\s+)?("(?:[^"]|"")+"|[A-Za-z_][\w$]*)\s+SET\s+"""
    r"""(RSA_PUBLIC_KEY(?:_2)?)\s*=\s*'([^']*)'\s*;?\s*$""",
    re.IGNORECASE,
)


def _digest(secret: str | None) -> str | None:
    return None if not secret else hashlib.sha256(secret.encode()).hexdigest()


def _user_name(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident.upper()


async def _json_body(request: Any) -> dict:
    body = await request.body()
    if request.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return json.loads(body or b"{}")


class SessionState:
    """Logins, their session parameters and the statements each session sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, dict[str, Any]] = {}  # session token -> its session parameters
        self._keys: dict[str, dict[str, bytes]] = {}  # user -> {RSA_PUBLIC_KEY[_2]: DER}
        self.logins: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.queries: deque[dict[str, Any]] = deque(maxlen=HISTORY)

    def login(self, login_request: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        """Wrap the login endpoint: verify a key-pair JWT, remember the session's parameters."""

        async def endpoint(request: Any) -> Any:
            data = (await _json_body(request)).get("data", {})
            authenticator = str(data.get("AUTHENTICATOR") or "SNOWFLAKE").upper()
            user = str(data.get("LOGIN_NAME") or "")
            if authenticator == "SNOWFLAKE_JWT" and not self._jwt_is_valid(user, data.get("TOKEN")):
                return _failure("390144", "JWT token is invalid.")
            response = await login_request(request)
            body = json.loads(response.body)
            if body.get("success"):
                parameters = dict(data.get("SESSION_PARAMETERS") or {})
                environment = data.get("CLIENT_ENVIRONMENT") or {}
                with self._lock:
                    self._sessions[body["data"]["token"]] = parameters
                    self.logins.append(
                        {
                            "user": user,
                            "authenticator": authenticator,
                            "token_sha256": _digest(data.get("TOKEN")),
                            "password_sent": bool(data.get("PASSWORD")),
                            "session_parameters": parameters,
                            "network_timeout": environment.get("NETWORK_TIMEOUT"),
                            "login_timeout": environment.get("LOGIN_TIMEOUT"),
                        }
                    )
            return response

        return endpoint

    def query(self, query_request: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        """Wrap the query endpoint: the statement's effective parameters go on ``request.state``."""

        async def endpoint(request: Any) -> Any:
            import fakesnow.server

            body = await _json_body(request)
            sql = str(body.get("sqlText") or "")
            statement = dict(body.get("parameters") or {})
            token = fakesnow.server.to_token(request) if "Authorization" in request.headers else ""
            with self._lock:
                effective = {**self._sessions.get(token, {}), **statement}
                self.queries.append(
                    {"sql": sql, "query_tag": effective.get("QUERY_TAG"), "statement_parameters": statement}
                )
            request.state.sf_parameters = effective
            if match := _SET_KEY.match(sql):
                return self._register_key(*match.groups())
            return await query_request(request)

        return endpoint

    def end(self, session: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        """Wrap the session endpoint: a logout forgets the session's parameters."""

        async def endpoint(request: Any) -> Any:
            response = await session(request)
            if request.query_params.get("delete") and "Authorization" in request.headers:
                import fakesnow.server

                with self._lock:
                    self._sessions.pop(fakesnow.server.to_token(request), None)
            return response

        return endpoint

    def _register_key(self, user: str, which: str, value: str) -> Any:
        from starlette.responses import JSONResponse

        der = base64.b64decode("".join(value.split()))
        with self._lock:
            keys = self._keys.setdefault(_user_name(user), {})
            if der:
                keys[which.upper()] = der
            else:  # SET RSA_PUBLIC_KEY = '' clears it
                keys.pop(which.upper(), None)
        return JSONResponse(
            {
                "data": {
                    "rowtype": [_STATUS_COLUMN],
                    "rowset": [["Statement executed successfully."]],
                    "total": 1,
                    "queryResultFormat": "json",
                    "statementTypeId": 0x6000,
                    "queryId": hashlib.sha256(der).hexdigest()[:32],
                },
                "success": True,
            }
        )

    def _jwt_is_valid(self, user: str, token: Any) -> bool:
        import jwt
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        if not isinstance(token, str):
            return False
        with self._lock:
            keys = list(self._keys.get(user.upper(), {}).values())
        for der in keys:
            fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()
            try:
                claims = jwt.decode(token, load_der_public_key(der), algorithms=["RS256", "ES256", "ES384", "ES512"])
            except (jwt.PyJWTError, ValueError):  # signed by another key, expired, or a key that is not one
                continue
            if str(claims.get("iss", "")).endswith(f".{user.upper()}.{fingerprint}"):
                return True
        return False

    async def introspect_logins(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        with self._lock:
            return JSONResponse(list(self.logins))

    async def introspect_queries(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        with self._lock:
            return JSONResponse(list(self.queries))


_STATUS_COLUMN = {
    "name": "status",
    "type": "text",
    "nullable": True,
    "length": 16777216,
    "byteLength": 16777216,
    "precision": None,
    "scale": None,
    "collation": None,
    "database": "",
    "schema": "",
    "table": "",
}


def _failure(code: str, message: str) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"data": {"errorCode": code}, "code": code, "message": message, "success": False})
