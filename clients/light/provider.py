"""A JSON-RPC provider: one node, named, that the light client asks but never trusts."""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from clients.light.errors import ProviderError

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
"""Largest answer read from a provider; a lying node must not exhaust memory."""
_ids = itertools.count(1)


@dataclass
class HttpProvider:
    """A node's JSON-RPC endpoint over HTTP."""

    url: str
    """``http://host:port`` of the node."""
    name: str = ""
    """What errors call this provider (a municipality's name or the URL)."""
    timeout: float = 10.0
    """Seconds to wait for one answer."""
    bytes_received: int = field(default=0)
    """Response bytes read so far (the light client's download cost)."""
    calls: int = field(default=0)
    """Requests sent so far."""

    def __post_init__(self) -> None:
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError(f"provider URL must start with http:// or https://: {self.url}")
        if not self.name:
            self.name = self.url

    def call(self, method: str, *params: Any) -> Any:
        """Send one request; return its ``result`` or raise :class:`ProviderError`."""
        body = json.dumps(
            {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": list(params)}
        ).encode()
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __post_init__
            self.url, data=body, headers={"Content-Type": "application/json"}
        )
        self.calls += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                raw = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise ProviderError(self.name, f"HTTP {exc.code} for {method}") from exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise ProviderError(self.name, f"unreachable: {exc}") from exc
        self.bytes_received += len(raw)
        if len(raw) > MAX_RESPONSE_BYTES:
            raise ProviderError(self.name, f"answer to {method} is over {MAX_RESPONSE_BYTES} bytes")
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            raise ProviderError(self.name, f"answer to {method} is not JSON") from exc
        if not isinstance(answer, dict):
            raise ProviderError(self.name, f"answer to {method} is not a JSON-RPC object")
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            raise ProviderError(
                self.name,
                f"{method} failed: {error.get('message', answer['error'])}",
                rpc_code=error.get("code"),
            )
        if "result" not in answer:
            raise ProviderError(self.name, f"answer to {method} has no result")
        return answer["result"]
