//! Load client for Tollgate's WebSocket gateway (Centrifugo protocol v2, JSON).
//!
//! It starts the `tollgate` binary itself (fresh SQLite with one project, which the shared
//! HMAC secret and server API key act for) so it can read the server's RSS, then runs one
//! of:
//!
//! - `idle --n N`: N connections, each connected and subscribed with verified tokens, held
//!   open; reports server RSS per connection.
//! - `connect --n N --concurrency C`: connect + subscribe rate (two token checks each).
//! - `fanout --n N --rounds R`: one channel, N subscribers, R server-API publications;
//!   latency from publish to each receipt (p50/p99/max per round, medians over rounds).
//! - `throughput --conns N --channels K --seconds S`: N subscribers over K channels,
//!   publishers broadcasting as fast as they can; deliveries per second received.
//!
//! - `floor --n N --rounds R`: the fan-out's floor on this machine, without Tollgate: a
//!   child process writes one small message to each of N plain TCP sockets in loops of
//!   blocking writes on two threads (no WebSocket, no runtime), and this process reads them as the
//!   `fanout` client does, minus WebSocket framing. Latency as for `fanout`.
//!
//! Each prints one `RESULT {json}` line for `bench/run`. `--server-cpus LIST` pins the
//! server with `taskset` (run the client itself under `taskset` for the other CPUs).
//!
//! Cluster options (for `bench/run cluster`; without them nothing changes):
//! `--nodes N` starts N server processes on one shared store and spreads the connections
//! over them round-robin (connection k on node k mod N); the server API calls go to node 0.
//! `--env KEY=VALUE` (repeatable) is passed to `project create` and to every node, e.g.
//! `TOLLGATE_BROKER_URL`, `TOLLGATE_DATABASE_URL` (a shared PostgreSQL: required with
//! more than one node) and `TOLLGATE_SECRET_KEY_FILE`. `--redis PID:PORT` (repeatable, one
//! per shard) adds that Redis's CPU time and, from `INFO`, its commands and output bytes
//! per publication to the result.
//!
//! The client shares the machine with the server, so it is built to cost less than the
//! server per connection and per receipt: tokens are signed before the clock starts, each
//! socket reads through a 4 KiB buffer (tungstenite's default 128 KiB buffer is zeroed
//! per read and dominated a profile of the old client), and connections come from many
//! loopback source addresses (127.0.0.0/8), so the kernel's ephemeral-port search does
//! not grow with every connection to the one server address.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const SECRET: &str = "gateway-load-shared-secret-0123456789abcdef";
// At least 32 characters: the server refuses shorter API keys.
const API_KEY: &str = "gateway-load-api-key-0123456789abcdef";

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// An HS256 JWT signed with the shared secret, as an application signs it for Centrifugo.
fn hs256(claims: &Value) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

