"""SignalWire's Python client manages subscribers and their tokens against Tollgate."""

import base64
import hashlib
import json
import time
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from signalwire.rest import RestClient, SignalWireRestError


def header(token):
    seg = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


@pytest.fixture
def client(tollgate, project):
    return RestClient(project=project["project_id"], token=project["api_token"], host=tollgate.addr)


def test_subscriber_token_refresh_and_replay(client):
    t = client.fabric.tokens.create_subscriber_token(
        reference="alice@example.com", first_name="Alice", display_name="Alice A."
    )
    assert set(t) == {"subscriber_id", "token", "refresh_token"}
    assert header(t["token"]) == {
        "alg": "dir", "enc": "A256GCM", "typ": "SAT", "kid": header(t["token"])["kid"],
        "ch": "ws://127.0.0.1:4000",
    }
    assert header(t["refresh_token"])["typ"] == "Refresh"
    assert t["token"].split(".")[1] == ""

    again = client.fabric.tokens.create_subscriber_token(reference="alice@example.com")
    assert again["subscriber_id"] == t["subscriber_id"]

    r = client.fabric.tokens.refresh_subscriber_token(refresh_token=t["refresh_token"])
    assert set(r) == {"token", "refresh_token"}
    assert r["refresh_token"] != t["refresh_token"]

    with pytest.raises(SignalWireRestError) as e:
        client.fabric.tokens.refresh_subscriber_token(refresh_token=t["refresh_token"])
    assert e.value.status_code == 422
    assert e.value.body["errors"][0]["code"] == "token_invalid"
    assert e.value.body["errors"][0]["attribute"] == "refresh_token"
    # The replay revoked the whole family, the legitimate successor included.
    with pytest.raises(SignalWireRestError) as e:
        client.fabric.tokens.refresh_subscriber_token(refresh_token=r["refresh_token"])
    assert e.value.body["errors"][0]["code"] == "token_invalid"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Device:
    """A device key pair: its RFC 7638 thumbprint is the token's `fingerprint`, and it signs
    the RFC 9449 DPoP proofs that let the device refresh a token bound to it."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
        }
        canonical = json.dumps(
            {k: self.jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":")
        )
        self.fingerprint = b64url(hashlib.sha256(canonical.encode()).digest())

    def proof(self, url):
        claims = {"jti": str(uuid.uuid4()), "htm": "POST", "htu": url, "iat": int(time.time())}
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": self.jwk})


def info(tollgate, token):
    r = requests.get(
        f"http://{tollgate.addr}/api/fabric/subscriber/info",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_fingerprint_and_sat_refresh_bind_the_token_to_the_device(tollgate, project, client):
    device = Device()
    assert len(device.fingerprint) == 43
    t = client.fabric.tokens.create_subscriber_token(
        reference="bob@example.com", extras={"fingerprint": device.fingerprint, "scope": "sat:refresh"}
    )
    assert set(t) == {"subscriber_id", "token", "refresh_token"}
    now = time.time()
    bound = info(tollgate, t["token"])
    assert bound["subscriber_id"] == t["subscriber_id"]
    assert bound["project_id"] == project["project_id"]
    assert bound["scope"] == ["sat:refresh"]
    assert bound["cnf"] == {"jkt": device.fingerprint}
    # Bound to a device, it keeps the default two-hour lifetime.
    assert 7200 - 30 <= bound["expires_at"] - now <= 7200 + 5

    # Without a fingerprint, sat:refresh shortens the token to 60 s and binds nothing.
    unbound = client.fabric.tokens.create_subscriber_token(
        reference="bob@example.com", extras={"scope": "sat:refresh"}
    )
    plain = info(tollgate, unbound["token"])
    assert plain["scope"] == ["sat:refresh"] and "cnf" not in plain
    assert plain["expires_at"] - time.time() <= 60
    default = info(tollgate, client.fabric.tokens.create_subscriber_token(reference="bob@example.com")["token"])
    assert default["scope"] == [] and "cnf" not in default

    refresh_url = f"http://{tollgate.addr}/api/fabric/subscribers/tokens/refresh"

    def refresh(refresh_token, proof=None, auth=None):
        headers = {"DPoP": proof} if proof else {}
        return requests.post(
            refresh_url, json={"refresh_token": refresh_token}, headers=headers, auth=auth, timeout=10
        )

    # A bound token is not refreshed without a proof from the device, even by the project,
    # nor with a proof from another key.
    with pytest.raises(SignalWireRestError) as e:
        client.fabric.tokens.refresh_subscriber_token(refresh_token=t["refresh_token"])
    assert e.value.status_code == 401
    assert refresh(t["refresh_token"]).status_code == 401
    assert refresh(t["refresh_token"], Device().proof(refresh_url)).status_code == 401
    wrong_target = device.proof(f"http://{tollgate.addr}/api/fabric/subscribers/tokens")
    assert refresh(t["refresh_token"], wrong_target).status_code == 401

    # With the device's proof and sat:refresh, the device refreshes without project credentials.
    proof = device.proof(refresh_url)
    r = refresh(t["refresh_token"], proof)
    assert r.status_code == 201, r.text
    pair = r.json()
    assert set(pair) == {"token", "refresh_token"}
    again = info(tollgate, pair["token"])
    assert again["scope"] == ["sat:refresh"] and again["cnf"] == {"jkt": device.fingerprint}
    assert again["subscriber_id"] == t["subscriber_id"]
    # A proof is good once.
    assert refresh(pair["refresh_token"], proof).status_code == 401
    assert refresh(pair["refresh_token"], device.proof(refresh_url)).status_code == 201


def test_subscriber_token_errors(client):
    t = client.fabric.tokens.create_subscriber_token(reference="bob@example.com")
    with pytest.raises(SignalWireRestError) as e:
        client.fabric.tokens.create_subscriber_token(reference="bob@example.com", expire_at=1)
    assert e.value.status_code == 422
    assert e.value.body["errors"][0]["attribute"] == "expire_at"
    with pytest.raises(SignalWireRestError) as e:
        client.fabric.tokens.refresh_subscriber_token(refresh_token=t["token"])
    assert e.value.body["errors"][0]["code"] == "not_a_refresh_token"


def test_subscribers_crud_and_pagination(client):
    created = client.fabric.subscribers.create(email="carol@example.com", first_name="Carol")
    sid = created["id"]
    assert created["subscriber"]["email"] == "carol@example.com"
    assert client.fabric.subscribers.get(sid)["subscriber"]["first_name"] == "Carol"
    updated = client.fabric.subscribers.update(sid, last_name="Jones", timezone="UTC")
    assert updated["subscriber"]["last_name"] == "Jones"
    assert updated["subscriber"]["first_name"] == "Carol"
    assert updated["subscriber"]["timezone"] == "UTC"

    for i in range(5):
        client.fabric.subscribers.create(email=f"user{i}@example.com")
    first_page = client.fabric.subscribers.list(page_size=2)
    assert len(first_page["data"]) == 2 and "next" in first_page["links"]
    emails = [s["subscriber"]["email"] for s in client.fabric.subscribers.paginate(page_size=2)]
    assert len(emails) == 6 and len(set(emails)) == 6
    assert "carol@example.com" in emails

    addresses = client.fabric.subscribers.list_addresses(sid)
    assert len(addresses["data"]) == 1

    with pytest.raises(SignalWireRestError) as e:
        client.fabric.subscribers.create(email="carol@example.com")
    assert e.value.status_code == 422

    client.fabric.subscribers.delete(sid)
    with pytest.raises(SignalWireRestError) as e:
        client.fabric.subscribers.get(sid)
    assert e.value.status_code == 404
    assert e.value.body == {"error": "Not Found"}


def test_guest_and_invite_tokens(client):
    t = client.fabric.tokens.create_subscriber_token(reference="host@example.com")
    address = client.fabric.subscribers.list_addresses(t["subscriber_id"])["data"][0]["id"]
    guest = client.fabric.tokens.create_guest_token(allowed_addresses=[address])
    assert set(guest) == {"token", "refresh_token"}
    invite = client.fabric.tokens.create_invite_token(address_id=address)
    assert set(invite) == {"token"}
    with pytest.raises(SignalWireRestError) as e:
        client.fabric.tokens.create_invite_token(address_id="00000000-0000-0000-0000-000000000000")
    assert e.value.status_code == 422


def test_no_token_or_password_reaches_the_logs(tollgate, client):
    t = client.fabric.tokens.create_subscriber_token(
        reference="dave@example.com", password="swordfish-42"
    )
    r = client.fabric.tokens.refresh_subscriber_token(refresh_token=t["refresh_token"])
    deadline = time.time() + 5
    while "tokens/refresh" not in "".join(tollgate.logs) and time.time() < deadline:
        time.sleep(0.05)
    logs = "".join(tollgate.logs)
    assert "tokens/refresh" in logs
    for secret in ["swordfish-42", t["token"], t["refresh_token"], r["token"], r["refresh_token"]]:
        assert secret not in logs
