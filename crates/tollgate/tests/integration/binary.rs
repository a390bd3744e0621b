//! The real `tollgate` binary, driven as a user would: CLI commands, `serve`, SIGTERM.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn tollgate(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_remove("TOLLGATE_LISTEN")
        .env("TOLLGATE_LOG", "info");
    cmd
}

/// Runs a CLI command to completion; returns (exit code, stdout, stderr).
fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tollgate(dir).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn json_out(dir: &Path, args: &[&str]) -> Value {
    let (code, stdout, stderr) = run(dir, args);
    assert_eq!(code, 0, "{args:?} failed: {stderr}");
    assert_eq!(stdout.lines().count(), 1, "exactly one line: {stdout:?}");
    serde_json::from_str(&stdout).unwrap()
}

struct Served {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

fn serve(dir: &Path) -> Served {
    let mut child = tollgate(dir)
        .arg("serve")
        .env("TOLLGATE_LISTEN", "127.0.0.1:0")
        // The most verbose level, so the no-secrets-in-logs check covers every log line.
        .env("TOLLGATE_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    let pipe = child.stderr.take().unwrap();
    let sink = stderr.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("addr=").nth(1) {
                let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_owned());
            }
            sink.lock().unwrap().push_str(&line);
            sink.lock().unwrap().push('\n');
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server did not report its address");
    Served {
        child,
        addr,
        stderr,
        reader,
    }
}

#[test]
fn project_create_prints_exactly_the_contract_json() {
    let dir = tempfile::tempdir().unwrap();
    // Run where no installation is, the CLI refuses rather than start a second one,
    // naming the absolute path it looked at and the way out; nothing is created.
    let (code, stdout, stderr) = run(
        dir.path(),
        &["project", "create", "--name", "demo", "--json"],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let expected_db = dir.path().join("tollgate-data/tollgate.db");
    assert!(
        stderr.contains(&format!(
            "no Tollgate database at {}",
            expected_db.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--create-database"), "{stderr}");
    assert!(!dir.path().join("tollgate-data").exists());

    let v = json_out(
        dir.path(),
        &[
            "project",
            "create",
            "--name",
            "demo",
            "--json",
            "--create-database",
        ],
    );
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 2, "{v}");
    assert!(uuid::Uuid::parse_str(v["project_id"].as_str().unwrap()).is_ok());
    let token = v["api_token"].as_str().unwrap();
    assert!(token.starts_with("PT") && token.len() == 66, "{token}");
    // The embedded default layout was created next to the working directory, private.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &str| {
        std::fs::metadata(dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("tollgate-data"), 0o700);
    assert_eq!(mode("tollgate-data/tollgate.db"), 0o600);
    assert_eq!(mode("tollgate-data/tollgate.key"), 0o600);

    let list = json_out(dir.path(), &["project", "list", "--json"]);
    assert_eq!(list["projects"][0]["project_id"], v["project_id"]);
    assert_eq!(list["projects"][0]["name"], "demo");

    let (code, _, stderr) = run(
        dir.path(),
        &[
            "project",
            "create",
            "--name",
            "x",
            "--scopes",
            "pubsub,admin",
        ],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("unknown scope \"admin\""), "{stderr}");

    // A database whose master key went missing is refused, not given a new key that
    // could not read what the old one sealed.
    std::fs::remove_file(dir.path().join("tollgate-data/tollgate.key")).unwrap();
    let (code, _, stderr) = run(dir.path(), &["project", "list", "--json"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("master key file"), "{stderr}");
    assert!(stderr.contains("restore the key"), "{stderr}");
    assert!(!dir.path().join("tollgate-data/tollgate.key").exists());
}

#[test]
fn invalid_configuration_stops_with_one_line_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let out = tollgate(dir.path())
        .args(["serve"])
        .env("TOLLGATE_LISTEN", "nowhere")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("TOLLGATE_LISTEN"), "{stderr}");
}

#[test]
fn help_describes_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--help"], "Run the server"),
        (&["serve", "--help"], "one listener"),
        (&["project", "--help"], "Create a project"),
        (&["project", "create", "--help"], "--scopes"),
        (&["project", "list", "--help"], "--json"),
        (&["token", "--help"], "Revoke an API token"),
        (&["token", "create", "--help"], "--project"),
        (&["token", "list", "--help"], "--project"),
        (&["token", "revoke", "--help"], "TOKEN_ID"),
        (&["embed", "--help"], "click-to-call"),
        (&["key", "rotate", "--help"], "subscriber-tokens"),
        (&["embed", "create", "--help"], "--address"),
        (&["server-key", "--help"], "Revoke a server API key"),
        (&["server-key", "create", "--help"], "--name"),
        (&["server-key", "revoke", "--help"], "KEY_ID"),
    ];
    for (args, mentions) in cases {
        let (code, stdout, _) = run(dir.path(), args);
        assert_eq!(code, 0, "{args:?}");
        assert!(stdout.contains("Usage"), "{args:?}: {stdout}");
        assert!(
            stdout.contains(mentions),
            "{args:?} should mention {mentions}: {stdout}"
        );
    }
}

#[test]
fn serve_mints_while_the_cli_administers_then_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    // `serve` creates the installation and says so before the first request: where the
    // database and the new master key are, and which optional features are off.
    let mut server = serve(dir.path());
    {
        let logs = server.stderr.lock().unwrap().clone();
        let db = dir.path().join("tollgate-data/tollgate.db");
        let key = dir.path().join("tollgate-data/tollgate.key");
        for expected in [
            "created a new, empty database".to_owned(),
            db.display().to_string(),
            "created a new master key: back this file up now".to_owned(),
            key.display().to_string(),
            "off: Centrifugo server API".to_owned(),
            "gateway.allowed_origins".to_owned(),
        ] {
            assert!(logs.contains(&expected), "{expected:?} not in {logs}");
        }
    }
    let created = json_out(dir.path(), &["project", "create", "--name", "p", "--json"]);
    let project = created["project_id"].as_str().unwrap().to_owned();
    let first = created["api_token"].as_str().unwrap().to_owned();
    let client = reqwest::blocking::Client::new();
    let mint = |token: &str| {
        client
            .post(format!("http://{}/api/pubsub/tokens", server.addr))
            .basic_auth(&project, Some(token))
            .json(&json!({"ttl": 5, "channels": {"a": {"read": true}}}))
            .send()
            .unwrap()
    };
    let res = mint(&first);
    assert_eq!(res.status(), 200);
    let minted = res.json::<Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // The CLI writes to the same database while the server runs.
    let extra = json_out(
        dir.path(),
        &[
            "token",
            "create",
            "--project",
            &project,
            "--scopes",
            "pubsub",
            "--json",
        ],
    );
    let extra_token = extra["api_token"].as_str().unwrap().to_owned();
    let extra_id = extra["token_id"].as_str().unwrap().to_owned();
    assert_eq!(mint(&extra_token).status(), 200);
    let listed = json_out(
        dir.path(),
        &["token", "list", "--project", &project, "--json"],
    );
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&extra_token));

    json_out(
        dir.path(),
        &[
            "token",
            "revoke",
            "--project",
            &project,
            &extra_id,
            "--json",
        ],
    );
    assert_eq!(mint(&extra_token).status(), 401);
    assert_eq!(mint(&first).status(), 200);

    let ready = client
        .get(format!("http://{}/readyz", server.addr))
        .send()
        .unwrap();
    assert_eq!(ready.status(), 200);

    // SIGTERM: graceful stop, exit code 0.
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0));

    // Logs name requests, never credentials or tokens. (The reader ends at EOF.)
    server.reader.join().unwrap();
    let logs = server.stderr.lock().unwrap().clone();
    assert!(logs.contains("/api/pubsub/tokens"), "{logs}");
    for secret in [&first, &extra_token, &minted] {
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
    }
}