struct Server {
    child: tokio::process::Child,
    addr: String,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

/// CPU seconds of a process in user space and in the kernel, from `/proc/<pid>/stat`.
fn cpu_split(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (ticks(11), ticks(12))
}

/// CPU seconds (user + system) of a process.
fn cpu_secs(pid: u32) -> f64 {
    let (user, sys) = cpu_split(pid);
    user + sys
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Server {
    /// Starts the server; with `cpus` (a `taskset` list such as `0`), pinned to those CPUs
    /// so its share of the machine is fixed and the client can be pinned to the others.
    ///
    /// `index` numbers the nodes of a cluster: only node 0 creates the project (the others
    /// share its database through `env`). `env` is applied after the defaults.
    async fn start(bin: &str, cpus: Option<&str>, index: usize, env: &[(String, String)]) -> Self {
        let dir = std::env::temp_dir().join(format!("gateway-load-{}-{index}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("tollgate.toml");
        std::fs::write(
            &config,
            "[gateway.namespaces.bench]\nallow_subscribe_for_client = true\n",
        )
        .unwrap();
        let database = format!("sqlite://{}/tollgate.db", dir.display());
        // The installation's one project: the shared secret and API key act for it. The
        // CLI creates a database only when asked to; a baseline build from before that
        // flag existed creates it anyway.
        let help = std::process::Command::new(bin)
            .arg("--help")
            .output()
            .expect("tollgate --help");
        let mut args = vec!["project", "create", "--name", "load", "--json"];
        if String::from_utf8_lossy(&help.stdout).contains("--create-database") {
            args.push("--create-database");
        }
        if index == 0 {
            let created = std::process::Command::new(bin)
                .args(&args)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("TOLLGATE_DATABASE_URL", &database)
                .env("TOLLGATE_LOG", "warn")
                .envs(env.iter().map(|(k, v)| (k, v)))
                .output()
                .expect("tollgate project create");
            assert!(
                created.status.success(),
                "tollgate project create failed: {}",
                String::from_utf8_lossy(&created.stderr)
            );
        }
        let mut command = match cpus {
            Some(list) => {
                let mut c = tokio::process::Command::new("taskset");
                c.args(["-c", list, bin]);
                c
            }
            None => tokio::process::Command::new(bin),
        };
        let mut child = command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TOLLGATE_CONFIG", &config)
            .env("TOLLGATE_DATABASE_URL", &database)
            .env("TOLLGATE_LISTEN", "127.0.0.1:0")
            // Only the "listening" line: request logs would measure the log pipe.
            .env("TOLLGATE_LOG", "warn,tollgate::cli=info")
            .env("TOLLGATE_CENTRIFUGO__TOKEN_HMAC_SECRET_KEY", SECRET)
            .env("TOLLGATE_CENTRIFUGO__API_KEY", API_KEY)
            // The load client is one peer sending much more than a browser would.
            .env("TOLLGATE_GATEWAY__MAX_COMMANDS_PER_SECOND", "0")
            .env("TOLLGATE_GATEWAY__QUEUE_BYTES", "8388608")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start tollgate");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut said = String::new();
        let addr = loop {
            let Some(line) = lines.next_line().await.unwrap() else {
                panic!("tollgate exited early:\n{said}");
            };
            if let Some(rest) = line.split("addr=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            said.push_str(&line);
            said.push('\n');
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            addr,
            _dir: TempDir(dir),
        }
    }

    fn rss_kb(&self) -> u64 {
        let pid = self.child.id().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// CPU seconds the server has used (user + system).
    fn cpu_secs(&self) -> f64 {
        cpu_secs(self.child.id().unwrap())
    }

    /// CPU seconds the server has used, (user, system).
    fn cpu_split(&self) -> (f64, f64) {
        cpu_split(self.child.id().unwrap())
    }

    fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.addr)
    }
}

/// The one frame a connection sends: `connect` as `user` and a `subscribe` per channel,
/// each with its own token (two or more HMAC verifications on the server), signed ahead
/// of the measurement.
fn connect_frame(user: &str, channels: &[String]) -> String {
    let exp = now_secs() + 3600;
    let mut frame =
        json!({"id": 1, "connect": {"token": hs256(&json!({"sub": user, "exp": exp}))}})
            .to_string();
    for (i, ch) in channels.iter().enumerate() {
        let token = hs256(&json!({"sub": user, "channel": ch, "exp": exp}));
        frame.push('\n');
        frame.push_str(
            &json!({"id": i + 2, "subscribe": {"channel": ch, "token": token}}).to_string(),
        );
    }
    frame
}

/// Opens connection number `k` from its own loopback source address, sends its
/// connect/subscribe frame and returns the socket once every reply is in.
async fn connect(server: std::net::SocketAddr, url: &str, k: usize, frame: String) -> Ws {
    let stream = loopback_socket(k)
        .connect(server)
        .await
        .expect("tcp connect");
    stream.set_nodelay(true).unwrap();
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .expect("connect");
    let mut pending = frame.matches('\n').count() + 1;
    ws.send(Message::Text(frame.into())).await.unwrap();
    while pending > 0 {
        let Some(Ok(Message::Text(t))) = ws.next().await else {
            panic!("closed during connect");
        };
        for line in t.as_str().split('\n') {
            if line.contains(r#""error""#) {
                panic!("refused: {line}");
            }
            // Every line but a push is the reply to one of our commands.
            if !line.starts_with(r#"{"push""#) {
                pending -= 1;
            }
        }
    }
    ws
}

/// Reads a connection until it closes, answering the server's `{}` pings; calls `on_pub`
/// per publication. After the handshake the client reads frames itself (server frames are
/// unmasked, and Tollgate never fragments them): a WebSocket library's per-message work is
/// more than a load client sharing the server's two cores should spend.
async fn hold(mut ws: Ws, on_pub: impl Fn(&str)) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // A masked text frame `{}` (mask 0: the server unmasks it like any other).
    const PONG: [u8; 8] = [0x81, 0x82, 0, 0, 0, 0, b'{', b'}'];
    let stream = ws.get_mut();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (mut at, mut pings) = (0, 0);
        while let Some((opcode, payload, len)) = frame(&buf[at..]) {
            match opcode {
                0x1 => {
                    for line in std::str::from_utf8(payload).unwrap_or("").split('\n') {
                        if line == "{}" {
                            pings += 1;
                        } else if line.contains(r#""pub""#) {
                            on_pub(line);
                        }
                    }
                }
                0x8 => return,
                _ => {}
            }
            at += len;
        }
        buf.drain(..at);
        for _ in 0..pings {
            if stream.write_all(&PONG).await.is_err() {
                return;
            }
        }
    }
}

/// The first whole frame in `b`: (opcode, payload, bytes it takes), or `None` if `b` holds
/// less than one frame.
fn frame(b: &[u8]) -> Option<(u8, &[u8], usize)> {
    let (&first, &second) = (b.first()?, b.get(1)?);
    let (len, header) = match second & 0x7f {
        126 => (usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?])), 4),
        127 => (
            usize::try_from(u64::from_be_bytes(b.get(2..10)?.try_into().ok()?)).ok()?,
            10,
        ),
        n => (usize::from(n), 2),
    };
    let payload = b.get(header..header + len)?;
    Some((first & 0x0f, payload, header + len))
}

