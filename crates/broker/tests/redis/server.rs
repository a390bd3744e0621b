//! A private `redis-server` per test: started on a free port in a temporary directory,
//! persisting nothing, stopped (and restarted empty) at will, killed when dropped. Tests
//! never touch the machine's own Redis.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `redis-server` is: `TOLLGATE_TEST_REDIS_SERVER`, else `/usr/bin/redis-server`.
fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("TOLLGATE_TEST_REDIS_SERVER")
        .map_or_else(|| PathBuf::from("/usr/bin/redis-server"), PathBuf::from);
    path.exists().then_some(path)
}

/// Whether Redis tests can run here. On CI a missing `redis-server` is a failure.
pub(crate) fn available() -> bool {
    if binary().is_some() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI needs redis-server (set TOLLGATE_TEST_REDIS_SERVER)"
    );
    eprintln!("note: no redis-server; Redis broker test skipped");
    false
}

#[derive(Debug)]
pub(crate) struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl RedisServer {
    pub(crate) fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new(binary().expect("redis-server"))
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (no shutdown courtesy: a crash, as far as clients can tell).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server and starts an empty one on the same port.
    pub(crate) fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Runs a command with redis-cli-like simplicity, for looking at what the broker wrote.
    pub(crate) fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("client")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
