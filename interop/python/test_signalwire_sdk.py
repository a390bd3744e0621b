"""SignalWire's official Python client (PyPI signalwire-sdk), unchanged, against Tollgate."""

import base64
import json
import time
import uuid

import pytest
from signalwire.rest import RestClient, SignalWireRestError


def decode(token, part):
    seg = token.split(".")[part]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


@pytest.fixture
def client(tollgate, project):
    # A bare host:port on loopback makes the client use plain http.
    return RestClient(project=project["project_id"], token=project["api_token"], host=tollgate.addr)


def test_pubsub_token(client, project):
    res = client.pubsub.create_token(
        ttl=15,
        channels={"room": {"read": True, "write": True}, "news": {"read": True}},
        member_id="alice",
        state={"display_name": "Alice"},
    )
    assert set(res) == {"token"}
    header, claims = decode(res["token"], 0), decode(res["token"], 1)
    assert header["alg"] == "ES256" and header["typ"] == "PRT" and header["kid"]
    assert header["ch"] == "ws://127.0.0.1:4000"
    assert claims["sub"] == "alice"
    assert claims["aud"] == project["project_id"]
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert claims["info"] == {"display_name": "Alice"}
    assert claims["caps"] == [
        {"channels": ["room"], "allow": ["sub", "prs", "hst", "pub"]},
        {"channels": ["news"], "allow": ["sub", "prs", "hst"]},
    ]


def test_chat_token_with_defaults(client):
    res = client.chat.create_token(ttl=60, channels={"lobby": {"read": True}})
    header, claims = decode(res["token"], 0), decode(res["token"], 1)
    assert header["typ"] == "CRT"
    assert uuid.UUID(claims["sub"]).version == 4
    assert claims["info"] == {}
    assert claims["t"] == 60


def test_env_configured_client(tollgate, project, monkeypatch):
    monkeypatch.setenv("SIGNALWIRE_PROJECT_ID", project["project_id"])
    monkeypatch.setenv("SIGNALWIRE_API_TOKEN", project["api_token"])
    monkeypatch.setenv("SIGNALWIRE_SPACE", tollgate.addr)
    res = RestClient().pubsub.create_token(ttl=1, channels={"a": {"write": True}})
    assert decode(res["token"], 1)["caps"] == [{"channels": ["a"], "allow": ["pub"]}]


def test_validation_errors_surface_as_422(client):
    with pytest.raises(SignalWireRestError) as e:
        client.pubsub.create_token(ttl=None, channels={"a": {"read": True}})
    assert e.value.status_code == 422
    err = e.value.body["errors"][0]
    assert err["attribute"] == "ttl" and err["code"] == "missing_required_parameter"
    assert err["type"] == "validation_error"
    assert e.value.request_id, "X-Request-Id reaches the client"

    with pytest.raises(SignalWireRestError) as e:
        client.chat.create_token(ttl=43201, channels={"sw_x": {"read": True}, "y": {}})
    codes = sorted((x["code"], x["attribute"]) for x in e.value.body["errors"])
    assert codes == [
        ("channel_has_missing_properties", "channels"),
        ("channel_name_is_reserved", "channels"),
        ("invalid_parameter", "ttl"),
    ]

    with pytest.raises(SignalWireRestError) as e:
        client.pubsub.create_token(ttl=5, channels={f"c{i}": {"read": True} for i in range(501)})
    assert e.value.status_code == 422
    assert [(x["code"], x["attribute"]) for x in e.value.body["errors"]] == [
        ("channel_size_limit_exceeded", "channels")
    ]
    # The boundary itself is fine.
    client.pubsub.create_token(ttl=5, channels={f"c{i}": {"read": True} for i in range(500)})

    with pytest.raises(SignalWireRestError) as e:
        client.pubsub.create_token(ttl=5, channels={"a": {"read": True}}, state={"k": "x" * 1993})
    assert [(x["code"], x["attribute"]) for x in e.value.body["errors"]] == [
        ("state_size_limit_exceeded", "state")
    ]
    client.pubsub.create_token(ttl=5, channels={"a": {"read": True}}, state={"k": "x" * 1992})


def test_bad_credentials_and_missing_scope_are_401(tollgate, project):
    wrong = RestClient(project=project["project_id"], token="PT" + "0" * 64, host=tollgate.addr)
    with pytest.raises(SignalWireRestError) as e:
        wrong.pubsub.create_token(ttl=5, channels={"a": {"read": True}})
    assert e.value.status_code == 401
    assert e.value.body == {"error": "Unauthorized"}

    pubsub_only = tollgate.cli(
        "token", "create", "--project", project["project_id"], "--scopes", "pubsub"
    )
    limited = RestClient(project=project["project_id"], token=pubsub_only["api_token"], host=tollgate.addr)
    limited.pubsub.create_token(ttl=5, channels={"a": {"read": True}})
    with pytest.raises(SignalWireRestError) as e:
        limited.chat.create_token(ttl=5, channels={"a": {"read": True}})
    assert e.value.status_code == 401
    assert e.value.body == {"error": "Unauthorized"}


def test_revoked_token_is_refused(tollgate, project, client):
    extra = tollgate.cli("token", "create", "--project", project["project_id"])
    c = RestClient(project=project["project_id"], token=extra["api_token"], host=tollgate.addr)
    c.chat.create_token(ttl=5, channels={"a": {"read": True}})
    tollgate.cli("token", "revoke", "--project", project["project_id"], extra["token_id"])
    with pytest.raises(SignalWireRestError) as e:
        c.chat.create_token(ttl=5, channels={"a": {"read": True}})
    assert e.value.status_code == 401
    # The project's first token is unaffected.
    client.chat.create_token(ttl=5, channels={"a": {"read": True}})


def test_no_secret_reaches_the_logs(tollgate, project, client):
    minted = client.pubsub.create_token(ttl=5, channels={"a": {"read": True}})["token"]
    # The log line is read from the server's stderr by a thread: give it a moment.
    deadline = time.time() + 5
    while "/api/pubsub/tokens" not in "".join(tollgate.logs) and time.time() < deadline:
        time.sleep(0.05)
    logs = "".join(tollgate.logs)
    assert "/api/pubsub/tokens" in logs
    assert project["api_token"] not in logs
    assert minted not in logs
