"""PyJWT, an independent JOSE implementation, verifies the PubSub and Chat tokens that
signalwire-sdk mints through Tollgate, with the public keys from Tollgate's JWKS and the
algorithm the JWK names (never the one the token's header claims)."""

import base64
import json
import time

import jwt
import pytest
import requests
from signalwire.rest import RestClient


def b64url_json(segment):
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def b64url(obj):
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
def client(tollgate, project):
    return RestClient(project=project["project_id"], token=project["api_token"], host=tollgate.addr)


@pytest.fixture
def jwks(tollgate):
    r = requests.get(f"http://{tollgate.addr}/.well-known/jwks.json", timeout=10)
    assert r.status_code == 200, r.text
    document = r.json()
    for k in document["keys"]:
        assert "d" not in k, "a private key part is published"
    return jwt.PyJWKSet.from_dict(document)


def verify(token, jwks, project_id):
    """Verifies `token` with the JWKS key its `kid` names, pinned to that key's algorithm."""
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwks[kid]
    assert key.algorithm_name == "ES256", "the JWK names its algorithm"
    return jwt.decode(
        token,
        key,
        algorithms=[key.algorithm_name],
        audience=project_id,
        issuer="tollgate",
        options={"require": ["iss", "aud", "sub", "iat", "exp", "jti"]},
    )


@pytest.mark.parametrize("product, typ", [("pubsub", "PRT"), ("chat", "CRT")])
def test_tokens_verify_against_the_jwks(client, project, jwks, product, typ):
    minted = getattr(client, product).create_token(
        ttl=15,
        channels={"room": {"read": True, "write": True}, "news": {"read": True}},
        member_id="alice",
        state={"display_name": "Alice"},
    )["token"]
    assert jwt.get_unverified_header(minted)["typ"] == typ
    before = int(time.time())
    claims = verify(minted, jwks, project["project_id"])
    assert claims["iss"] == "tollgate"
    assert claims["aud"] == project["project_id"]
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert before - 5 <= claims["iat"] <= before + 5
    assert claims["info"] == {"display_name": "Alice"}
    assert claims["caps"] == [
        {"channels": ["room"], "allow": ["sub", "prs", "hst", "pub"]},
        {"channels": ["news"], "allow": ["sub", "prs", "hst"]},
    ]

    # Another project is another audience.
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(minted, jwks[jwt.get_unverified_header(minted)["kid"]], algorithms=["ES256"], audience="another-project")


@pytest.mark.parametrize("product", ["pubsub", "chat"])
def test_tampered_tokens_fail_verification(client, project, jwks, product):
    minted = getattr(client, product).create_token(ttl=5, channels={"news": {"read": True}}, member_id="mallory")["token"]
    header, payload, signature = minted.split(".")
    claims = b64url_json(payload)
    assert verify(minted, jwks, project["project_id"])["caps"] == [
        {"channels": ["news"], "allow": ["sub", "prs", "hst"]}
    ]

    # Granting oneself write access breaks the signature.
    claims["caps"] = [{"channels": ["news"], "allow": ["sub", "prs", "hst", "pub"]}]
    with pytest.raises(jwt.InvalidSignatureError):
        verify(f"{header}.{b64url(claims)}.{signature}", jwks, project["project_id"])
    # So does a longer life, and so does a changed signature.
    longer = {**b64url_json(payload), "exp": b64url_json(payload)["exp"] + 3600}
    with pytest.raises(jwt.InvalidSignatureError):
        verify(f"{header}.{b64url(longer)}.{signature}", jwks, project["project_id"])
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    with pytest.raises(jwt.InvalidSignatureError):
        verify(f"{header}.{payload}.{flipped}", jwks, project["project_id"])

    # A header naming another algorithm is refused: the JWK pins ES256.
    hs = b64url({**b64url_json(header), "alg": "HS256"})
    with pytest.raises(jwt.InvalidAlgorithmError):
        verify(f"{hs}.{payload}.{signature}", jwks, project["project_id"])