/// Opens one connection per frame, at most `concurrency` handshakes at a time, spread over
/// the client's runtime threads; connection k goes to node k mod the number of nodes.
async fn open_many(nodes: &[Server], frames: Vec<String>, concurrency: usize) -> Vec<Ws> {
    let targets: Vec<(std::net::SocketAddr, Arc<String>)> = nodes
        .iter()
        .map(|s| (s.addr.parse().unwrap(), Arc::new(s.ws_url())))
        .collect();
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let tasks: Vec<_> = frames
        .into_iter()
        .enumerate()
        .map(|(k, frame)| {
            let (addr, url) = targets[k % targets.len()].clone();
            let permits = permits.clone();
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.unwrap();
                connect(addr, &url, k, frame).await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Connect/subscribe frames for `n` users, subscribing user `k` to `channels_of(k)`.
fn frames(n: usize, channels_of: impl Fn(usize) -> Vec<String>) -> Vec<String> {
    (0..n)
        .map(|k| connect_frame(&format!("u{k}"), &channels_of(k)))
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

async fn publish(client: &reqwest::Client, base: &str, body: Value, method: &str) {
    let res = client
        .post(format!("{base}/api/{method}"))
        .header("X-API-Key", API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A Redis the nodes use (one per shard), for its CPU time and its `INFO` counters.
struct Redis {
    pid: u32,
    port: u16,
}

impl Redis {
    /// `PID:PORT`, as `bench/run` passes it.
    fn parse(spec: &str) -> Self {
        let (pid, port) = spec.split_once(':').expect("--redis PID:PORT");
        Self {
            pid: pid.parse().expect("--redis PID"),
            port: port.parse().expect("--redis PORT"),
        }
    }

    /// Adds this Redis's counters to `out`: calls per command (`cmd:<name>`, from `INFO
    /// commandstats`), `total_commands_processed` and the network byte totals (`INFO
    /// stats`). Read in that order, so that between two snapshots exactly two `INFO`
    /// calls fall into both the `cmd:info` and the total deltas.
    fn add_counters(&self, out: &mut std::collections::BTreeMap<String, f64>) {
        for section in ["commandstats", "stats"] {
            let info = std::process::Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "INFO", section])
                .output()
                .expect("redis-cli");
            for line in String::from_utf8_lossy(&info.stdout).lines() {
                let Some((key, value)) = line.trim_end().split_once(':') else {
                    continue;
                };
                let (key, value) = match key.strip_prefix("cmdstat_") {
                    // cmdstat_evalsha:calls=20,usec=…: the calls here, Redis's time below.
                    Some(cmd) => {
                        let usec = value.split(',').find_map(|f| f.strip_prefix("usec="));
                        let usec: f64 = usec.and_then(|v| v.parse().ok()).unwrap_or(0.0);
                        *out.entry(format!("usec:{cmd}")).or_default() += usec;
                        (
                            format!("cmd:{cmd}"),
                            value.split(',').find_map(|f| f.strip_prefix("calls=")),
                        )
                    }
                    None if matches!(
                        key,
                        "total_commands_processed"
                            | "total_net_output_bytes"
                            | "total_net_input_bytes"
                    ) =>
                    {
                        (key.to_owned(), Some(value))
                    }
                    None => continue,
                };
                let value: f64 = value.and_then(|v| v.parse().ok()).unwrap_or(0.0);
                *out.entry(key).or_default() += value;
            }
        }
    }
}

/// The counters of every shard, summed.
fn redis_counters(redis: &[Redis]) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for r in redis {
        r.add_counters(&mut out);
    }
    out
}

/// What Redis did between two snapshots, per publication: calls by command (without the
/// snapshots' own `INFO` calls) and Redis's time in each (µs; a script's time includes
/// the commands it calls, which are also counted on their own), all commands (those a
/// script calls included), and bytes received and sent.
fn redis_per_publication(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    publications: f64,
) -> Value {
    let delta = |k: &str| after.get(k).unwrap_or(&0.0) - before.get(k).unwrap_or(&0.0);
    let (mut commands, mut usec) = (serde_json::Map::new(), serde_json::Map::new());
    for key in after.keys() {
        if let Some(cmd) = key.strip_prefix("cmd:")
            && cmd != "info"
            && delta(key) > 0.0
        {
            commands.insert(cmd.to_owned(), json!(delta(key) / publications));
            usec.insert(
                cmd.to_owned(),
                json!(delta(&format!("usec:{cmd}")) / publications),
            );
        }
    }
    json!({"commands": commands, "usec": usec,
           "total_commands": (delta("total_commands_processed") - delta("cmd:info")) / publications,
           "net_in_bytes": delta("total_net_input_bytes") / publications,
           "net_out_bytes": delta("total_net_output_bytes") / publications})
}

/// CPU seconds used so far by each of `pids`.
fn cpu_each(pids: impl Iterator<Item = u32>) -> Vec<f64> {
    pids.map(cpu_secs).collect()
}

/// A socket bound to connection `k`'s own loopback source address (127.0.x.y), so the
/// kernel's ephemeral-port search does not grow with every connection to one address.
fn loopback_socket(k: usize) -> tokio::net::TcpSocket {
    #[allow(clippy::cast_possible_truncation)]
    let source = std::net::Ipv4Addr::new(127, 0, 1 + (k / 250 % 250) as u8, 1 + (k % 250) as u8);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    socket
}

/// One round's receipt latencies, shared by every connection's reader (no message per
/// receipt to a collector task); the receipt that completes a round wakes the main task.
struct Receipts {
    n: usize,
    latencies: std::sync::Mutex<Vec<f64>>,
    done: tokio::sync::Notify,
}

impl Receipts {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            n,
            latencies: std::sync::Mutex::new(Vec::with_capacity(n)),
            done: tokio::sync::Notify::new(),
        })
    }

    /// Records a receipt of a message stamped `sent` (Unix nanoseconds, as text).
    fn record(&self, sent: &str) {
        let sent: u128 = sent.parse().unwrap();
        #[allow(clippy::cast_precision_loss)]
        let ms = (now_nanos() - sent) as f64 / 1e6;
        let mut latencies = self.latencies.lock().unwrap();
        latencies.push(ms);
        if latencies.len() == self.n {
            self.done.notify_one();
        }
    }

    /// Waits for the round's last receipt (10 s at most) and returns the round's
    /// latencies, sorted.
    async fn round(&self) -> Vec<f64> {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.done.notified()).await;
        let mut lat = std::mem::replace(
            &mut *self.latencies.lock().unwrap(),
            Vec::with_capacity(self.n),
        );
        lat.sort_by(f64::total_cmp);
        lat
    }
}

