#!/usr/bin/env python3
"""OAuth 2.0 interoperability: Portcullis's authorization server driven by standard clients.

- authlib (PyPI), unmodified: client credentials with HTTP Basic and with an RFC 7523 client
  assertion (client_secret_jwt), refresh-token rotation and reuse detection, RFC 7009
  revocation, RFC 7662 introspection.
- PyJWT with cryptography: the access token is verified against the published JWKS (EdDSA),
  with the issuer and audience of the RFC 8414 metadata.
- websocket-client: a delegated token limited to one instrument and a max_qty authenticates a
  WebSocket connection (Authorization: Bearer at the upgrade); an order on another instrument
  or above max_qty is refused, one inside the limits is placed; revoking the token ends the
  connection's rights at once.

Prints one `ok: <check>` line per check; exits non-zero at the first failure.
"""
import argparse
import json
import os
import sys
import time

import jwt
import requests
import websocket
from authlib.integrations.base_client import OAuthError as ClientOAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc7523 import ClientSecretJWT


def fail(msg):
    print(f"FAILED: {msg}", flush=True)
    sys.exit(1)


def ok(msg):
    print(f"ok: {msg}", flush=True)


def check(cond, msg):
    if not cond:
        fail(msg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="https://127.0.0.1:PORT")
    ap.add_argument("--ca", required=True, help="PEM certificate the server presents")
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--admin-id", required=True)
    ap.add_argument("--admin-secret", required=True)
    ap.add_argument("--ws-url", required=True)
    ap.add_argument("--symbol", required=True)
    ap.add_argument("--other-symbol", required=True)
    args = ap.parse_args()
    # Every HTTPS request (authlib's included) trusts the server's certificate.
    os.environ["REQUESTS_CA_BUNDLE"] = args.ca

    meta = requests.get(
        f"{args.base}/.well-known/oauth-authorization-server", verify=args.ca, timeout=10
    ).json()
    check(meta["issuer"] == args.base, f"issuer {meta['issuer']!r}")
    token_url = meta["token_endpoint"]
    ok("metadata")

    # Client credentials over HTTP Basic.
    s = OAuth2Session(
        args.client_id,
        args.secret,
        scope="trade read",
        token_endpoint_auth_method="client_secret_basic",
    )
    tok = s.fetch_token(token_url, grant_type="client_credentials")
    check(tok["token_type"].lower() == "bearer", f"token_type {tok}")
    check(tok["expires_in"] == 600, f"expires_in {tok['expires_in']}")
    check("refresh_token" in tok, "a refresh token is issued")
    ok("client_credentials with client_secret_basic")

    # The JWT verifies with PyJWT against the published JWKS.
    jwks = requests.get(meta["jwks_uri"], verify=args.ca, timeout=10).json()
    header = jwt.get_unverified_header(tok["access_token"])
    check(header["alg"] == "EdDSA" and header["typ"] == "at+jwt", f"header {header}")
    keyset = jwt.PyJWKSet.from_dict(jwks)
    key = next(k for k in keyset.keys if k.key_id == header["kid"])
    claims = jwt.decode(
        tok["access_token"],
        key.key,
        algorithms=["EdDSA"],
        audience=meta["issuer"],
        issuer=meta["issuer"],
    )
    check(claims["client_id"] == args.client_id, f"claims {claims}")
    check(set(claims["scope"].split()) == {"trade", "read"}, f"scope {claims['scope']}")
    check(claims["exp"] - claims["iat"] == 600, "10-minute lifetime")
    tampered = tok["access_token"][:-4] + ("AAAA" if not tok["access_token"].endswith("AAAA") else "BBBB")
    try:
        jwt.decode(tampered, key.key, algorithms=["EdDSA"], audience=meta["issuer"])
        fail("a tampered token verified")
    except jwt.InvalidTokenError:
        pass
    ok("access token verified by PyJWT against the JWKS")

    # Refresh-token rotation and reuse detection.
    first_refresh = tok["refresh_token"]
    tok2 = s.refresh_token(token_url, refresh_token=first_refresh)
    check(tok2["refresh_token"] != first_refresh, "the refresh token rotates")
    check(tok2["access_token"] != tok["access_token"], "a new access token")
    ok("refresh token rotated")
    try:
        s.refresh_token(token_url, refresh_token=first_refresh)
        fail("a spent refresh token was accepted")
    except (OAuth2Error, ClientOAuthError) as e:
        check(e.error == "invalid_grant", f"reuse error {e.error}")
    try:
        s.refresh_token(token_url, refresh_token=tok2["refresh_token"])
        fail("the family survived the reuse of a spent refresh token")
    except (OAuth2Error, ClientOAuthError) as e:
        check(e.error == "invalid_grant", f"family error {e.error}")
    ok("refresh token reuse detected: the whole family is revoked")

    # Introspection (RFC 7662) and revocation (RFC 7009).
    fresh = s.fetch_token(token_url, grant_type="client_credentials")
    r = s.introspect_token(meta["introspection_endpoint"], token=fresh["access_token"])
    info = r.json()
    check(r.status_code == 200 and info["active"] is True, f"introspection {info}")
    check(info["client_id"] == args.client_id, f"introspection {info}")
    r = s.revoke_token(
        meta["revocation_endpoint"],
        token=fresh["access_token"],
        token_type_hint="access_token",
    )
    check(r.status_code == 200, f"revocation status {r.status_code}")
    info = s.introspect_token(meta["introspection_endpoint"], token=fresh["access_token"]).json()
    check(info == {"active": False}, f"after revocation {info}")
    ok("introspection and revocation")

    # An admin key introspects another client's token.
    admin = OAuth2Session(args.admin_id, args.admin_secret)
    other = s.fetch_token(token_url, grant_type="client_credentials")
    info = admin.introspect_token(meta["introspection_endpoint"], token=other["access_token"]).json()
    check(info["active"] is True and info["client_id"] == args.client_id, f"admin view {info}")
    ok("an admin key introspects another client's token")

    # Client authentication by an RFC 7523 assertion (HS256 with the secret's text).
    sj = OAuth2Session(
        args.client_id,
        args.secret,
        scope="read",
        # authlib's default assertion lifetime is an hour; the server accepts at most 5
        # minutes (it remembers each assertion id until its expiry).
        token_endpoint_auth_method=ClientSecretJWT(
            token_url, claims={"exp": int(time.time()) + 120}
        ),
    )
    tj = sj.fetch_token(token_url, grant_type="client_credentials")
    check(tj["scope"] == "read", f"narrowed scope {tj['scope']}")
    ok("client_credentials with an RFC 7523 client_secret_jwt assertion and a narrower scope")

    # Wrong secret: invalid_client, 401.
    bad = OAuth2Session(args.client_id, "0" * 64)
    try:
        bad.fetch_token(token_url, grant_type="client_credentials")
        fail("a wrong secret got a token")
    except (OAuth2Error, ClientOAuthError) as e:
        check(e.error == "invalid_client", f"wrong secret error {e.error}")
    ok("a wrong secret is invalid_client")

    # A delegated token: one instrument, max_qty 1, on a WebSocket connection.
    d = s.fetch_token(
        token_url,
        grant_type="client_credentials",
        scope="trade",
        instruments=args.symbol,
        max_qty="1",
    )
    dclaims = jwt.decode(
        d["access_token"], key.key, algorithms=["EdDSA"], audience=meta["issuer"]
    )
    check(dclaims["instruments"] == [args.symbol] and dclaims["max_qty"] == "1", f"{dclaims}")
    ws = websocket.create_connection(
        args.ws_url,
        header=[f"Authorization: Bearer {d['access_token']}"],
        timeout=10,
    )
    n = [0]

    def call(method, params, signed=True):
        n[0] += 1
        req_id = f"r{n[0]}"
        p = dict(params)
        if signed:
            # Signed methods carry a timestamp; on a logged-on connection, no signature.
            p["timestamp"] = int(time.time() * 1000)
        ws.send(json.dumps({"id": req_id, "method": method, "params": p}))
        while True:
            msg = json.loads(ws.recv())
            if msg.get("id") == req_id:
                return msg

    def order(symbol, qty, cid):
        return call(
            "order.place",
            {
                "symbol": symbol,
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "price": "100",
                "quantity": qty,
                "newClientOrderId": cid,
            },
        )

    st = call("session.status", {}, signed=False)
    check(st["status"] == 200 and st["result"]["apiKey"] == args.client_id, f"status {st}")
    a = order(args.other_symbol, "0.01", "d-other")
    check(a["status"] == 400 and a["error"]["code"] == -2010, f"other instrument {a}")
    a = order(args.symbol, "2", "d-big")
    check(a["status"] == 400 and a["error"]["code"] == -2010, f"above max_qty {a}")
    a = order(args.symbol, "0.01", "d-ok")
    check(a["status"] == 200 and a["result"]["status"] == "NEW", f"allowed order {a}")
    ok("delegated token: another instrument and a quantity above max_qty are refused")

    s.revoke_token(meta["revocation_endpoint"], token=d["access_token"])
    a = order(args.symbol, "0.01", "d-after")
    check(a.get("status") != 200, f"an order after revocation {a}")
    ok("a revoked token ends the connection's rights at once")
    ws.close()

    # A bad token is refused at the upgrade.
    try:
        websocket.create_connection(
            args.ws_url, header=["Authorization: Bearer not.a.token"], timeout=10
        )
        fail("an invalid bearer token was upgraded")
    except websocket.WebSocketBadStatusException as e:
        check(e.status_code == 401, f"upgrade status {e.status_code}")
    ok("an invalid bearer token gets 401 at the upgrade")


if __name__ == "__main__":
    main()
