"""Fixtures: the real tollgate binary on a free port over a fresh SQLite database, started by
interop/start-tollgate (the launcher the Node suite shares)."""

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from centrifuge import Client, SubscriptionEventHandler

BIN = os.environ.get("TOLLGATE_BIN")
LAUNCHER = Path(__file__).resolve().parent.parent / "start-tollgate"


class Tollgate:
    """A running `tollgate serve` plus its CLI on the same database.

    `settings` are TOLLGATE_* variables; `config_toml` is the text of a config file;
    `public_url` sets gateway.public_url to the address the server listens on.
    """

    def __init__(self, config_toml=None, public_url=False, **settings):
        if not BIN:
            pytest.fail("TOLLGATE_BIN must name the tollgate binary (scripts/test sets it)")
        cmd = [sys.executable, str(LAUNCHER), "--bin", BIN]
        for key, value in settings.items():
            cmd += ["--set", f"{key}={value}"]
        if config_toml is not None:
            cmd += ["--config", config_toml]
        if public_url:
            cmd.append("--public-url")
        self.logs = []
        # stdin stays open as a pipe: if this process dies, the launcher sees EOF and stops
        # the server.
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._pump = threading.Thread(target=self._read_logs, daemon=True)
        self._pump.start()
        line = self.proc.stdout.readline()  # the launcher gives up by itself after 30 s
        if not line:
            self.proc.wait(10)
            self._pump.join(5)
            raise RuntimeError("tollgate did not start:\n" + "".join(self.logs))
        info = json.loads(line)
        self.addr = info["addr"]
        self.data_dir = info["data_dir"]
        self.settings = info["env"]

    def _read_logs(self):
        for line in self.proc.stderr:
            self.logs.append(line)

    def _env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
        return {**env, **self.settings}

    def run(self, *args):
        """Runs a CLI command on the server's database; returns the CompletedProcess."""
        return subprocess.run([BIN, *args], env=self._env(), capture_output=True, text=True, timeout=60)

    def cli(self, *args):
        """Runs a CLI command with `--json`; returns its one JSON object."""
        out = self.run(*args, "--json")
        if out.returncode != 0:
            raise AssertionError(f"tollgate {' '.join(args)} --json exited {out.returncode}: {out.stderr}")
        return json.loads(out.stdout)

    def stop(self):
        """SIGTERM; returns the server's exit code (the launcher passes it on)."""
        self.proc.terminate()
        code = self.proc.wait(60)
        self._pump.join(5)
        self.proc.stdin.close()
        self.proc.stdout.close()
        return code


class Subscriber:
    """A centrifuge-python client on its own event loop, connected with `token` and
    subscribed to `channels`; it records the data of every publication per channel."""

    def __init__(self, url, token, channels):
        self.received = {ch: [] for ch in channels}
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        outer = self

        def events(channel):
            class Events(SubscriptionEventHandler):
                async def on_publication(self, ctx):
                    outer.received[channel].append(ctx.pub.data)

            return Events()

        async def start():
            self.client = Client(url, token=token)
            subs = [self.client.new_subscription(ch, events=events(ch)) for ch in channels]
            await self.client.connect()
            for sub in subs:
                await sub.subscribe()
            for sub in subs:
                await sub.ready(timeout=10)

        try:
            asyncio.run_coroutine_threadsafe(start(), self.loop).result(15)
        except BaseException:
            self.close()
            raise

    def wait_for(self, channel, n, timeout=5):
        """The data received on `channel` once there are `n` (or when `timeout` passes)."""
        deadline = time.monotonic() + timeout
        while len(self.received[channel]) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.received[channel])

    def close(self):
        async def shutdown():
            if hasattr(self, "client"):
                await self.client.disconnect()
            # Let the client's background tasks finish before the loop stops.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def tollgate():
    # No refresh reuse leeway, so the suite can show an immediate replay revoking a family.
    server = Tollgate(
        TOLLGATE_GATEWAY__PUBLIC_URL="ws://127.0.0.1:4000",
        TOLLGATE_FABRIC__REFRESH_REUSE_LEEWAY="0",
    )
    try:
        yield server
    finally:
        assert server.stop() == 0, "tollgate did not exit cleanly on SIGTERM"


@pytest.fixture
def project(tollgate):
    return tollgate.cli("project", "create", "--name", "interop")