/// The writer half of `floor`, run as a child process: accepts `n` connections, prints its
/// port, then for each line on stdin writes a timestamp line to every socket.
fn floor_writer(n: usize) {
    use std::io::{BufRead as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    println!("PORT {}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    let mut socks: Vec<std::net::TcpStream> = (0..n)
        .map(|_| {
            let (s, _) = listener.accept().unwrap();
            s.set_nodelay(true).unwrap();
            s
        })
        .collect();
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
        let msg = format!("{}\n", now_nanos());
        // Two writer threads, as the server has two runtime workers on this machine.
        let half = socks.len().div_ceil(2).max(1);
        std::thread::scope(|scope| {
            for chunk in socks.chunks_mut(half) {
                let msg = msg.as_bytes();
                scope.spawn(move || {
                    for s in chunk {
                        s.write_all(msg).unwrap();
                    }
                });
            }
        });
    }
}

/// `floor`: the same fan-out as `fanout`, from the minimal writer above to plain sockets.
async fn floor(n: usize, rounds: usize) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["floor-writer", "--n", &n.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let port: u16 = line.strip_prefix("PORT ").unwrap().parse().unwrap();
    let server = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let receipts = Receipts::new(n);
    for k in 0..n {
        let mut stream = loopback_socket(k).connect(server).await.unwrap();
        let receipts = receipts.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(len @ 1..) = stream.read(&mut buf).await {
                let text = std::str::from_utf8(&buf[..len]).unwrap_or("");
                for t in text.split_terminator('\n') {
                    receipts.record(t);
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut stdin = child.stdin.take().unwrap();
    let writer = child.id().unwrap();
    let (writer_cpu, own_cpu) = (cpu_secs(writer), cpu_secs(std::process::id()));
    let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        stdin.write_all(b"go\n").await.unwrap();
        stdin.flush().await.unwrap();
        let lat = receipts.round().await;
        p50s.push(percentile(&lat, 0.5));
        p99s.push(percentile(&lat, 0.99));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    #[allow(clippy::cast_precision_loss)]
    let per_round = |v: f64| v * 1000.0 / rounds as f64;
    println!(
        "RESULT {}",
        json!({"mode": "floor", "subscribers": n, "rounds": rounds,
               "p50_ms_median": median(p50s), "p99_ms_median": median(p99s),
               "writer_cpu_ms_per_round": per_round(cpu_secs(writer) - writer_cpu),
               "client_cpu_ms_per_round": per_round(cpu_secs(std::process::id()) - own_cpu)})
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_default();
    match mode.as_str() {
        "floor-writer" => return floor_writer(arg(&args, "--n", 10_000)),
        "floor" => return floor(arg(&args, "--n", 10_000), arg(&args, "--rounds", 20)).await,
        _ => {}
    }
    let bin = args
        .iter()
        .position(|a| a == "--tollgate")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "target/release/tollgate".to_owned());
    let server_cpus = args
        .iter()
        .position(|a| a == "--server-cpus")
        .and_then(|i| args.get(i + 1))
        .cloned();
    // Repeatable options: each occurrence's value.
    let all = |name: &str| -> Vec<String> {
        args.windows(2)
            .filter(|w| w[0] == name)
            .map(|w| w[1].clone())
            .collect()
    };
    let env: Vec<(String, String)> = all("--env")
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("--env KEY=VALUE");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let redis: Vec<Redis> = all("--redis").iter().map(|r| Redis::parse(r)).collect();
    let node_count = arg(&args, "--nodes", 1).max(1);
    assert!(
        node_count == 1 || env.iter().any(|(k, _)| k == "TOLLGATE_DATABASE_URL"),
        "--nodes > 1 needs a shared database: --env TOLLGATE_DATABASE_URL=postgres://…"
    );
    // Node 0 first: it creates the project (and the schema) the others then share.
    let mut nodes = Vec::with_capacity(node_count);
    for index in 0..node_count {
        nodes.push(Server::start(&bin, server_cpus.as_deref(), index, &env).await);
    }
    let server = &nodes[0];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = format!("http://{}", server.addr);
    // CPU seconds of every node, summed (one node: the server's, as before).
    let nodes_cpu = || nodes.iter().map(Server::cpu_secs).sum::<f64>();
    let nodes_sys = || nodes.iter().map(|n| n.cpu_split().1).sum::<f64>();
    match mode.as_str() {
        "idle" => {
            let n = arg(&args, "--n", 10_000);
            let frames = frames(n, |k| vec![format!("bench:c{}", k % 100)]);
            let before = server.rss_kb();
            let conns = open_many(&nodes, frames, 200).await;
            let holders: Vec<_> = conns
                .into_iter()
                .map(|ws| tokio::spawn(hold(ws, |_| {})))
                .collect();
            tokio::time::sleep(Duration::from_secs(3)).await;
            let after = server.rss_kb();
            #[allow(clippy::cast_precision_loss)]
            let per = (after.saturating_sub(before)) as f64 / n as f64;
            println!(
                "RESULT {}",
                json!({"mode": "idle", "connections": n, "rss_before_kb": before, "rss_after_kb": after, "kb_per_connection": per})
            );
            drop(holders);
        }
        "connect" => {
            let n = arg(&args, "--n", 10_000);
            let concurrency = arg(&args, "--concurrency", 64);
            let frames = frames(n, |k| vec![format!("bench:c{}", k % 100)]);
            let (server_cpu, own_cpu) = (nodes_cpu(), cpu_secs(std::process::id()));
            let started = Instant::now();
            let conns = open_many(&nodes, frames, concurrency).await;
            let secs = started.elapsed().as_secs_f64();
            #[allow(clippy::cast_precision_loss)]
            let rate = n as f64 / secs;
            println!(
                "RESULT {}",
                json!({"mode": "connect", "connections": n, "concurrency": concurrency, "seconds": secs, "per_second": rate,
                       "server_cpu_secs": nodes_cpu() - server_cpu,
                       "client_cpu_secs": cpu_secs(std::process::id()) - own_cpu})
            );
            drop(conns);
        }
        "fanout" => {
            let n = arg(&args, "--n", 10_000);
            let rounds = arg(&args, "--rounds", 20);
            let conns = open_many(&nodes, frames(n, |_| vec!["bench:fan".to_owned()]), 200).await;
            let receipts = Receipts::new(n);
            let _holders: Vec<_> = conns
                .into_iter()
                .map(|ws| {
                    let receipts = receipts.clone();
                    tokio::spawn(hold(ws, move |line| {
                        // Find the timestamp without a full JSON parse.
                        if let Some((t, _)) = line
                            .split_once(r#""t":""#)
                            .and_then(|(_, rest)| rest.split_once('"'))
                        {
                            receipts.record(t);
                        }
                    }))
                })
                .collect();
            let client = reqwest::Client::new();
            let (server_cpu, own_cpu) = (nodes_cpu(), cpu_secs(std::process::id()));
            let (server_sys, own_sys) = (nodes_sys(), cpu_split(std::process::id()).1);
            let per_node_cpu = cpu_each(nodes.iter().map(|n| n.child.id().unwrap()));
            let redis_cpu = cpu_each(redis.iter().map(|r| r.pid));
            let mut counters = None;
            let (mut p50s, mut p99s, mut maxes, mut firsts) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for round in 0..rounds {
                // Redis's counters from the end of the first round: the first publication
                // also loads the Lua script, which later ones only call.
                if round == 1 && !redis.is_empty() {
                    counters = Some(redis_counters(&redis));
                }
                let t = now_nanos().to_string();
                publish(
                    &client,
                    &base,
                    json!({"channel": "bench:fan", "data": {"t": t}}),
                    "publish",
                )
                .await;
                let lat = receipts.round().await;
                firsts.push(*lat.first().unwrap_or(&0.0));
                p50s.push(percentile(&lat, 0.5));
                p99s.push(percentile(&lat, 0.99));
                maxes.push(*lat.last().unwrap_or(&0.0));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let (lo99, hi99) = (
                p99s.iter().copied().fold(f64::INFINITY, f64::min),
                p99s.iter().copied().fold(0.0, f64::max),
            );
            #[allow(clippy::cast_precision_loss)]
            let per_round = |v: f64| v * 1000.0 / rounds as f64;
            let (server_ms, client_ms) = (
                per_round(nodes_cpu() - server_cpu),
                per_round(cpu_secs(std::process::id()) - own_cpu),
            );
            let (server_sys_ms, client_sys_ms) = (
                per_round(nodes_sys() - server_sys),
                per_round(cpu_split(std::process::id()).1 - own_sys),
            );
            let mut result = json!({"mode": "fanout", "subscribers": n, "rounds": rounds,
                       "first_receipt_ms_median": median(firsts),
                       "server_cpu_ms_per_round": server_ms, "client_cpu_ms_per_round": client_ms,
                       "server_kernel_ms_per_round": server_sys_ms, "client_kernel_ms_per_round": client_sys_ms,
                       "p50_ms_median": median(p50s), "p99_ms_median": median(p99s.clone()),
                       "p99_ms_min": lo99, "p99_ms_max": hi99, "last_receipt_ms_median": median(maxes)});
            if node_count > 1 {
                let each: Vec<f64> = cpu_each(nodes.iter().map(|n| n.child.id().unwrap()))
                    .iter()
                    .zip(&per_node_cpu)
                    .map(|(after, before)| per_round(after - before))
                    .collect();
                result["nodes"] = json!(node_count);
                result["node_cpu_ms_per_round"] = json!(each);
            }
            if let Some(before) = counters {
                let each: Vec<f64> = cpu_each(redis.iter().map(|r| r.pid))
                    .iter()
                    .zip(&redis_cpu)
                    .map(|(after, before)| per_round(after - before))
                    .collect();
                #[allow(clippy::cast_precision_loss)]
                let publications = (rounds - 1) as f64;
                result["redis_cpu_ms_per_round"] = json!(each);
                result["redis_per_publication"] =
                    redis_per_publication(&before, &redis_counters(&redis), publications);
            }
            println!("RESULT {result}");
        }
        "throughput" => {
            let n = arg(&args, "--conns", 2_000);
            let k = arg(&args, "--channels", 100);
            let seconds = arg(&args, "--seconds", 10);
            let publishers = arg(&args, "--publishers", 2);
            let per_request = arg(&args, "--per-request", 100);
            // Each connection subscribes to 10 channels: deliveries per publication = n*10/k.
            let frames = frames(n, |c| {
                (0..10)
                    .map(|j| format!("bench:t{}", (c + j * 7) % k))
                    .collect()
            });
            let conns = open_many(&nodes, frames, 200).await;
            let received = Arc::new(AtomicU64::new(0));
            let _holders: Vec<_> = conns
                .into_iter()
                .map(|ws| {
                    let received = received.clone();
                    tokio::spawn(hold(ws, move |_| {
                        received.fetch_add(1, Ordering::Relaxed);
                    }))
                })
                .collect();
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            // Channel publications the server API has confirmed (a broadcast to 100
            // channels counts 100).
            let published = Arc::new(AtomicU64::new(0));
            let channels: Vec<String> = (0..k).map(|i| format!("bench:t{i}")).collect();
            let payload =
                json!({"event": "invoice.updated", "id": "123e4567-e89b-12d3-a456-426614174000"});
            let tasks: Vec<_> = (0..publishers)
                .map(|p| {
                    let (base, stop, channels, payload, published) = (
                        base.clone(),
                        stop.clone(),
                        channels.clone(),
                        payload.clone(),
                        published.clone(),
                    );
                    tokio::spawn(async move {
                        let client = reqwest::Client::new();
                        let mut i = p;
                        while !stop.load(Ordering::Relaxed) {
                            let chans: Vec<&String> = (0..per_request)
                                .map(|j| &channels[(i + j) % channels.len()])
                                .collect();
                            publish(
                                &client,
                                &base,
                                json!({"channels": chans, "data": payload}),
                                "broadcast",
                            )
                            .await;
                            published.fetch_add(per_request as u64, Ordering::Relaxed);
                            i += per_request;
                        }
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let start_count = received.load(Ordering::Relaxed);
            let start_published = published.load(Ordering::Relaxed);
            let (per_node_cpu, redis_cpu) = (
                cpu_each(nodes.iter().map(|n| n.child.id().unwrap())),
                cpu_each(redis.iter().map(|r| r.pid)),
            );
            let counters = (!redis.is_empty()).then(|| redis_counters(&redis));
            let started = Instant::now();
            let mut samples = Vec::new();
            let mut last = start_count;
            for _ in 0..seconds {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = received.load(Ordering::Relaxed);
                #[allow(clippy::cast_precision_loss)]
                samples.push((now - last) as f64);
                last = now;
            }
            let elapsed = started.elapsed().as_secs_f64();
            #[allow(clippy::cast_precision_loss)]
            let publications = (published.load(Ordering::Relaxed) - start_published) as f64;
            // Share of one core each process used over the window.
            let busy = |after: Vec<f64>, before: &[f64]| -> Vec<f64> {
                after
                    .iter()
                    .zip(before)
                    .map(|(a, b)| (a - b) / elapsed)
                    .collect()
            };
            let node_busy = busy(
                cpu_each(nodes.iter().map(|n| n.child.id().unwrap())),
                &per_node_cpu,
            );
            let redis_busy = busy(cpu_each(redis.iter().map(|r| r.pid)), &redis_cpu);
            let redis_used = counters.map(|before| {
                redis_per_publication(&before, &redis_counters(&redis), publications)
            });
            stop.store(true, Ordering::Relaxed);
            for t in tasks {
                let _ = t.await;
            }
            #[allow(clippy::cast_precision_loss)]
            let avg = (last - start_count) as f64 / started.elapsed().as_secs_f64();
            let (lo, hi) = (
                samples.iter().copied().fold(f64::INFINITY, f64::min),
                samples.iter().copied().fold(0.0, f64::max),
            );
            let mut result = json!({"mode": "throughput", "connections": n, "channels": k, "seconds": seconds,
                       "deliveries_per_second_median": median(samples), "min": lo, "max": hi, "mean": avg,
                       "publications_per_second": publications / elapsed,
                       "node_cpu_busy": node_busy});
            if node_count > 1 {
                result["nodes"] = json!(node_count);
            }
            if let Some(used) = redis_used {
                result["redis_cpu_busy"] = json!(redis_busy);
                result["redis_per_publication"] = used;
            }
            println!("RESULT {result}");
        }
        _ => {
            eprintln!(
                "usage: gateway-load idle|connect|fanout|throughput --tollgate BIN [options]"
            );
            std::process::exit(2);
        }
    }
}
