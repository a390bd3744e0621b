"""cent (PyPI), unchanged, against a two-node cluster: a centrifuge-python subscriber on
node A receives what cent publishes through node B, and cent's `info` through either node
lists both nodes. The nodes share one database, one master key and a private
`redis-server` this test starts on a free port (never the machine's own Redis)."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import jwt
import pytest
from cent import Client as Cent, InfoRequest, PresenceStatsRequest, PublishRequest

from conftest import Subscriber, Tollgate

API_KEY = "cent-cluster-api-key-0123456789abcdef"
SECRET = "cent-cluster-shared-hmac-secret-0123456789"
CONFIG = """
[gateway.namespaces.chat]
presence = true
history_size = 50
history_ttl = "10m"
allow_subscribe_for_client = true
"""


def redis_binary():
    found = os.environ.get("TOLLGATE_TEST_REDIS_SERVER") or shutil.which("redis-server")
    if not found:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing (scripts/test installs it)")
        pytest.skip("redis-server is not installed")
    return found


@pytest.fixture
def redis_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not listen")
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def cluster(redis_url):
    common = {
        "TOLLGATE_BROKER_URL": redis_url,
        "TOLLGATE_CENTRIFUGO__API_KEY": API_KEY,
        "TOLLGATE_CENTRIFUGO__TOKEN_HMAC_SECRET_KEY": SECRET,
    }
    a = Tollgate(config_toml=CONFIG, **common)
    b = None
    try:
        key = a.settings.get("TOLLGATE_SECRET_KEY") or (Path(a.data_dir) / "tollgate.key").read_text().strip()
        b = Tollgate(
            config_toml=CONFIG,
            TOLLGATE_DATABASE_URL=a.settings["TOLLGATE_DATABASE_URL"],
            TOLLGATE_SECRET_KEY=key,
            **common,
        )
        # The installation's one project, created through A, is what both nodes' shared
        # credentials act for.
        a.cli("project", "create", "--name", "clustered")
        yield a, b
    finally:
        if b is not None:
            assert b.stop() == 0
        assert a.stop() == 0


def test_cent_through_one_node_reaches_a_subscriber_on_the_other(cluster):
    a, b = cluster
    token = jwt.encode({"sub": "py-user"}, SECRET, algorithm="HS256")
    subscriber = Subscriber(f"ws://{a.addr}/connection/websocket", token, ["chat:room"])
    through_b = Cent(f"http://{b.addr}/api", API_KEY)
    through_a = Cent(f"http://{a.addr}/api", API_KEY)
    try:
        published = through_b.publish(PublishRequest(channel="chat:room", data={"n": 1}))
        assert published.offset == 1
        assert subscriber.wait_for("chat:room", 1) == [{"n": 1}]

        # Presence written by A is read through B.
        stats = through_b.presence_stats(PresenceStatsRequest(channel="chat:room"))
        assert (stats.num_clients, stats.num_users) == (1, 1)

        # Both nodes heartbeat; `info` through either lists both, with the subscriber on
        # exactly one of them. The answering node counts live, the other as of its last
        # heartbeat (at most 2 s old), so wait for that to catch up.
        for cent in (through_a, through_b):
            deadline = time.monotonic() + 10
            while True:
                nodes = cent.info(InfoRequest()).nodes
                counts = sorted(n.num_clients for n in nodes)
                if counts == [0, 1] or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert counts == [0, 1], [vars(n) for n in nodes]
            assert len({n.uid for n in nodes}) == 2
    finally:
        subscriber.close()
