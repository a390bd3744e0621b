"""centrifuge-python (PyPI), unchanged, against Tollgate's gateway: seed 000's flow from
Python — a connection token and a subscription token from Tollgate, a publication from the
server API."""

import asyncio

import pytest
import requests
from centrifuge import Client, SubscriptionEventHandler

from conftest import Tollgate

API_KEY = "python-interop-api-key-0123456789abcdef"
USER = "123e4567-e89b-12d3-a456-426614174000"


@pytest.fixture
def server():
    s = Tollgate(TOLLGATE_CENTRIFUGO__API_KEY=API_KEY)
    try:
        yield s
    finally:
        assert s.stop() == 0


def test_centrifuge_python_subscribes_and_receives(server):
    project = server.cli("project", "create", "--name", "py")
    base = f"http://{server.addr}"
    sat = requests.post(
        f"{base}/api/fabric/subscribers/tokens",
        auth=(project["project_id"], project["api_token"]),
        json={"reference": USER},
        timeout=10,
    ).json()["token"]
    bearer = {"Authorization": f"Bearer {sat}"}
    channel = f"user:{USER}"

    async def connection_token():
        return requests.post(f"{base}/api/v1/centrifugo/connection-token", headers=bearer, json={}, timeout=10).json()["token"]

    async def subscription_token(ch):
        return requests.post(
            f"{base}/api/v1/centrifugo/subscription-token", headers=bearer, json={"channel": ch}, timeout=10
        ).json()["token"]

    async def scenario():
        loop = asyncio.get_running_loop()
        received = loop.create_future()

        class Events(SubscriptionEventHandler):
            async def on_publication(self, ctx):
                if not received.done():
                    received.set_result(ctx.pub.data)

        client = Client(f"ws://{server.addr}/connection/websocket", get_token=connection_token)
        sub = client.new_subscription(channel, events=Events(), get_token=subscription_token)
        await client.connect()
        await sub.subscribe()
        await sub.ready(timeout=5)
        r = requests.post(
            f"{base}/api/publish",
            headers={"X-API-Key": API_KEY},
            json={"channel": channel, "data": {"event": "invoice.updated"}},
            timeout=10,
        )
        assert r.json() == {"result": {}}
        data = await asyncio.wait_for(received, 5)
        await client.disconnect()
        return data

    assert asyncio.run(scenario()) == {"event": "invoice.updated"}
