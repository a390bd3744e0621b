"""Fixtures: the real tollgate binary on a random port over a fresh SQLite database."""

import json
import os
import re
import subprocess
import tempfile
import threading

import pytest

BIN = os.environ.get("TOLLGATE_BIN")


def _env(data_dir, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env["TOLLGATE_DATABASE_URL"] = f"sqlite://{data_dir}/tollgate.db"
    env["TOLLGATE_LOG"] = "info"
    env.update(extra)
    return env


class Tollgate:
    """A running `tollgate serve` plus its CLI on the same database."""

    def __init__(self, data_dir, config_toml=None, **settings):
        self.data_dir = data_dir
        self.settings = settings
        self.logs = []
        if config_toml is not None:
            path = os.path.join(data_dir, "tollgate.toml")
            with open(path, "w", encoding="utf-8") as f:
                f.write(config_toml)
            self.settings["TOLLGATE_CONFIG"] = path
        self.proc = subprocess.Popen(
            [BIN, "serve"],
            env=_env(data_dir, TOLLGATE_LISTEN="127.0.0.1:0", **settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready = threading.Event()
        self.addr = None

        def pump():
            for line in self.proc.stderr:
                self.logs.append(line)
                m = re.search(r"addr=(\S+)", line)
                if m and not ready.is_set():
                    self.addr = m.group(1)
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(30):
            self.proc.kill()
            raise RuntimeError("tollgate did not start:\n" + "".join(self.logs))

    def cli(self, *args):
        out = subprocess.run(
            [BIN, *args, "--json"],
            env=_env(self.data_dir, **self.settings),
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout)

    def stop(self):
        self.proc.terminate()
        return self.proc.wait(30)


@pytest.fixture
def tollgate():
    if not BIN:
        pytest.fail("TOLLGATE_BIN must name the tollgate binary (scripts/test sets it)")
    with tempfile.TemporaryDirectory() as data_dir:
        # No refresh reuse leeway, so the suite can show an immediate replay revoking a family.
        server = Tollgate(
            data_dir,
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
