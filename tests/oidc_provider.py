"""A minimal OIDC provider on loopback, so that Feast's servers authenticate callers with their real
``auth: type: oidc`` code: the discovery document and the JSON Web Key Set Feast's
``OidcTokenParser`` fetches, and RS256 tokens signed with its key (roles in the ``roles`` claim).
Nothing in Feast's token parsing or permission decisions is replaced."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

_KEY_ID = "feast-sequence-tests"


class OidcProvider:
    """``with OidcProvider() as oidc:`` serves discovery and keys until the block ends."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        self._documents: Dict[str, bytes] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.discovery_url = f"{base}/.well-known/openid-configuration"
        self._documents = {
            "/.well-known/openid-configuration": json.dumps(
                {
                    "issuer": base,
                    "authorization_endpoint": f"{base}/auth",
                    "token_endpoint": f"{base}/token",
                    "jwks_uri": f"{base}/keys",
                }
            ).encode(),
            "/keys": json.dumps({"keys": [{**jwk, "kid": _KEY_ID, "alg": "RS256", "use": "sig"}]}).encode(),
        }

    def server_auth(self) -> Dict[str, Any]:
        """The ``auth`` section of a server's feature_store.yaml."""
        return {"type": "oidc", "auth_discovery_url": self.discovery_url, "client_id": "feast"}

    def token(self, user: str, roles: List[str]) -> str:
        """A signed access token for ``user`` with ``roles``, valid for an hour."""
        claims = {"sub": user, "preferred_username": user, "roles": roles, "exp": int(time.time()) + 3600}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": _KEY_ID})

    def _handler(self) -> type:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = provider._documents.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body or b"{}")

            def log_message(self, *args: Any) -> None:  # no request lines on the tests' output
                pass

        return Handler

    def __enter__(self) -> "OidcProvider":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
