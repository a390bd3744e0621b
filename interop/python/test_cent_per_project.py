"""Per-project server API keys, driven with cent (PyPI) and centrifuge-python subscribers.

Each project gets its own key (`tollgate server-key create --project ID --name N --json`
prints `{"id", "key"}`); with it, cent reaches the Centrifugo-compatible server API for that
project only. Projects are isolated: the same channel name in two projects names two
channels, so a publish with P1's key reaches P1's subscribers of "news" and not P2's, and
`channels` and `history` see only the key's own project.

No deployment-wide `centrifugo.api_key` is configured here: every call is authorized by a
project's own key.
"""

import time

import pytest
import requests
from cent import (
    CentUnauthorizedError,
    ChannelsRequest,
    Client as Cent,
    HistoryRequest,
    InfoRequest,
    PublishRequest,
)

from conftest import Subscriber, Tollgate

CONFIG = """
[gateway.namespaces.chat]
history_size = 20
history_ttl = "10m"
"""
# How long a publication that should not arrive is given to arrive anyway.
SILENCE = 1.0


@pytest.fixture
def server():
    s = Tollgate(config_toml=CONFIG)
    try:
        yield s
    finally:
        assert s.stop() == 0, "tollgate did not exit cleanly on SIGTERM"


class Project:
    def __init__(self, server, name):
        self.server = server
        created = server.cli("project", "create", "--name", name)
        self.id = created["project_id"]
        self.api_token = created["api_token"]
        key = server.cli("server-key", "create", "--project", self.id, "--name", f"{name}-backend")
        assert set(key) == {"id", "key"}, key
        self.key_id, self.key = key["id"], key["key"]
        self.cent = Cent(f"http://{server.addr}/api", self.key)

    def subscriber(self, member, channels):
        """A centrifuge-python client of this project (a PubSub token) on `channels`."""
        r = requests.post(
            f"http://{self.server.addr}/api/pubsub/tokens",
            auth=(self.id, self.api_token),
            json={"ttl": 5, "member_id": member, "channels": {ch: {"read": True} for ch in channels}},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        return Subscriber(f"ws://{self.server.addr}/connection/websocket", r.json()["token"], channels)


@pytest.fixture
def projects(server):
    return Project(server, "p1"), Project(server, "p2")


def test_a_project_key_publishes_only_to_its_own_project(projects):
    p1, p2 = projects
    s1 = p1.subscriber("p1-member", ["news", "p1-only"])
    s2 = p2.subscriber("p2-member", ["news", "p2-only"])
    try:
        p1.cent.publish(PublishRequest(channel="news", data={"for": "p1"}))
        assert s1.wait_for("news", 1) == [{"for": "p1"}]
        p2.cent.publish(PublishRequest(channel="news", data={"for": "p2"}))
        assert s2.wait_for("news", 1) == [{"for": "p2"}]
        time.sleep(SILENCE)
        assert s1.received["news"] == [{"for": "p1"}], "P2's publish reached P1's subscriber"
        assert s2.received["news"] == [{"for": "p2"}], "P1's publish reached P2's subscriber"

        # `channels` lists the key's own project's channels, under the names its clients use.
        mine = p1.cent.channels(ChannelsRequest()).channels
        assert set(mine) == {"news", "p1-only"}
        assert mine["news"].num_clients == 1, "P2's subscriber of 'news' is counted for P1"
        theirs = p2.cent.channels(ChannelsRequest()).channels
        assert set(theirs) == {"news", "p2-only"}
        assert theirs["news"].num_clients == 1
    finally:
        s1.close()
        s2.close()


def test_a_project_key_sees_only_its_own_history(projects):
    p1, p2 = projects
    published = p1.cent.publish(PublishRequest(channel="chat:room", data={"secret": "p1"}))
    assert published.offset == 1
    own = p1.cent.history(HistoryRequest(channel="chat:room", limit=10))
    assert [p.data for p in own.publications] == [{"secret": "p1"}]
    other = p2.cent.history(HistoryRequest(channel="chat:room", limit=10))
    assert [p.data for p in other.publications] == [], "P2's key reads P1's history"


def test_both_header_forms_and_a_revoked_key(server, projects):
    p1, _ = projects
    base = f"http://{server.addr}/api/info"
    assert requests.post(base, headers={"Authorization": f"apikey {p1.key}"}, json={}, timeout=10).status_code == 200
    assert requests.post(base, headers={"X-API-Key": p1.key}, json={}, timeout=10).status_code == 200
    assert requests.post(base, headers={"X-API-Key": p1.key + "x"}, json={}, timeout=10).status_code == 401
    assert requests.post(base, json={}, timeout=10).status_code == 401

    second = server.cli("server-key", "create", "--project", p1.id, "--name", "rotating")
    rotating = Cent(f"http://{server.addr}/api", second["key"])
    rotating.info(InfoRequest())

    listed = server.run("server-key", "list", "--project", p1.id, "--json")
    assert listed.returncode == 0, listed.stderr
    assert p1.key_id in listed.stdout and second["id"] in listed.stdout
    assert p1.key not in listed.stdout and second["key"] not in listed.stdout, "a key is shown only once"

    revoked = server.run("server-key", "revoke", "--project", p1.id, second["id"])
    assert revoked.returncode == 0, revoked.stderr
    # The CLI writes the database the running server reads: allow it a moment to notice.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if requests.post(base, headers={"X-API-Key": second["key"]}, json={}, timeout=10).status_code == 401:
            break
        time.sleep(0.1)
    with pytest.raises(CentUnauthorizedError):
        rotating.info(InfoRequest())
    with pytest.raises(CentUnauthorizedError):
        rotating.publish(PublishRequest(channel="news", data={}))
    # The project's other key is unaffected.
    p1.cent.info(InfoRequest())
