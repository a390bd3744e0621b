//! Server API keys over real HTTP (`/api/v1/server-keys`) and through the real binary
//! (`tollgate server-key …`), both over the same database.

use std::process::Command;

use reqwest::Method;
use serde_json::{Value, json};
use tollgate_token::{Scope, Scopes};

use crate::support::TestServer;

const KEYS: &str = "/api/v1/server-keys";

fn management() -> Scopes {
    [Scope::Management].into_iter().collect()
}

async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    auth: Option<(&str, &str)>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = s.client.request(method, s.url(path));
    if let Some((user, pass)) = auth {
        req = req.basic_auth(user, Some(pass));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked_per_project() {
    let s = TestServer::start().await;
    let (a, a_token) = s.project_with(management()).await;
    let (b, b_token) = s.project_with(management()).await;
    let auth_a = Some((a.as_str(), a_token.as_str()));
    let auth_b = Some((b.as_str(), b_token.as_str()));

    let (status, created) = call(
        &s,
        Method::POST,
        KEYS,
        auth_a,
        Some(json!({"name": "backend"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let mut members: Vec<_> = created.as_object().unwrap().keys().cloned().collect();
    members.sort();
    assert_eq!(members, ["created_at", "id", "key", "name"]);
    assert_eq!(created["name"], "backend");
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk_") && key.len() == 67, "{key}");
    let project = |p: &str| p.parse().unwrap();
    assert_eq!(
        s.app.tollgate.authenticate_server_key(&key).await.unwrap(),
        Some(project(&a))
    );

    // Without a name, a default one; a name that is not a printable string is a 422.
    let (status, unnamed) = call(&s, Method::POST, KEYS, auth_a, Some(json!({}))).await;
    assert_eq!(status, 201, "{unnamed}");
    assert_eq!(unnamed["name"], "server key");
    for bad in [
        json!({"name": 5}),
        json!({"name": ""}),
        json!({"name": "a\nb"}),
    ] {
        let (status, body) = call(&s, Method::POST, KEYS, auth_a, Some(bad.clone())).await;
        assert_eq!(status, 422, "{bad} → {body}");
        assert_eq!(body["errors"][0]["attribute"], "name");
    }

    // The key is shown once: listing never carries it (nor anything like its hash).
    let (status, listed) = call(&s, Method::GET, KEYS, auth_a, None).await;
    assert_eq!(status, 200);
    let data = listed["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let mine = data.iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert_eq!(mine["name"], "backend");
    assert!(mine["created_at"].is_string());
    assert!(mine["revoked_at"].is_null());
    let text = listed.to_string();
    assert!(!text.contains(&key[3..]), "{text}");
    assert!(!text.contains("hash"), "{text}");
    let (_, b_listed) = call(&s, Method::GET, KEYS, auth_b, None).await;
    assert_eq!(
        b_listed["data"],
        json!([]),
        "projects see only their own keys"
    );

    // Project B cannot revoke A's key: it looks like a missing one.
    let one = format!("{KEYS}/{id}");
    let (status, _) = call(&s, Method::DELETE, &one, auth_b, None).await;
    assert_eq!(status, 404);
    assert!(
        s.app
            .tollgate
            .authenticate_server_key(&key)
            .await
            .unwrap()
            .is_some()
    );
    for unknown in [
        format!("{KEYS}/{}", uuid::Uuid::new_v4()),
        format!("{KEYS}/not-a-uuid"),
    ] {
        assert_eq!(
            call(&s, Method::DELETE, &unknown, auth_a, None).await.0,
            404
        );
    }

    // A revokes it: 204, then it no longer authenticates, and a second revoke is 404.
    let (status, _) = call(&s, Method::DELETE, &one, auth_a, None).await;
    assert_eq!(status, 204);
    assert_eq!(
        s.app.tollgate.authenticate_server_key(&key).await.unwrap(),
        None
    );
    assert_eq!(call(&s, Method::DELETE, &one, auth_a, None).await.0, 404);
    let (_, listed) = call(&s, Method::GET, KEYS, auth_a, None).await;
    let mine = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap();
    assert!(
        mine["revoked_at"].is_string(),
        "revoked keys stay listed: {listed}"
    );
}

#[tokio::test]
async fn keys_need_project_credentials_with_the_management_scope() {
    let s = TestServer::start().await;
    let (p, token) = s.project_with(management()).await;
    // The default scopes (pubsub, chat, Fabric) do not include management.
    let (q, q_token) = s.project().await;
    let (_, created) = call(&s, Method::POST, KEYS, Some((&p, &token)), Some(json!({}))).await;
    let one = format!("{KEYS}/{}", created["id"].as_str().unwrap());

    for (method, path, body) in [
        (Method::GET, KEYS, None),
        (Method::POST, KEYS, Some(json!({}))),
        (Method::DELETE, one.as_str(), None),
    ] {
        for auth in [
            None,
            Some((p.as_str(), "PT-not-the-token")),
            Some((q.as_str(), q_token.as_str())),
        ] {
            let (status, body) = call(&s, method.clone(), path, auth, body.clone()).await;
            assert_eq!(status, 401, "{method} {path} with {auth:?}: {body}");
            assert_eq!(body, json!({"error": "Unauthorized"}));
        }
    }
    // Nothing above changed anything.
    let (_, listed) = call(&s, Method::GET, KEYS, Some((&p, &token)), None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert!(listed["data"][0]["revoked_at"].is_null());
}

/// Runs the real binary against the test server's database; returns (exit code, stdout,
/// stderr).
fn cli(s: &TestServer, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .current_dir(s.dir())
        .env(
            "TOLLGATE_DATABASE_URL",
            format!("sqlite://{}/tollgate.db", s.dir().display()),
        )
        .env("TOLLGATE_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn cli_json(s: &TestServer, args: &[&str]) -> Value {
    let (code, stdout, stderr) = cli(s, args);
    assert_eq!(code, 0, "{args:?} failed: {stderr}");
    assert_eq!(stdout.lines().count(), 1, "exactly one line: {stdout:?}");
    serde_json::from_str(&stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_creates_lists_and_revokes_keys() {
    // The CLI is pointed at the server's SQLite file.
    let s = TestServer::start_sqlite().await;
    let (p, token) = s.project_with(management()).await;
    let project: tollgate_token::ProjectId = p.parse().unwrap();

    let created = cli_json(
        &s,
        &[
            "server-key",
            "create",
            "--project",
            &p,
            "--name",
            "ci",
            "--json",
        ],
    );
    let obj = created.as_object().unwrap();
    assert_eq!(obj.len(), 2, "exactly {{id, key}}: {created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    assert!(key.starts_with("sk_"), "{key}");
    assert_eq!(
        s.app.tollgate.authenticate_server_key(&key).await.unwrap(),
        Some(project)
    );

    // Without --json: a human line that shows the key once.
    let (code, stdout, _) = cli(&s, &["server-key", "create", "--project", &p]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("sk_") && stdout.contains("only this once"),
        "{stdout}"
    );

    let listed = cli_json(&s, &["server-key", "list", "--project", &p, "--json"]);
    let items = listed.as_array().unwrap();
    assert_eq!(items.len(), 2);
    for item in items {
        let mut members: Vec<_> = item.as_object().unwrap().keys().cloned().collect();
        members.sort();
        assert_eq!(members, ["created_at", "id", "name", "revoked_at"]);
        assert!(item["created_at"].is_i64());
    }
    let ci = items.iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert_eq!(ci["name"], "ci");
    assert!(ci["revoked_at"].is_null());
    assert!(!listed.to_string().contains(&key[3..]));

    // The CLI and the admin API see the same keys.
    let (_, http) = call(&s, Method::GET, KEYS, Some((&p, &token)), None).await;
    let ids = |v: &Value| {
        let mut ids: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&http["data"]), ids(&listed));

    let (code, stdout, stderr) = cli(&s, &["server-key", "revoke", "--project", &p, &id]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&id), "{stdout}");
    assert_eq!(
        s.app.tollgate.authenticate_server_key(&key).await.unwrap(),
        None
    );
    let listed = cli_json(&s, &["server-key", "list", "--project", &p, "--json"]);
    let ci = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap();
    assert!(ci["revoked_at"].is_i64(), "{listed}");

    // Unknown, already revoked, another project's, or malformed: non-zero, one clear line.
    let (other, _) = s.project().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for args in [
        ["server-key", "revoke", "--project", p.as_str(), id.as_str()],
        [
            "server-key",
            "revoke",
            "--project",
            p.as_str(),
            unknown.as_str(),
        ],
        [
            "server-key",
            "revoke",
            "--project",
            other.as_str(),
            id.as_str(),
        ],
        ["server-key", "revoke", "--project", p.as_str(), "nope"],
    ] {
        let (code, stdout, stderr) = cli(&s, &args);
        assert_eq!(code, 1, "{args:?}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(
            stderr.contains("no active server key") || stderr.contains("not a UUID"),
            "{args:?}: {stderr}"
        );
    }
    let (code, _, stderr) = cli(&s, &["server-key", "list", "--project", &unknown, "--json"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("project not found"), "{stderr}");
}
