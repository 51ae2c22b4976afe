"""HTTP/1.1 with keep-alive from the standard library: one connection per thread, reused across calls."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import urllib.parse
from typing import Any

from .errors import BY_CODE, RateLimitedError, UnreachableError, WardenError


class Transport:
    def __init__(self, url: str, token: str | None, timeout: float, ssl_context: ssl.SSLContext | None) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"url must be http://host:port or https://host:port, got {url!r}")
        self.url = url.rstrip("/")
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = parsed.port or (443 if self._https else 80)
        self._token = token
        self._timeout = timeout
        self._ssl = ssl_context
        self._local = threading.local()

    def _conn(self, timeout: float) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, context=self._ssl)
            else:
                conn = http.client.HTTPConnection(self._host, self._port)
            self._local.conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, wait: float = 0.0) -> dict[str, Any]:
        headers = {"accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        if self._token:
            headers["authorization"] = f"Bearer {self._token}"
        timeout = self._timeout + wait
        for attempt in range(2):
            conn = self._conn(timeout)
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                self._local.conn = None
                # A kept-alive connection the server closed meanwhile: try once on a fresh one.
                if attempt == 0 and isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)):
                    continue
                raise UnreachableError(f"no warden server answered at {self.url}: {e}", "unreachable") from e
        try:
            answer = json.loads(raw)
        except ValueError:
            raise UnreachableError(
                f"{self.url} answered {resp.status} without warden's JSON: is it a warden server?", "unreachable", resp.status
            ) from None
        if isinstance(answer, dict) and answer.get("success") is True:
            return answer
        code = answer.get("code", "unknown") if isinstance(answer, dict) else "unknown"
        message = answer.get("error") if isinstance(answer, dict) else None
        err = BY_CODE.get(code, WardenError)(message or f"the server answered {resp.status}", code, resp.status)
        if isinstance(err, RateLimitedError):
            retry = resp.getheader("retry-after")
            err.retry_after = float(retry) if retry else None
        raise err

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
