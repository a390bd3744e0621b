"""SignalWire's Python client manages subscribers and their tokens against Tollgate."""

import base64
import json
import time

import pytest
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


def test_subscriber_token_extras_and_errors(client):
    fp = "Vg1h7IDV3AR6kTpCkZPHOVs32B81DX1naHiHbYoKXgY"
    t = client.fabric.tokens.create_subscriber_token(
        reference="bob@example.com", extras={"fingerprint": fp, "scope": "sat:refresh"}
    )
    assert t["token"]
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
