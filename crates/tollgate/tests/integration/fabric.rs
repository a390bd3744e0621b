//! Fabric endpoints over real HTTP: subscriber tokens, refresh rotation and replay,
//! device binding with DPoP, subscriber info, guest and invite tokens, Subscribers CRUD.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tollgate_token::Scope;
use tollgate_token::jose::dpop::thumbprint;
use tollgate_token::jose::{Algorithm, SigningKey};

use crate::support::{TestServer, decode_part};

const TOKENS: &str = "/api/fabric/subscribers/tokens";
const REFRESH: &str = "/api/fabric/subscribers/tokens/refresh";
const INFO: &str = "/api/fabric/subscriber/info";
const SUBSCRIBERS: &str = "/api/fabric/resources/subscribers";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A device key and the fingerprint (RFC 7638 thumbprint) a backend would forward.
fn device() -> (SigningKey, String) {
    let key = SigningKey::generate(Algorithm::ES256, "device".parse().unwrap())
        .unwrap()
        .0;
    let jkt = thumbprint(&key.verifying_key().to_jwk().unwrap()).unwrap();
    (key, jkt)
}

/// A DPoP proof for the refresh endpoint, as a browser SDK makes it.
fn proof(key: &SigningKey, jti: &str) -> String {
    let mut jwk = key.verifying_key().to_jwk().unwrap();
    for k in ["kid", "alg", "use"] {
        jwk.remove(k);
    }
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    let claims = json!({"jti": jti, "htm": "POST",
                        "htu": format!("https://tollgate.example{REFRESH}"), "iat": now()});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

struct Fabric {
    s: TestServer,
    project: String,
    token: String,
}

impl Fabric {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    async fn start_with(env: &[(&str, &str)]) -> Self {
        let s = TestServer::start_with(env).await;
        let (project, token) = s.project().await;
        Self { s, project, token }
    }

    fn auth(&self) -> (&str, &str) {
        (&self.project, &self.token)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.s.post(path, self.auth(), &body).await
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn refresh(
        &self,
        refresh_token: &str,
        dpop: Option<String>,
        basic: bool,
    ) -> (u16, Value) {
        let mut req = self
            .s
            .client
            .post(self.s.url(REFRESH))
            .json(&json!({"refresh_token": refresh_token}));
        if basic {
            req = req.basic_auth(&self.project, Some(&self.token));
        }
        if let Some(p) = dpop {
            req = req.header("DPoP", p);
        }
        self.send(req).await
    }

    async fn info(&self, bearer: &str) -> (u16, Value) {
        self.send(self.s.client.get(self.s.url(INFO)).bearer_auth(bearer))
            .await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(
            self.s
                .client
                .get(self.s.url(path))
                .basic_auth(&self.project, Some(&self.token)),
        )
        .await
    }

    /// The first address of the subscriber a login response names.
    async fn first_address(&self, login: &Value) -> String {
        let id = login["subscriber_id"].as_str().unwrap();
        let (_, a) = self.get(&format!("{SUBSCRIBERS}/{id}/addresses")).await;
        a["data"][0]["id"].as_str().unwrap().to_owned()
    }

    async fn login(&self, body: Value) -> Value {
        let (status, res) = self.post(TOKENS, body).await;
        assert_eq!(status, 200, "{res}");
        res
    }
}

fn errors(res: &Value) -> Vec<(String, String)> {
    res["errors"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|e| {
            (
                e["code"].as_str().unwrap().to_owned(),
                e["attribute"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn err(code: &str, attribute: &str) -> Vec<(String, String)> {
    vec![(code.to_owned(), attribute.to_owned())]
}

#[tokio::test]
async fn subscriber_tokens_are_opaque_jwes_and_upsert_the_subscriber() {
    let f = Fabric::start().await;
    let a = f
        .login(json!({"reference": "ada@example.com", "first_name": "Ada"}))
        .await;
    let id = a["subscriber_id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    for (field, typ) in [("token", "SAT"), ("refresh_token", "Refresh")] {
        let t = a[field].as_str().unwrap();
        assert_eq!(t.split('.').count(), 5);
        assert_eq!(t.split('.').nth(1), Some(""), "dir: empty encrypted key");
        let h = decode_part(t, 0);
        assert_eq!(h["alg"], "dir");
        assert_eq!(h["enc"], "A256GCM");
        assert_eq!(h["typ"], typ);
        let ciphertext = URL_SAFE_NO_PAD
            .decode(t.split('.').nth(3).unwrap())
            .unwrap();
        let visible = format!("{t} {}", String::from_utf8_lossy(&ciphertext));
        for clear in ["ada@example.com", "subscriber", id] {
            assert!(!visible.contains(clear), "{clear} readable without the key");
        }
    }
    // The same reference is the same subscriber; given fields update its profile.
    let b = f
        .login(json!({"reference": "ada@example.com", "last_name": "Lovelace", "password": "correct-horse"}))
        .await;
    assert_eq!(b["subscriber_id"], a["subscriber_id"]);
    let (status, got) = f.get(&format!("{SUBSCRIBERS}/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["subscriber"]["first_name"], "Ada");
    assert_eq!(got["subscriber"]["last_name"], "Lovelace");
    assert_eq!(got["subscriber"]["email"], "ada@example.com");
    // Every subscriber has an address.
    let (status, addrs) = f.get(&format!("{SUBSCRIBERS}/{id}/addresses")).await;
    assert_eq!(status, 200);
    assert_eq!(addrs["data"].as_array().unwrap().len(), 1);

    // Info reports what the token carries.
    let (status, info) = f.info(a["token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["subscriber_id"], a["subscriber_id"]);
    assert_eq!(info["project_id"], f.project);
    assert_eq!(info["scope"], json!([]));
    let left = info["expires_at"].as_i64().unwrap() - now();
    assert!(
        (7190..=7200).contains(&left),
        "default two hours, got {left}"
    );
    assert!(info.get("cnf").is_none());
}

#[tokio::test]
async fn subscriber_token_validation_and_scope() {
    let f = Fabric::start().await;
    let (status, res) = f.post(TOKENS, json!({})).await;
    assert_eq!(
        (status, errors(&res)),
        (422, err("missing_required_parameter", "reference"))
    );
    let (status, res) = f
        .post(
            TOKENS,
            json!({"reference": "a", "expire_at": now() - 1, "fingerprint": "short", "scope": "x", "region": "mars", "password": "1234567"}),
        )
        .await;
    assert_eq!(status, 422);
    let attrs: Vec<String> = errors(&res).into_iter().map(|e| e.1).collect();
    assert_eq!(
        attrs,
        ["expire_at", "password", "fingerprint", "scope", "region"]
    );

    // Fabric needs calling, messaging, fax or video: a pubsub-only token is 401.
    let (p, t) =
        f.s.project_with([Scope::Pubsub].into_iter().collect())
            .await;
    let (status, res) = f.s.post(TOKENS, (&p, &t), &json!({"reference": "a"})).await;
    assert_eq!((status, res), (401, json!({"error": "Unauthorized"})));
    let (p, t) = f.s.project_with([Scope::Fax].into_iter().collect()).await;
    let (status, _) = f.s.post(TOKENS, (&p, &t), &json!({"reference": "a"})).await;
    assert_eq!(status, 200);

    // sat:refresh without a fingerprint: at most 60 seconds.
    let r = f
        .login(json!({"reference": "b", "scope": "sat:refresh"}))
        .await;
    let (_, info) = f.info(r["token"].as_str().unwrap()).await;
    assert_eq!(info["scope"], json!(["sat:refresh"]));
    assert!(info["expires_at"].as_i64().unwrap() - now() <= 60);
}

#[tokio::test]
async fn refresh_rotates_and_a_replay_kills_the_family() {
    // No reuse leeway: even an immediate second use is a replay.
    let f = Fabric::start_with(&[("TOLLGATE_FABRIC__REFRESH_REUSE_LEEWAY", "0")]).await;
    let first = f.login(json!({"reference": "r@example.com"})).await;
    let rt1 = first["refresh_token"].as_str().unwrap();

    let (status, second) = f.refresh(rt1, None, true).await;
    assert_eq!(status, 201, "{second}");
    let rt2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(rt1, rt2);
    assert_eq!(f.info(second["token"].as_str().unwrap()).await.0, 200);

    // Replaying the spent token is refused and revokes everything descended from it.
    let (status, res) = f.refresh(rt1, None, true).await;
    assert_eq!(
        (status, errors(&res)),
        (422, err("token_invalid", "refresh_token"))
    );
    let (status, res) = f.refresh(rt2, None, true).await;
    assert_eq!(
        (status, errors(&res)),
        (422, err("token_invalid", "refresh_token"))
    );
    assert_eq!(f.info(second["token"].as_str().unwrap()).await.0, 401);
    assert_eq!(f.info(first["token"].as_str().unwrap()).await.0, 401);

    // Another login of the same subscriber is its own family and still works.
    let other = f.login(json!({"reference": "r@example.com"})).await;
    assert_eq!(f.info(other["token"].as_str().unwrap()).await.0, 200);
}

#[tokio::test]
async fn concurrent_refreshes_have_exactly_one_winner() {
    let f = Fabric::start().await;
    let login = f.login(json!({"reference": "race@example.com"})).await;
    let rt = login["refresh_token"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let req =
            f.s.client
                .post(f.s.url(REFRESH))
                .basic_auth(&f.project, Some(&f.token))
                .json(&json!({"refresh_token": rt}));
        tasks.push(tokio::spawn(async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let statuses: Vec<u16> = results.iter().map(|r| r.0).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 422),
        "{statuses:?}"
    );
    // The losers were the same client's concurrent requests (within the reuse leeway):
    // refused without revoking the family, so the winner's tokens work.
    let winner = &results.iter().find(|r| r.0 == 201).unwrap().1;
    let sat = winner["token"].as_str().unwrap();
    let (status, info) = f.info(sat).await;
    assert_eq!(status, 200, "the winner's SAT: {info}");
    assert_eq!(info["subscriber_id"], login["subscriber_id"]);
    let (status, next) = f
        .refresh(winner["refresh_token"].as_str().unwrap(), None, true)
        .await;
    assert_eq!(status, 201, "the winner's refresh token: {next}");
    assert_eq!(f.info(next["token"].as_str().unwrap()).await.0, 200);
    // The spent original stays spent.
    assert_eq!(f.refresh(&rt, None, true).await.0, 422);
}

#[tokio::test]
async fn refresh_rejects_wrong_kinds_foreign_projects_and_garbage() {
    let f = Fabric::start().await;
    let login = f.login(json!({"reference": "k@example.com"})).await;
    let sat = login["token"].as_str().unwrap();
    let rt = login["refresh_token"].as_str().unwrap();

    let (status, res) = f.refresh(sat, None, true).await;
    assert_eq!(
        (status, errors(&res)),
        (422, err("not_a_refresh_token", "refresh_token"))
    );
    for garbage in ["nope", "a.b.c.d.e", &rt[..rt.len() - 2]] {
        let (status, res) = f.refresh(garbage, None, true).await;
        assert_eq!(
            (status, errors(&res)),
            (422, err("token_invalid", "refresh_token")),
            "{garbage}"
        );
    }
    let (status, res) = f.post(REFRESH, json!({})).await;
    assert_eq!(
        (status, errors(&res)),
        (422, err("missing_required_parameter", "refresh_token"))
    );

    // Another project's credentials: 401, and the token is not burned by it.
    let (p, t) = f.s.project().await;
    let (status, res) =
        f.s.post(REFRESH, (&p, &t), &json!({"refresh_token": rt}))
            .await;
    assert_eq!((status, res), (401, json!({"error": "Unauthorized"})));
    // No credentials and no device proof: 401.
    assert_eq!(f.refresh(rt, None, false).await.0, 401);
    assert_eq!(f.refresh(rt, None, true).await.0, 201);
}

#[tokio::test]
async fn bound_tokens_need_their_devices_proof() {
    let f = Fabric::start().await;
    let (device_key, jkt) = device();
    let (thief_key, _) = device();
    let login = f
        .login(json!({"reference": "d@example.com", "fingerprint": jkt, "scope": "sat:refresh"}))
        .await;
    let (_, info) = f.info(login["token"].as_str().unwrap()).await;
    assert_eq!(info["cnf"], json!({"jkt": jkt}));
    let left = info["expires_at"].as_i64().unwrap() - now();
    assert!(
        left > 3600,
        "a bound sat:refresh token is not cut to 60 s: {left}"
    );
    let rt = login["refresh_token"].as_str().unwrap();

    // The backend's credentials alone are not enough for a bound token.
    assert_eq!(f.refresh(rt, None, true).await.0, 401);
    // Nor is another device's proof.
    assert_eq!(
        f.refresh(rt, Some(proof(&thief_key, "t1")), false).await.0,
        401
    );
    // The device itself refreshes, without project credentials.
    let (status, next) = f.refresh(rt, Some(proof(&device_key, "p1")), false).await;
    assert_eq!(status, 201, "{next}");
    let (_, info) = f.info(next["token"].as_str().unwrap()).await;
    assert_eq!(info["cnf"], json!({"jkt": jkt}), "the binding carries over");
    // A captured proof cannot be replayed.
    let rt2 = next["refresh_token"].as_str().unwrap();
    assert_eq!(
        f.refresh(rt2, Some(proof(&device_key, "p1")), false)
            .await
            .0,
        401
    );
    assert_eq!(
        f.refresh(rt2, Some(proof(&device_key, "p2")), true).await.0,
        201
    );

    // Bound without sat:refresh: the device proof is required, and so is the backend.
    let login = f
        .login(json!({"reference": "e@example.com", "fingerprint": jkt}))
        .await;
    let rt = login["refresh_token"].as_str().unwrap();
    assert_eq!(
        f.refresh(rt, Some(proof(&device_key, "q1")), false).await.0,
        401
    );
    assert_eq!(
        f.refresh(rt, Some(proof(&device_key, "q2")), true).await.0,
        201
    );
}

#[tokio::test]
async fn info_accepts_only_live_sats() {
    let f = Fabric::start().await;
    let login = f.login(json!({"reference": "i@example.com"})).await;
    let sat = login["token"].as_str().unwrap();
    let mut tampered = sat.as_bytes().to_vec();
    let n = tampered.len();
    tampered[n - 3] = if tampered[n - 3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [
        login["refresh_token"].as_str().unwrap(),
        &tampered,
        "x",
        f.token.as_str(),
    ] {
        let (status, res) = f.info(bad).await;
        assert_eq!((status, res), (401, json!({"error": "Unauthorized"})));
    }
    let (status, _) = f
        .send(
            f.s.client
                .get(f.s.url(INFO))
                .basic_auth(&f.project, Some(&f.token)),
        )
        .await;
    assert_eq!(status, 401, "an API key is not a subscriber");
    let (status, _) = f.send(f.s.client.get(f.s.url(INFO))).await;
    assert_eq!(status, 401);

    // Deleting the subscriber ends its tokens.
    let id = login["subscriber_id"].as_str().unwrap();
    let (status, _) = f
        .send(
            f.s.client
                .delete(f.s.url(&format!("{SUBSCRIBERS}/{id}")))
                .basic_auth(&f.project, Some(&f.token)),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(f.info(sat).await.0, 401);
    let (status, res) = f
        .refresh(login["refresh_token"].as_str().unwrap(), None, true)
        .await;
    assert_eq!(
        (status, errors(&res)),
        (422, err("token_invalid", "refresh_token"))
    );
}

#[tokio::test]
async fn guest_and_invite_tokens_reach_project_addresses_only() {
    let f = Fabric::start().await;
    let login = f.login(json!({"reference": "host@example.com"})).await;
    let id = login["subscriber_id"].as_str().unwrap();
    let (_, addrs) = f.get(&format!("{SUBSCRIBERS}/{id}/addresses")).await;
    let address = addrs["data"][0]["id"].as_str().unwrap().to_owned();

    let (status, guest) = f
        .post(
            "/api/fabric/guests/tokens",
            json!({"allowed_addresses": [address]}),
        )
        .await;
    assert_eq!(status, 201, "{guest}");
    assert!(guest["token"].is_string() && guest["refresh_token"].is_string());
    assert_eq!(
        decode_part(guest["token"].as_str().unwrap(), 0)["typ"],
        "SAT"
    );
    let (status, _) = f
        .refresh(guest["refresh_token"].as_str().unwrap(), None, true)
        .await;
    assert_eq!(status, 201, "guest tokens refresh too");

    let (status, res) = f
        .post(
            "/api/fabric/guests/tokens",
            json!({"allowed_addresses": [uuid::Uuid::new_v4()]}),
        )
        .await;
    assert_eq!(
        (status, errors(&res)),
        (
            422,
            err("unrecognized_fabric_addresses", "allowed_addresses")
        )
    );
    let eleven: Vec<String> = (0..11).map(|_| address.clone()).collect();
    let (status, res) = f
        .post(
            "/api/fabric/guests/tokens",
            json!({"allowed_addresses": eleven}),
        )
        .await;
    assert_eq!(
        (status, errors(&res)),
        (
            422,
            err("allowed_address_limit_exceeded", "allowed_addresses")
        )
    );

    // A subscriber invites with its own SAT.
    let sat = login["token"].as_str().unwrap();
    let invite = |body: Value| {
        f.s.client
            .post(f.s.url("/api/fabric/subscriber/invites"))
            .bearer_auth(sat)
            .json(&body)
    };
    let (status, res) = f.send(invite(json!({"address_id": address}))).await;
    assert_eq!(status, 201, "{res}");
    assert_eq!(res.as_object().unwrap().len(), 1);
    let invite_token = res["token"].as_str().unwrap();
    assert_eq!(f.info(invite_token).await.0, 200);
    let (status, res) = f
        .send(invite(
            json!({"address_id": uuid::Uuid::new_v4(), "expires_at": now() - 5}),
        ))
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        errors(&res),
        vec![("invalid_parameter".to_owned(), "expires_at".to_owned()),]
    );
    let (status, res) = f
        .send(invite(json!({"address_id": uuid::Uuid::new_v4()})))
        .await;
    assert_eq!(
        (status, errors(&res)),
        (422, err("invalid_parameter", "address_id"))
    );
    // Project credentials work too (SignalWire's Python client sends Basic here).
    let (status, _) = f
        .post(
            "/api/fabric/subscriber/invites",
            json!({"address_id": address}),
        )
        .await;
    assert_eq!(status, 201);
    // Another project's SAT cannot reach this project's address.
    let (op, ot) = f.s.project().await;
    let (_, outsider) =
        f.s.post(
            TOKENS,
            (&op, &ot),
            &json!({"reference": "outsider@example.com"}),
        )
        .await;
    let (status, res) = f
        .send(
            f.s.client
                .post(f.s.url("/api/fabric/subscriber/invites"))
                .bearer_auth(outsider["token"].as_str().unwrap())
                .json(&json!({"address_id": address})),
        )
        .await;
    assert_eq!(
        (status, errors(&res)),
        (422, err("invalid_parameter", "address_id"))
    );
}

#[tokio::test]
async fn subscribers_crud_and_pagination() {
    let f = Fabric::start().await;
    let (status, res) = f.post(SUBSCRIBERS, json!({"first_name": "x"})).await;
    assert_eq!(
        (status, errors(&res)),
        (422, err("missing_required_parameter", "email"))
    );
    let (status, res) = f
        .post(SUBSCRIBERS, json!({"email": "a@b.c", "password": "short"}))
        .await;
    assert_eq!(
        (status, errors(&res)),
        (422, err("invalid_parameter", "password"))
    );

    let (status, created) = f
        .post(SUBSCRIBERS, json!({"email": "jo@example.com", "first_name": "Jo", "timezone": "UTC", "password": "a-long-password"}))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["type"], "subscriber");
    assert_eq!(created["subscriber"]["id"], created["id"]);
    assert_eq!(created["subscriber"]["timezone"], "UTC");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    let (status, res) = f
        .post(SUBSCRIBERS, json!({"email": "jo@example.com"}))
        .await;
    assert_eq!(
        (status, errors(&res)),
        (422, err("invalid_parameter", "email"))
    );

    // PUT and PATCH both change only what they name.
    let path = format!("{SUBSCRIBERS}/{id}");
    for (method, field, value) in [("PUT", "last_name", "Doe"), ("PATCH", "country", "NZ")] {
        let req =
            f.s.client
                .request(method.parse().unwrap(), f.s.url(&path))
                .basic_auth(&f.project, Some(&f.token))
                .json(&json!({ field: value }));
        let (status, res) = f.send(req).await;
        assert_eq!(status, 200, "{method}: {res}");
        assert_eq!(res["subscriber"][field], value);
        assert_eq!(res["subscriber"]["first_name"], "Jo");
    }

    for i in 0..6 {
        let (status, _) = f
            .post(SUBSCRIBERS, json!({"email": format!("p{i}@example.com")}))
            .await;
        assert_eq!(status, 201);
    }
    // Walk the pages exactly as SignalWire's client does: re-request with links.next's query.
    let mut query = "page_size=3".to_owned();
    let mut emails = Vec::new();
    let mut pages = 0;
    loop {
        let (status, page) = f.get(&format!("{SUBSCRIBERS}?{query}")).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        emails.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["subscriber"]["email"].as_str().unwrap().to_owned()),
        );
        assert!(page["links"]["self"].is_string() && page["links"]["first"].is_string());
        match page["links"]["next"].as_str() {
            Some(next) => query = next.split_once('?').unwrap().1.to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(emails.len(), 7);
    let mut unique = emails.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 7, "no subscriber twice: {emails:?}");
    for bad in [
        "page_size=0",
        "page_size=1001",
        "page_size=x",
        "page_token=nope",
    ] {
        let (status, _) = f.get(&format!("{SUBSCRIBERS}?{bad}")).await;
        assert_eq!(status, 422, "{bad}");
    }

    let del = |p: &str| {
        f.s.client
            .delete(f.s.url(p))
            .basic_auth(&f.project, Some(&f.token))
    };
    assert_eq!(f.send(del(&path)).await.0, 204);
    assert_eq!(
        f.send(del(&path)).await,
        (404, json!({"error": "Not Found"}))
    );
    assert_eq!(f.get(&path).await, (404, json!({"error": "Not Found"})));
    assert_eq!(f.get(&format!("{SUBSCRIBERS}/not-a-uuid")).await.0, 404);
    assert_eq!(
        f.get(&format!("{SUBSCRIBERS}/{}", uuid::Uuid::new_v4()))
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn no_password_sat_or_refresh_token_is_stored_in_clear() {
    // Reads the SQLite file itself.
    let s = TestServer::start_sqlite().await;
    let (project, token) = s.project().await;
    let f = Fabric { s, project, token };
    let login = f
        .login(json!({"reference": "secret@example.com", "password": "hunter2-hunter2"}))
        .await;
    let (status, next) = f
        .refresh(login["refresh_token"].as_str().unwrap(), None, true)
        .await;
    assert_eq!(status, 201);
    let dir = f.s.stop().await;
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("tollgate.db") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    let db = String::from_utf8_lossy(&bytes);
    assert!(db.contains("$argon2id$"), "the password hash is there");
    for secret in [
        "hunter2-hunter2",
        login["token"].as_str().unwrap(),
        login["refresh_token"].as_str().unwrap(),
        next["token"].as_str().unwrap(),
        next["refresh_token"].as_str().unwrap(),
    ] {
        assert!(
            !db.contains(secret),
            "stored in clear: {}",
            &secret[..12.min(secret.len())]
        );
    }
}

#[tokio::test]
async fn a_store_outage_never_burns_a_refresh_token() {
    use tollgate_store::testing::PgTestDatabase;
    let Some(admin) = PgTestDatabase::admin_url_from_env() else {
        return;
    };
    let db = PgTestDatabase::create(&admin).await;
    let key = URL_SAFE_NO_PAD.encode([9u8; 32]);
    let s = TestServer::start_with(&[
        ("TOLLGATE_DATABASE_URL", &db.url),
        ("TOLLGATE_SECRET_KEY", &key),
    ])
    .await;
    let (project, token) = s.project().await;
    let f = Fabric { s, project, token };
    let login = f.login(json!({"reference": "outage@example.com"})).await;
    let (status, next) = f
        .refresh(login["refresh_token"].as_str().unwrap(), None, true)
        .await;
    assert_eq!(status, 201);
    let rt = next["refresh_token"].as_str().unwrap();

    db.set_available(false).await;
    let (status, res) = f.refresh(rt, None, true).await;
    assert_eq!(
        (status, res),
        (503, json!({"error": "Service Unavailable"}))
    );

    db.set_available(true).await;
    let (status, res) = f.refresh(rt, None, true).await;
    assert_eq!(
        status, 201,
        "the outage must not have spent the token: {res}"
    );
    db.drop_now().await;
}

#[tokio::test]
async fn embed_tokens_mint_for_their_address_only_while_active() {
    let f = Fabric::start().await;
    let login = f.login(json!({"reference": "sales@example.com"})).await;
    let id = login["subscriber_id"].as_str().unwrap();
    let (_, addrs) = f.get(&format!("{SUBSCRIBERS}/{id}/addresses")).await;
    let address: uuid::Uuid = addrs["data"][0]["id"].as_str().unwrap().parse().unwrap();
    let project = f.project.parse().unwrap();
    let (embed_id, c2c) =
        f.s.app
            .tollgate
            .create_embed_key(project, address)
            .await
            .unwrap();
    let c2c = c2c.expose().to_owned();
    assert!(c2c.starts_with("c2c_") && c2c.len() == 36, "{c2c}");

    // No credentials needed: the c2c token is the credential.
    let embed = |body: Value| {
        f.s.client
            .post(f.s.url("/api/fabric/embeds/tokens"))
            .json(&body)
    };
    let (status, res) = f.send(embed(json!({"token": c2c}))).await;
    assert_eq!(status, 201, "{res}");
    let sat = res["token"].as_str().unwrap();
    let (status, info) = f.info(sat).await;
    assert_eq!(status, 200);
    assert_eq!(info["subscriber_id"], Value::Null);
    assert!(info["expires_at"].as_i64().unwrap() - now() <= 3600);

    let (status, res) = f
        .send(embed(
            json!({"token": "c2c_00000000000000000000000000000000"}),
        ))
        .await;
    assert_eq!((status, res), (403, json!({"error": "Forbidden"})));
    let (status, res) = f.send(embed(json!({}))).await;
    assert_eq!(
        (status, errors(&res)),
        (422, err("missing_required_parameter", "token"))
    );

    f.s.app
        .tollgate
        .revoke_embed_key(project, embed_id)
        .await
        .unwrap();
    assert_eq!(f.send(embed(json!({"token": c2c}))).await.0, 403);

    // An address of another project cannot get an embed key here.
    let (other, _) = f.s.project().await;
    let err =
        f.s.app
            .tollgate
            .create_embed_key(other.parse().unwrap(), address)
            .await
            .unwrap_err();
    assert!(
        matches!(err, tollgate_service::ServiceError::NotFound(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn only_subscriber_sats_hand_out_tokens_and_only_for_their_own_addresses() {
    let f = Fabric::start().await;
    let alice = f.login(json!({"reference": "alice@example.com"})).await;
    let bob = f.login(json!({"reference": "bob@example.com"})).await;
    let alice_addr = f.first_address(&alice).await;
    let bob_addr = f.first_address(&bob).await;
    let as_sat = |sat: &str, path: &str, body: Value| {
        f.s.client.post(f.s.url(path)).bearer_auth(sat).json(&body)
    };
    let alice_sat = alice["token"].as_str().unwrap();

    // Alice may hand out her own address, not Bob's.
    let (status, guest) = f
        .send(as_sat(
            alice_sat,
            "/api/fabric/guests/tokens",
            json!({"allowed_addresses": [alice_addr]}),
        ))
        .await;
    assert_eq!(status, 201);
    let (status, res) = f
        .send(as_sat(
            alice_sat,
            "/api/fabric/guests/tokens",
            json!({"allowed_addresses": [bob_addr]}),
        ))
        .await;
    assert_eq!(
        (status, errors(&res)),
        (
            422,
            err("unrecognized_fabric_addresses", "allowed_addresses")
        )
    );
    let (status, res) = f
        .send(as_sat(
            alice_sat,
            "/api/fabric/subscriber/invites",
            json!({"address_id": bob_addr}),
        ))
        .await;
    assert_eq!(
        (status, errors(&res)),
        (422, err("invalid_parameter", "address_id"))
    );
    let (status, invite) = f
        .send(as_sat(
            alice_sat,
            "/api/fabric/subscriber/invites",
            json!({"address_id": alice_addr}),
        ))
        .await;
    assert_eq!(status, 201);

    // Guest, invite and embed tokens grant no further tokens.
    let project = f.project.parse().unwrap();
    let (_, c2c) =
        f.s.app
            .tollgate
            .create_embed_key(project, alice_addr.parse().unwrap())
            .await
            .unwrap();
    let (_, embed) = f
        .send(
            f.s.client
                .post(f.s.url("/api/fabric/embeds/tokens"))
                .json(&json!({"token": c2c.expose()})),
        )
        .await;
    for sat in [
        guest["token"].as_str().unwrap(),
        invite["token"].as_str().unwrap(),
        embed["token"].as_str().unwrap(),
    ] {
        let (status, _) = f
            .send(as_sat(
                sat,
                "/api/fabric/guests/tokens",
                json!({"allowed_addresses": [alice_addr]}),
            ))
            .await;
        assert_eq!(status, 401);
        let (status, _) = f
            .send(as_sat(
                sat,
                "/api/fabric/subscriber/invites",
                json!({"address_id": alice_addr}),
            ))
            .await;
        assert_eq!(status, 401);
    }

    // What Alice handed out dies with her.
    let alice_id = alice["subscriber_id"].as_str().unwrap();
    let (status, _) = f
        .send(
            f.s.client
                .delete(f.s.url(&format!("{SUBSCRIBERS}/{alice_id}")))
                .basic_auth(&f.project, Some(&f.token)),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(f.info(guest["token"].as_str().unwrap()).await.0, 401);
    assert_eq!(f.info(invite["token"].as_str().unwrap()).await.0, 401);
    let (status, _) = f
        .refresh(guest["refresh_token"].as_str().unwrap(), None, true)
        .await;
    assert_eq!(status, 422);
}
