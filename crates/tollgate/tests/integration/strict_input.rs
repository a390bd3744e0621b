//! Strict input over real HTTP (issue #13): admin and token-endpoint fields of the wrong type
//! or out of range are a 422 naming the field and change nothing; server API parameters of
//! the wrong type are Centrifugo's 107; group kinds, group ids and user ids follow one
//! grammar where they arrive, while rows stored before it can still be listed and removed.

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tollgate_store::ChannelStore as _;
use tollgate_token::jose::{self, Algorithm, HeaderExtras, SigningKey};
use tollgate_token::{Scope, Scopes};

use crate::support::{TestServer, now};

const COMPANY: &str = "c0c0c0c0-0000-4000-8000-000000000002";

/// A server with one project whose API token holds every scope.
struct Admin {
    s: TestServer,
    project: String,
    token: String,
}

impl Admin {
    async fn start() -> Self {
        Self::on(TestServer::start().await).await
    }

    async fn on(s: TestServer) -> Self {
        let all: Scopes = Scope::ALL.into_iter().collect();
        let (project, token) = s.project_with(all).await;
        Self { s, project, token }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .s
            .client
            .request(method.parse().unwrap(), self.s.url(path))
            .basic_auth(&self.project, Some(&self.token));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// A request with its path sent exactly as written: HTTP clients normalise `%2E%2E`
    /// segments away (WHATWG URL), which is the very input under test.
    async fn raw(&self, method: &str, path: &str) -> (u16, Value) {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.project, self.token));
        let mut conn = tokio::net::TcpStream::connect(self.s.addr).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: tollgate\r\nAuthorization: Basic {basic}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        (status, body)
    }

    async fn namespaces(&self) -> Vec<String> {
        let (_, list) = self.call("GET", "/api/v1/namespaces", None).await;
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn key_count(&self) -> usize {
        let (_, keys) = self.call("GET", "/api/v1/keys", None).await;
        keys["data"].as_array().unwrap().len()
    }

    async fn members(&self, kind: &str, id: &str) -> Vec<String> {
        let (status, list) = self
            .raw("GET", &format!("/api/v1/groups/{kind}/{id}/members"))
            .await;
        assert_eq!(status, 200, "{list}");
        list["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["user_id"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// The `(code, attribute)` of every entry of a 422 body, after checking its shape.
fn failed(body: &Value) -> Vec<(String, String)> {
    body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("not a 422 body: {body}"))
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "validation_error", "{e}");
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
            assert!(e["url"].is_string(), "{e}");
            (
                e["code"].as_str().unwrap().to_owned(),
                e["attribute"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(c, a)| ((*c).to_owned(), (*a).to_owned()))
        .collect()
}

#[tokio::test]
async fn namespace_fields_of_the_wrong_type_are_refused_and_store_nothing() {
    let a = Admin::start().await;
    let before = a.namespaces().await;

    // Before: `"ninety"` was read as absent and the namespace stored with 3600.
    let (status, body) = a
        .call(
            "PUT",
            "/api/v1/namespaces/team",
            Some(json!({"rule": "authenticated", "token_ttl": "ninety"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(failed(&body), pairs(&[("invalid_parameter", "token_ttl")]));
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("token_ttl"),
        "{body}"
    );

    // Every failed field at once, types and values alike.
    let (status, body) = a
        .call(
            "PUT",
            "/api/v1/namespaces/team",
            Some(json!({"rule": "member:..", "id_format": 7, "token_ttl": 59.5})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        failed(&body),
        pairs(&[
            ("invalid_parameter", "rule"),
            ("not_a_string", "id_format"),
            ("invalid_parameter", "token_ttl"),
        ])
    );
    for bad in [
        json!({"rule": 5}),
        json!({"rule": "owner", "token_ttl": 604_801}),
        json!({"rule": "owner", "token_ttl": true}),
        json!({"rule": "owner", "id_format": "hex"}),
        json!({"rule": null}),
    ] {
        let (status, body) = a
            .call("PUT", "/api/v1/namespaces/team", Some(bad.clone()))
            .await;
        assert_eq!(status, 422, "{bad} → {body}");
    }
    assert_eq!(a.namespaces().await, before, "nothing was stored");

    // Absent and null fields take their defaults.
    let (status, ns) = a
        .call(
            "PUT",
            "/api/v1/namespaces/team",
            Some(json!({"rule": "member:team", "id_format": null, "token_ttl": null})),
        )
        .await;
    assert_eq!(status, 200, "{ns}");
    assert_eq!(ns["id_format"], "uuid");
    assert_eq!(ns["token_ttl"], 3600);
}

#[tokio::test]
async fn key_rotation_fields_of_the_wrong_type_are_refused_and_rotate_nothing() {
    let a = Admin::start().await;
    assert_eq!(a.key_count().await, 1);
    // Before: `alg: 123` rotated to an ES256 key, `retire_after: "60"` retired in a day.
    for (body, attribute) in [
        (json!({"alg": 123}), "alg"),
        (json!({"alg": "none"}), "alg"),
        (json!({"retire_after": "3600"}), "retire_after"),
        (json!({"retire_after": 59}), "retire_after"),
        (json!({"retire_after": 2_592_001}), "retire_after"),
        (
            json!({"alg": "EdDSA", "retire_after": 3600.5}),
            "retire_after",
        ),
    ] {
        let (status, res) = a
            .call("POST", "/api/v1/keys/rotate", Some(body.clone()))
            .await;
        assert_eq!(status, 422, "{body} → {res}");
        let failed = failed(&res);
        assert_eq!(failed.len(), 1, "{res}");
        assert_eq!(failed[0].1, attribute, "{res}");
    }
    assert_eq!(a.key_count().await, 1, "no key was made");
    let (status, res) = a
        .call(
            "POST",
            "/api/v1/keys/rotate",
            Some(json!({"alg": null, "retire_after": null})),
        )
        .await;
    assert_eq!(status, 201, "{res}");
    assert_eq!(res["alg"], "ES256", "null is absent: the default");
}

#[tokio::test]
async fn token_endpoint_fields_of_the_wrong_type_are_refused() {
    let a = Admin::start().await;
    let (_, login) =
        a.s.post(
            "/api/fabric/subscribers/tokens",
            (&a.project, &a.token),
            &json!({"reference": "alice@example.com"}),
        )
        .await;
    let sat = login["token"].as_str().unwrap().to_owned();
    let post = |path: &'static str, body: Value| {
        let req = a.s.client.post(a.s.url(path)).bearer_auth(&sat).json(&body);
        async move {
            let res = req.send().await.unwrap();
            (
                res.status().as_u16(),
                res.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    for (path, body, expected) in [
        (
            "/api/v1/centrifugo/connection-token",
            json!({"info": [1]}),
            ("not_a_hash", "info"),
        ),
        (
            "/api/v1/centrifugo/connection-token",
            json!({"info": "{}"}),
            ("not_a_hash", "info"),
        ),
        (
            "/api/v1/centrifugo/subscription-token",
            json!({"channel": 5}),
            ("not_a_string", "channel"),
        ),
        (
            "/api/v1/centrifugo/subscription-tokens",
            json!({"channels": "company:x"}),
            ("invalid_parameter", "channels"),
        ),
    ] {
        let (status, res) = post(path, body.clone()).await;
        assert_eq!(status, 422, "{path} {body} → {res}");
        assert_eq!(failed(&res), pairs(&[expected]), "{path} {body}");
    }
    let (status, res) = post("/api/v1/centrifugo/connection-token", json!({"info": null})).await;
    assert_eq!(status, 200, "null info is no info: {res}");
}

#[tokio::test]
async fn server_api_parameters_of_the_wrong_type_are_a_107() {
    let a = Admin::start().await;
    let key = a.s.server_key(&a.project, &a.token).await;
    let api = |method: &str, body: Value| {
        let req =
            a.s.client
                .post(a.s.url(&format!("/api/{method}")))
                .header("X-API-Key", &key)
                .json(&body);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    // Before: each of these answered `{"result": {}}` and acted with a default — no
    // expiry at all, every connection of the user, history kept.
    for (method, params) in [
        ("refresh", json!({"user": "42", "expire_at": "1700000000"})),
        ("refresh", json!({"user": "42", "expired": "true"})),
        ("disconnect", json!({"user": "42", "client": 5})),
        (
            "disconnect",
            json!({"user": "42", "disconnect": {"code": "4000"}}),
        ),
        (
            "publish",
            json!({"channel": "news", "data": {}, "skip_history": "yes"}),
        ),
        ("channels", json!({"pattern": 5})),
    ] {
        let reply = api(method, params.clone()).await;
        assert_eq!(
            reply,
            json!({"error": {"code": 107, "message": "bad request"}}),
            "{method} {params}"
        );
    }
    // Well-typed, with nulls for absent: accepted.
    let reply = api(
        "refresh",
        json!({"user": "42", "expire_at": now() + 60, "client": null}),
    )
    .await;
    assert_eq!(reply, json!({"result": {}}));
}

#[tokio::test]
async fn group_ids_follow_the_id_grammar_and_nothing_is_stored_otherwise() {
    let a = Admin::start().await;
    let member =
        |kind: &str, id: &str, user: &str| format!("/api/v1/groups/{kind}/{id}/members/{user}");
    // Before: every one of these was stored (201).
    for (kind, id, user, attribute) in [
        ("company", COMPANY, "%2E%2E", "user_id"),
        ("company", COMPANY, "%2E", "user_id"),
        ("company", COMPANY, "a%2Fb", "user_id"),
        ("company", COMPANY, "*", "user_id"),
        ("company", COMPANY, "o'brien@example.com", "user_id"),
        ("company", "%2E%2E", "alice", "id"),
        ("company", "team*", "alice", "id"),
        ("%2E%2E", COMPANY, "alice", "kind"),
    ] {
        let (status, body) = a.raw("PUT", &member(kind, id, user)).await;
        assert_eq!(status, 422, "{kind}/{id}/{user} → {body}");
        assert_eq!(
            failed(&body),
            pairs(&[("invalid_parameter", attribute)]),
            "{kind}/{id}/{user}"
        );
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.starts_with(attribute), "names the field: {message}");
        assert!(message.contains("characters"), "states the rule: {message}");
    }
    // All three at once.
    let (status, body) = a.raw("PUT", &member("%2E%2E", "%2E%2E", "%2E%2E")).await;
    assert_eq!(status, 422);
    assert_eq!(
        failed(&body),
        pairs(&[
            ("invalid_parameter", "kind"),
            ("invalid_parameter", "id"),
            ("invalid_parameter", "user_id"),
        ])
    );
    assert!(
        a.members("company", COMPANY).await.is_empty(),
        "nothing stored"
    );

    // Realistic ids pass: emails (with +), UUIDs, OIDC subjects, numeric ids.
    let users = [
        "alice+news@example.com",
        "123e4567-e89b-12d3-a456-426614174000",
        "auth0|5f7c8ec7c33c6c004bbafe82",
        "42",
    ];
    for user in users {
        let (status, body) = a.raw("PUT", &member("company", COMPANY, user)).await;
        assert_eq!(status, 201, "{user} → {body}");
        assert_eq!(body["user_id"], user);
    }
    let mut listed = a.members("company", COMPANY).await;
    listed.sort();
    let mut expected: Vec<String> = users.iter().map(|u| (*u).to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn members_stored_before_the_grammar_can_still_be_listed_and_removed() {
    // Writes a row as an earlier version would have, straight into the SQLite file.
    let a = Admin::on(TestServer::start_sqlite().await).await;
    let store =
        tollgate_store::SqlStore::connect(&format!("sqlite://{}/tollgate.db", a.s.dir().display()))
            .await
            .unwrap();
    let project = a.project.parse().unwrap();
    store
        .put_member(
            project,
            "company",
            COMPANY,
            "a/b",
            tollgate_token::UnixTime(now()),
        )
        .await
        .unwrap();
    assert_eq!(a.members("company", COMPANY).await, ["a/b"]);
    // Writing it again is refused; removing it is not.
    assert_eq!(
        a.raw(
            "PUT",
            &format!("/api/v1/groups/company/{COMPANY}/members/a%2Fb")
        )
        .await
        .0,
        422
    );
    let (status, body) = a
        .raw(
            "DELETE",
            &format!("/api/v1/groups/company/{COMPANY}/members/a%2Fb"),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert!(a.members("company", COMPANY).await.is_empty());
}

#[tokio::test]
async fn subscriber_references_and_emails_are_user_ids() {
    let a = Admin::start().await;
    let auth = (a.project.as_str(), a.token.as_str());
    // Before: 200, and `..` became the user id of every Centrifugo token of that login.
    for reference in ["..", "a/b", "*", "John Smith"] {
        let (status, body) =
            a.s.post(
                "/api/fabric/subscribers/tokens",
                auth,
                &json!({"reference": reference}),
            )
            .await;
        assert_eq!(status, 422, "{reference} → {body}");
        assert_eq!(failed(&body), pairs(&[("invalid_parameter", "reference")]));
    }
    let (status, body) =
        a.s.post(
            "/api/fabric/resources/subscribers",
            auth,
            &json!({"email": "a/b@example.com"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(failed(&body), pairs(&[("invalid_parameter", "email")]));
    let (_, list) = a
        .call("GET", "/api/fabric/resources/subscribers", None)
        .await;
    assert_eq!(list["data"], json!([]), "no subscriber was stored");
    let (status, body) =
        a.s.post(
            "/api/fabric/subscribers/tokens",
            auth,
            &json!({"reference": "alice+news@example.com"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_app_user_jwt_whose_sub_is_not_a_user_id_is_refused() {
    let a = Admin::start().await;
    let secret = b"the-app-signs-its-user-jwts-with-this-secret!";
    a.s.app
        .tollgate
        .add_user_auth_key(
            a.project.parse().unwrap(),
            "https://app.example",
            "tollgate",
            tollgate_service::centrifugo::UserAuthKey::Hmac(Algorithm::HS256, secret),
        )
        .await
        .unwrap();
    let signer = SigningKey::from_secret(Algorithm::HS256, "app".parse().unwrap(), secret).unwrap();
    let connection_token = |sub: &str| {
        let jwt = jose::sign(
            &signer,
            HeaderExtras::default(),
            &json!({"sub": sub, "iss": "https://app.example", "aud": "tollgate", "exp": now() + 60}),
        )
        .unwrap();
        let req =
            a.s.client
                .post(a.s.url("/api/v1/centrifugo/connection-token"))
                .bearer_auth(jwt)
                .json(&json!({}));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        connection_token("auth0|5f7c8ec7c33c6c004bbafe82").await,
        200
    );
    // Before: 200, a connection token for user `../admin`.
    for sub in ["../admin", "*", "a b"] {
        assert_eq!(connection_token(sub).await, 401, "{sub}");
    }
}
