"""PyJWT, an independent JOSE implementation, verifies the Centrifugo tokens Tollgate mints:
with the shared HMAC secret, and with keys fetched from Tollgate's JWKS. It also signs the
application's own user JWTs that Tollgate verifies."""

import tempfile
import time
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import Tollgate

HMAC = "shared-with-an-external-centrifugo-0123456789abcdef"


@pytest.fixture
def hmac_tollgate():
    server = Tollgate(TOLLGATE_CENTRIFUGO__TOKEN_HMAC_SECRET_KEY=HMAC)
    try:
        yield server
    finally:
        assert server.stop() == 0


def login(server, project, user_id):
    r = requests.post(
        f"http://{server.addr}/api/fabric/subscribers/tokens",
        auth=(project["project_id"], project["api_token"]),
        json={"reference": user_id},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()["token"]


def subscription_token(server, bearer, channel):
    return requests.post(
        f"http://{server.addr}/api/v1/centrifugo/subscription-token",
        headers={"Authorization": f"Bearer {bearer}"},
        json={"channel": channel},
        timeout=10,
    )


def test_tokens_verify_with_keys_from_the_jwks(tollgate, project):
    user = str(uuid.uuid4())
    sat = login(tollgate, project, user)
    r = subscription_token(tollgate, sat, f"user:{user}")
    assert r.status_code == 200, r.text
    token = r.json()["token"]

    jwks = jwt.PyJWKClient(f"http://{tollgate.addr}/.well-known/jwks.json")
    key = jwks.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token, key.key, algorithms=["ES256"], audience=project["project_id"], issuer="tollgate",
        options={"require": ["exp", "iat", "sub", "aud", "iss"]},
    )
    assert claims["sub"] == user
    assert claims["channel"] == f"user:{user}"
    assert claims["exp"] - claims["iat"] == 3600

    assert subscription_token(tollgate, sat, f"user:{uuid.uuid4()}").status_code == 403
    assert subscription_token(tollgate, sat, "user:not-a-uuid").status_code == 422
    assert subscription_token(tollgate, "nonsense", f"user:{user}").status_code == 401


def test_tokens_verify_with_the_shared_hmac_secret(hmac_tollgate):
    project = hmac_tollgate.cli("project", "create", "--name", "hmac")
    user = str(uuid.uuid4())
    sat = login(hmac_tollgate, project, user)
    r = subscription_token(hmac_tollgate, sat, f"$user:{user}")
    assert r.status_code == 200, r.text
    aud = project["project_id"]
    claims = jwt.decode(r.json()["token"], HMAC, algorithms=["HS256"], audience=aud)
    assert claims["sub"] == user and claims["channel"] == f"$user:{user}"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(r.json()["token"], HMAC + "x", algorithms=["HS256"], audience=aud)
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(r.json()["token"], HMAC, algorithms=["HS256"], audience="another-project")

    r = requests.post(
        f"http://{hmac_tollgate.addr}/api/v1/centrifugo/connection-token",
        headers={"Authorization": f"Bearer {sat}"},
        json={},
        timeout=10,
    )
    conn = jwt.decode(r.json()["token"], HMAC, algorithms=["HS256"], audience=aud)
    assert conn["sub"] == user and "channel" not in conn


def test_app_user_jwts_signed_by_pyjwt(tollgate, project):
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with tempfile.NamedTemporaryFile(suffix=".pem") as f:
        f.write(pem)
        f.flush()
        tollgate.cli(
            "auth-key", "add", "--project", project["project_id"],
            "--issuer", "https://app.example", "--audience", "tollgate",
            "--public-key-file", f.name,
        )
    user = str(uuid.uuid4())
    now = int(time.time())
    claims = {"sub": user, "iss": "https://app.example", "aud": "tollgate", "iat": now, "exp": now + 300}
    user_jwt = jwt.encode(claims, private, algorithm="ES256")
    assert subscription_token(tollgate, user_jwt, f"user:{user}").status_code == 200
    wrong_aud = jwt.encode({**claims, "aud": "other"}, private, algorithm="ES256")
    assert subscription_token(tollgate, wrong_aud, f"user:{user}").status_code == 401
    other_key = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(claims, other_key, algorithm="ES256")
    assert subscription_token(tollgate, forged, f"user:{user}").status_code == 401

    listed = tollgate.cli("auth-key", "list", "--project", project["project_id"])
    assert listed["auth_keys"] == [{"issuer": "https://app.example", "audience": "tollgate", "kind": "ES256"}]
    removed = tollgate.cli("auth-key", "remove", "--project", project["project_id"], "--issuer", "https://app.example")
    assert removed == {"issuer": "https://app.example", "removed": True}
    assert subscription_token(tollgate, user_jwt, f"user:{user}").status_code == 401
