"""cent (PyPI), unchanged, against Tollgate's Centrifugo-compatible server API: publish,
broadcast, presence, presence_stats, history, channels and info, with a real
centrifuge-python subscriber connected through a token the application signed itself
(PyJWT, HS256, the shared secret), exactly as it would for Centrifugo.

This is the single-Centrifugo migration path: one project on the installation, which the
deployment-wide secret and API key act for."""

import jwt
import pytest
from cent import (
    BroadcastRequest,
    CentApiResponseError,
    CentUnauthorizedError,
    ChannelsRequest,
    Client as Cent,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
)

from conftest import Subscriber, Tollgate

API_KEY = "cent-interop-api-key-0123456789abcdef"
SECRET = "cent-interop-shared-hmac-secret-0123456789"
CONFIG = """
[gateway.namespaces.chat]
presence = true
history_size = 50
history_ttl = "10m"
allow_subscribe_for_client = true
"""


@pytest.fixture
def server():
    s = Tollgate(
        config_toml=CONFIG,
        TOLLGATE_CENTRIFUGO__API_KEY=API_KEY,
        TOLLGATE_CENTRIFUGO__TOKEN_HMAC_SECRET_KEY=SECRET,
    )
    try:
        # The installation's one project: what the shared secret and API key act for.
        s.cli("project", "create", "--name", "migrated")
        yield s
    finally:
        assert s.stop() == 0


def test_cent_drives_the_server_api(server):
    token = jwt.encode({"sub": "py-user"}, SECRET, algorithm="HS256")
    subscriber = Subscriber(f"ws://{server.addr}/connection/websocket", token, ["chat:room"])
    cent = Cent(f"http://{server.addr}/api", API_KEY)
    try:
        published = cent.publish(PublishRequest(channel="chat:room", data={"n": 1}))
        assert published.offset == 1
        assert published.epoch

        broadcast = cent.broadcast(
            BroadcastRequest(channels=["chat:room", "chat:other"], data={"n": 2})
        )
        assert len(broadcast.responses) == 2
        assert broadcast.responses[0].result.offset == 2
        assert subscriber.wait_for("chat:room", 2) == [{"n": 1}, {"n": 2}]

        presence = cent.presence(PresenceRequest(channel="chat:room"))
        assert [p.user for p in presence.presence.values()] == ["py-user"]
        stats = cent.presence_stats(PresenceStatsRequest(channel="chat:room"))
        assert (stats.num_clients, stats.num_users) == (1, 1)

        history = cent.history(HistoryRequest(channel="chat:room", limit=10))
        assert [p.data for p in history.publications] == [{"n": 1}, {"n": 2}]
        assert history.offset == 2 and history.epoch == published.epoch

        channels = cent.channels(ChannelsRequest(pattern="chat:*"))
        assert channels.channels["chat:room"].num_clients == 1

        info = cent.info(InfoRequest())
        assert info.nodes[0].num_clients == 1
        assert info.nodes[0].uid

        # History is off outside the namespace: Centrifugo's 108.
        with pytest.raises(CentApiResponseError) as off:
            cent.history(HistoryRequest(channel="news", limit=1))
        assert off.value.code == 108

        with pytest.raises(CentUnauthorizedError):
            Cent(f"http://{server.addr}/api", "wrong-key").info(InfoRequest())
    finally:
        subscriber.close()
