//! The Centrifugo-compatible token authority over real HTTP: seed 000's table line by line,
//! membership, private channels and batches, app user JWTs, keys, rotation and the JWKS.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tollgate_token::jose::{self, Algorithm, HeaderExtras, SigningKey, VerifyingKey};
use tollgate_token::{Scope, Scopes};

use crate::support::{TestServer, decode_part};

const SUB_TOKEN: &str = "/api/v1/centrifugo/subscription-token";
const ME: &str = "123e4567-e89b-12d3-a456-426614174000";
const OTHER: &str = "00000000-0000-4000-8000-000000000001";
const COMPANY: &str = "c0c0c0c0-0000-4000-8000-000000000002";
const HMAC: &str = "an-hmac-secret-shared-with-centrifugo-0123456789";

struct App {
    s: TestServer,
    project: String,
    token: String,
    /// The signed-in user's SAT (reference = ME).
    sat: String,
}

impl App {
    async fn start(env: &[(&str, &str)]) -> Self {
        let s = TestServer::start_with(env).await;
        let all: Scopes = Scope::ALL.into_iter().collect();
        let (project, token) = s.project_with(all).await;
        let (status, login) = s
            .post(
                "/api/fabric/subscribers/tokens",
                (&project, &token),
                &json!({"reference": ME}),
            )
            .await;
        assert_eq!(status, 200, "{login}");
        let sat = login["token"].as_str().unwrap().to_owned();
        Self {
            s,
            project,
            token,
            sat,
        }
    }

    async fn bearer_post(&self, path: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.s.client.post(self.s.url(path)).json(&body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn sub_token(&self, channel: &str) -> (u16, Value) {
        self.bearer_post(SUB_TOKEN, Some(&self.sat), json!({ "channel": channel }))
            .await
    }

    async fn basic(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
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

    async fn jwks_key(&self, kid: &str) -> Option<VerifyingKey> {
        let jwks: Value = self
            .s
            .client
            .get(self.s.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let jwk = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)?;
        let b = |f: &str| URL_SAFE_NO_PAD.decode(jwk[f].as_str().unwrap()).unwrap();
        let kid = kid.parse().unwrap();
        Some(match jwk["kty"].as_str().unwrap() {
            "EC" => {
                let mut point = vec![4u8];
                point.extend(b("x"));
                point.extend(b("y"));
                VerifyingKey::public(Algorithm::ES256, kid, &point).unwrap()
            }
            "OKP" => VerifyingKey::public(Algorithm::EdDSA, kid, &b("x")).unwrap(),
            "RSA" => VerifyingKey::rsa(kid, &b("n"), &b("e")).unwrap(),
            other => panic!("unexpected kty {other}"),
        })
    }

    /// Verifies a minted token with the key the JWKS publishes for its `kid`.
    async fn verify(&self, token: &str) -> serde_json::Map<String, Value> {
        let kid = decode_part(token, 0)["kid"].as_str().unwrap().to_owned();
        let key = self
            .jwks_key(&kid)
            .await
            .expect("kid published in the JWKS");
        jose::verify_pinned(token, 1 << 16, &key).unwrap().claims
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn seed_000_table_line_by_line() {
    let a = App::start(&[]).await;

    // 200: own user channel, a token Centrifugo accepts.
    let (status, res) = a.sub_token(&format!("user:{ME}")).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res.as_object().unwrap().len(), 1);
    let token = res["token"].as_str().unwrap();
    let claims = a.verify(token).await;
    assert_eq!(claims["sub"], ME);
    assert_eq!(claims["channel"], format!("user:{ME}"));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600,
        "subscription tokens expire after 1 hour"
    );
    assert!(claims["jti"].is_string());
    assert!(decode_part(token, 0)["kid"].is_string());

    // 403: someone else's user channel; a company the user is not a member of.
    assert_eq!(a.sub_token(&format!("user:{OTHER}")).await.0, 403);
    let (status, res) = a.sub_token(&format!("company:{COMPANY}")).await;
    assert_eq!((status, res), (403, json!({"error": "Forbidden"})));

    // 422: invalid channel names.
    for bad in [
        "nope",
        "user:42",
        "user:",
        &format!("team:{ME}"),
        &format!("user:{}", ME.to_uppercase()),
        "user:a b",
    ] {
        let (status, res) = a.sub_token(bad).await;
        assert_eq!(status, 422, "{bad}: {res}");
        assert_eq!(res["errors"][0]["attribute"], "channel");
    }
    let (status, _) = a.bearer_post(SUB_TOKEN, Some(&a.sat), json!({})).await;
    assert_eq!(status, 422);

    // 401: no or invalid authentication; things that are not a user.
    let (status, res) = a
        .bearer_post(SUB_TOKEN, None, json!({"channel": format!("user:{ME}")}))
        .await;
    assert_eq!((status, res), (401, json!({"error": "Unauthorized"})));
    let (_, pubsub) =
        a.s.post(
            "/api/pubsub/tokens",
            (&a.project, &a.token),
            &json!({"ttl": 5, "channels": {format!("user:{ME}"): {"read": true}}, "member_id": ME}),
        )
        .await;
    let (_, login) =
        a.s.post(
            "/api/fabric/subscribers/tokens",
            (&a.project, &a.token),
            &json!({"reference": ME}),
        )
        .await;
    for not_a_user in [
        "garbage",
        a.token.as_str(),
        pubsub["token"].as_str().unwrap(),
        login["refresh_token"].as_str().unwrap(),
    ] {
        let (status, _) = a
            .bearer_post(
                SUB_TOKEN,
                Some(not_a_user),
                json!({"channel": format!("user:{ME}")}),
            )
            .await;
        assert_eq!(status, 401);
    }
    let res =
        a.s.client
            .post(a.s.url(SUB_TOKEN))
            .basic_auth(&a.project, Some(&a.token))
            .json(&json!({"channel": format!("user:{ME}")}))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 401, "an API key is not a user");
}

#[tokio::test]
async fn membership_changes_apply_to_the_very_next_request() {
    let a = App::start(&[]).await;
    for kind in ["company", "organization"] {
        let channel = format!("{kind}:{COMPANY}");
        let member = format!("/api/v1/groups/{kind}/{COMPANY}/members/{ME}");
        assert_eq!(a.sub_token(&channel).await.0, 403);
        assert_eq!(a.basic("PUT", &member, None).await.0, 201);
        assert_eq!(a.basic("PUT", &member, None).await.0, 200, "idempotent");
        assert_eq!(a.sub_token(&channel).await.0, 200);
        let (status, list) = a
            .basic(
                "GET",
                &format!("/api/v1/groups/{kind}/{COMPANY}/members"),
                None,
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(list["members"][0]["user_id"], ME);
        assert_eq!(a.basic("DELETE", &member, None).await.0, 204);
        assert_eq!(a.basic("DELETE", &member, None).await.0, 404);
        assert_eq!(a.sub_token(&channel).await.0, 403);
    }
    let res =
        a.s.client
            .put(a.s.url(&format!("/api/v1/groups/company/{COMPANY}/members/{ME}")))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 401);
    // A token that can only mint cannot grant itself a group.
    let (p, t) =
        a.s.project_with([Scope::Pubsub, Scope::Calling].into_iter().collect())
            .await;
    let res =
        a.s.client
            .put(a.s.url(&format!("/api/v1/groups/company/{COMPANY}/members/{ME}")))
            .basic_auth(&p, Some(&t))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn tokens_are_bound_to_their_project() {
    // Two projects on the same server (one database), each with a user ME.
    let a = App::start(&[]).await;
    let all: Scopes = Scope::ALL.into_iter().collect();
    let (b_project, b_token) = a.s.project_with(all).await;
    let (status, login) =
        a.s.post(
            "/api/fabric/subscribers/tokens",
            (&b_project, &b_token),
            &json!({"reference": ME}),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let b_sat = login["token"].as_str().unwrap().to_owned();

    let (_, res) = a.sub_token(&format!("user:{ME}")).await;
    let token = res["token"].as_str().unwrap();
    let claims = a.verify(token).await;
    assert_eq!(
        claims["aud"],
        a.project.as_str(),
        "a Centrifugo checks its project as audience"
    );
    assert_eq!(claims["iss"], "tollgate");
    let (_, res) = a
        .bearer_post(
            SUB_TOKEN,
            Some(&b_sat),
            json!({"channel": format!("user:{ME}")}),
        )
        .await;
    let b_claims = a.verify(res["token"].as_str().unwrap()).await;
    assert_eq!(b_claims["aud"], b_project.as_str());

    // Each project's JWKS has only its own keys.
    let kid = decode_part(token, 0)["kid"].as_str().unwrap().to_owned();
    let jwks_of = |project: String| {
        let req =
            a.s.client
                .get(a.s.url(&format!("/api/v1/projects/{project}/jwks.json")));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let own = jwks_of(a.project.clone()).await;
    assert!(
        own["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid.as_str())
    );
    let other = jwks_of(b_project.clone()).await;
    assert!(!other["keys"].as_array().unwrap().is_empty());
    assert!(
        other["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kid"] != kid.as_str())
    );

    // Membership is per project: project B's group grants B's user, never A's, though
    // both projects share the database and the user id.
    let member = format!("/api/v1/groups/company/{COMPANY}/members/{ME}");
    let res =
        a.s.client
            .put(a.s.url(&member))
            .basic_auth(&b_project, Some(&b_token))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 201);
    let company = json!({"channel": format!("company:{COMPANY}")});
    assert_eq!(
        a.bearer_post(SUB_TOKEN, Some(&b_sat), company.clone())
            .await
            .0,
        200,
        "B's own member"
    );
    assert_eq!(a.sub_token(&format!("company:{COMPANY}")).await.0, 403);
    // A's member list does not show B's member either.
    let (status, list) = a
        .basic(
            "GET",
            &format!("/api/v1/groups/company/{COMPANY}/members"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["members"], json!([]), "{list}");
    // And the other way round: A's membership leaves B's removal effective.
    assert_eq!(a.basic("PUT", &member, None).await.0, 201);
    assert_eq!(a.sub_token(&format!("company:{COMPANY}")).await.0, 200);
    let res =
        a.s.client
            .delete(a.s.url(&member))
            .basic_auth(&b_project, Some(&b_token))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(
        a.bearer_post(SUB_TOKEN, Some(&b_sat), company).await.0,
        403,
        "removed from B"
    );
    assert_eq!(
        a.sub_token(&format!("company:{COMPANY}")).await.0,
        200,
        "still a member of A"
    );

    let res =
        a.s.client
            .get(a.s.url("/api/v1/projects/not-a-uuid/jwks.json"))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn private_channels_batches_and_the_legacy_endpoint() {
    let a = App::start(&[]).await;
    let (status, res) = a.sub_token(&format!("$user:{ME}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        a.verify(res["token"].as_str().unwrap()).await["channel"],
        format!("$user:{ME}")
    );
    assert_eq!(a.sub_token(&format!("$user:{OTHER}")).await.0, 403);
    let (status, res) = a
        .bearer_post(
            SUB_TOKEN,
            Some(&a.sat),
            json!({"channel": format!("user:{ME}"), "info": {"role": "admin"}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        a.verify(res["token"].as_str().unwrap()).await["info"],
        json!({"role": "admin"})
    );
    let (status, _) = a
        .bearer_post(
            SUB_TOKEN,
            Some(&a.sat),
            json!({"channel": format!("user:{ME}"), "info": "x"}),
        )
        .await;
    assert_eq!(status, 422);

    // Centrifugo v2/v3 JS client: {client, channels} → allowed channels only, with `client`.
    let (status, res) = a
        .bearer_post(
            "/centrifuge/subscribe",
            Some(&a.sat),
            json!({"client": "client-id-1", "channels": [format!("$user:{ME}"), format!("$user:{OTHER}"), "bad"]}),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let granted = res["channels"].as_array().unwrap();
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["channel"], format!("$user:{ME}"));
    let claims = a.verify(granted[0]["token"].as_str().unwrap()).await;
    assert_eq!(claims["client"], "client-id-1");
    assert_eq!(claims["channel"], format!("$user:{ME}"));
    // The client id is copied into every token: a long one is refused, not amplified.
    let (status, res) = a
        .bearer_post(
            "/centrifuge/subscribe",
            Some(&a.sat),
            json!({"client": "c".repeat(129), "channels": [format!("$user:{ME}")]}),
        )
        .await;
    assert_eq!(status, 422, "{res}");
    assert_eq!(res["errors"][0]["attribute"], "client");

    // The modern batch: every channel answered in order.
    let (status, res) = a
        .bearer_post(
            "/api/v1/centrifugo/subscription-tokens",
            Some(&a.sat),
            json!({"channels": [format!("user:{ME}"), format!("user:{OTHER}"), "nope"]}),
        )
        .await;
    assert_eq!(status, 200);
    let tokens = res["tokens"].as_array().unwrap();
    assert!(tokens[0]["token"].is_string());
    assert_eq!(tokens[1]["error"]["status"], 403);
    assert_eq!(tokens[2]["error"]["status"], 422);
    let too_many: Vec<String> = (0..101).map(|_| format!("user:{ME}")).collect();
    let (status, _) = a
        .bearer_post(
            "/api/v1/centrifugo/subscription-tokens",
            Some(&a.sat),
            json!({"channels": too_many}),
        )
        .await;
    assert_eq!(status, 422);

    // Connection tokens: the user, never a channel.
    let (status, res) = a
        .bearer_post(
            "/api/v1/centrifugo/connection-token",
            Some(&a.sat),
            json!({"info": {"name": "Ada"}}),
        )
        .await;
    assert_eq!(status, 200);
    let claims = a.verify(res["token"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], ME);
    assert_eq!(claims["info"], json!({"name": "Ada"}));
    assert!(claims.get("channel").is_none());
}

#[tokio::test]
async fn the_shared_hmac_secret_signs_for_an_external_centrifugo() {
    let a = App::start(&[("TOLLGATE_CENTRIFUGO__TOKEN_HMAC_SECRET_KEY", HMAC)]).await;
    let (_, res) = a.sub_token(&format!("user:{ME}")).await;
    let token = res["token"].as_str().unwrap();
    let header = decode_part(token, 0);
    assert_eq!(header["alg"], "HS256");
    let kid = header["kid"].as_str().unwrap().parse().unwrap();
    let key = VerifyingKey::hmac(Algorithm::HS256, kid, HMAC.as_bytes()).unwrap();
    let claims = jose::verify_pinned(token, 1 << 16, &key).unwrap().claims;
    assert_eq!(claims["sub"], ME);
    // The secret never appears in the JWKS.
    let jwks = a.s.get_text("/.well-known/jwks.json").await;
    assert!(!jwks.contains("\"oct\"") && !jwks.contains(&URL_SAFE_NO_PAD.encode(HMAC)));
}

#[tokio::test]
async fn app_user_jwts_are_verified_with_the_registered_key() {
    let a = App::start(&[]).await;
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
    let jwt = |claims: Value| jose::sign(&signer, HeaderExtras::default(), &claims).unwrap();
    let good =
        json!({"sub": ME, "iss": "https://app.example", "aud": "tollgate", "exp": now() + 60});
    let (status, res) = a
        .bearer_post(
            SUB_TOKEN,
            Some(&jwt(good.clone())),
            json!({"channel": format!("user:{ME}")}),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    for (claim, value) in [
        ("aud", json!("someone-else")),
        ("iss", json!("https://evil.example")),
        ("exp", json!(now() - 1)),
        ("aud", Value::Null),
    ] {
        let mut c = good.clone();
        if value.is_null() {
            c.as_object_mut().unwrap().remove(claim);
        } else {
            c[claim] = value;
        }
        let (status, _) = a
            .bearer_post(
                SUB_TOKEN,
                Some(&jwt(c)),
                json!({"channel": format!("user:{ME}")}),
            )
            .await;
        assert_eq!(status, 401, "{claim}");
    }
    // Signed with another secret, or alg "none": refused.
    let forger =
        SigningKey::from_secret(Algorithm::HS256, "app".parse().unwrap(), &[9u8; 32]).unwrap();
    let forged = jose::sign(&forger, HeaderExtras::default(), &good).unwrap();
    assert_eq!(
        a.bearer_post(
            SUB_TOKEN,
            Some(&forged),
            json!({"channel": format!("user:{ME}")})
        )
        .await
        .0,
        401
    );
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    assert_eq!(
        a.bearer_post(
            SUB_TOKEN,
            Some(&none),
            json!({"channel": format!("user:{ME}")})
        )
        .await
        .0,
        401
    );
}

#[tokio::test]
async fn signing_keys_rotate_without_a_failed_verification() {
    let a = App::start(&[]).await;
    let (_, before) = a.sub_token(&format!("user:{ME}")).await;
    let before = before["token"].as_str().unwrap().to_owned();
    let old_kid = decode_part(&before, 0)["kid"].as_str().unwrap().to_owned();

    let (status, rotated) = a
        .basic(
            "POST",
            "/api/v1/keys/rotate",
            Some(json!({"alg": "EdDSA", "retire_after": 3600})),
        )
        .await;
    assert_eq!(status, 201, "{rotated}");
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();

    // Both keys are published; the old token still verifies; new tokens use the new key.
    a.verify(&before).await;
    let (_, after) = a.sub_token(&format!("user:{ME}")).await;
    let after = after["token"].as_str().unwrap();
    assert_eq!(decode_part(after, 0)["kid"], new_kid);
    assert_eq!(decode_part(after, 0)["alg"], "EdDSA");
    a.verify(after).await;
    let (_, keys) = a.basic("GET", "/api/v1/keys", None).await;
    let mut states: Vec<(String, String)> = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().to_owned(),
                k["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    states.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        states,
        vec![
            (new_kid.clone(), "active".into()),
            (old_kid.clone(), "retiring".into())
        ]
    );

    // The old key's end is set; a window shorter than every node's key cache is refused.
    let (status, res) = a
        .basic(
            "POST",
            "/api/v1/keys/rotate",
            Some(json!({"alg": "RS256", "retire_after": 0})),
        )
        .await;
    assert_eq!(status, 422, "{res}");
    let (status, _) = a
        .basic(
            "POST",
            "/api/v1/keys/rotate",
            Some(json!({"alg": "RS256", "retire_after": 60})),
        )
        .await;
    assert_eq!(status, 201);
    let (_, keys) = a.basic("GET", "/api/v1/keys", None).await;
    let edd = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == new_kid.as_str())
        .unwrap();
    assert_eq!(edd["state"], "retiring");
    assert!(edd["not_after"].is_string());
    let jwks = a.s.get_text("/.well-known/jwks.json").await;
    for private in [
        "\"d\"", "\"p\"", "\"q\"", "\"dp\"", "\"dq\"", "\"qi\"", "\"k\"",
    ] {
        assert!(
            !jwks.contains(private),
            "private member {private} in the JWKS"
        );
    }

    // Only management-scoped tokens may rotate.
    let (p, t) =
        a.s.project_with([Scope::Pubsub].into_iter().collect())
            .await;
    let res =
        a.s.client
            .post(a.s.url("/api/v1/keys/rotate"))
            .basic_auth(&p, Some(&t))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn projects_add_their_own_namespaces() {
    let a = App::start(&[]).await;
    let (status, ns) = a
        .basic(
            "PUT",
            "/api/v1/namespaces/team",
            Some(json!({"rule": "member:team", "id_format": "token", "token_ttl": 600})),
        )
        .await;
    assert_eq!(status, 200, "{ns}");
    assert_eq!(a.sub_token("team:red").await.0, 403);
    a.basic(
        "PUT",
        &format!("/api/v1/groups/team/red/members/{ME}"),
        None,
    )
    .await;
    let (status, res) = a.sub_token("team:red").await;
    assert_eq!(status, 200);
    let claims = a.verify(res["token"].as_str().unwrap()).await;
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    let (status, _) = a
        .basic(
            "PUT",
            "/api/v1/namespaces/lobby",
            Some(json!({"rule": "everyone"})),
        )
        .await;
    assert_eq!(status, 422);
    let (_, list) = a.basic("GET", "/api/v1/namespaces", None).await;
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["user", "company", "organization", "team"]);
    assert_eq!(
        a.basic("DELETE", "/api/v1/namespaces/team", None).await.0,
        204
    );
    assert_eq!(a.sub_token("team:red").await.0, 422);
}

/// Serves one JSON document over HTTP on loopback, counting requests: the application's
/// JWKS endpoint (a third party's server, so a stand-in is fine here).
async fn serve_json(body: String) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, hits)
}

#[tokio::test]
async fn app_user_jwts_can_be_verified_through_a_jwks_url() {
    use std::sync::atomic::Ordering;
    // The stand-in JWKS server is on loopback, which only this setting admits.
    let a = App::start(&[("TOLLGATE_JWKS__ALLOW_PRIVATE_HOSTS", "true")]).await;
    let signer = SigningKey::generate(Algorithm::ES256, "app-key-1".parse().unwrap())
        .unwrap()
        .0;
    let jwk = signer.verifying_key().to_jwk().unwrap();
    let (url, hits) = serve_json(json!({"keys": [jwk]}).to_string()).await;
    a.s.app
        .tollgate
        .add_user_auth_key(
            a.project.parse().unwrap(),
            "https://idp.example",
            "tollgate",
            tollgate_service::centrifugo::UserAuthKey::JwksUrl(&url),
        )
        .await
        .unwrap();
    let claims =
        json!({"sub": ME, "iss": "https://idp.example", "aud": "tollgate", "exp": now() + 60});
    let user_jwt = jose::sign(&signer, HeaderExtras::default(), &claims).unwrap();
    let channel = json!({"channel": format!("user:{ME}")});
    assert_eq!(
        a.bearer_post(SUB_TOKEN, Some(&user_jwt), channel.clone())
            .await
            .0,
        200
    );
    assert_eq!(
        a.bearer_post(SUB_TOKEN, Some(&user_jwt), channel.clone())
            .await
            .0,
        200
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the JWKS is cached");

    // Unknown kids are refused and do not make Tollgate hammer the JWKS.
    let stranger = SigningKey::generate(Algorithm::ES256, "app-key-2".parse().unwrap())
        .unwrap()
        .0;
    let forged = jose::sign(&stranger, HeaderExtras::default(), &claims).unwrap();
    for _ in 0..5 {
        assert_eq!(
            a.bearer_post(SUB_TOKEN, Some(&forged), channel.clone())
                .await
                .0,
            401
        );
    }
    assert!(
        hits.load(Ordering::SeqCst) <= 2,
        "refetches are rate limited"
    );

    // Only https URLs are accepted (and loopback http with the setting): not link-local.
    let err =
        a.s.app
            .tollgate
            .add_user_auth_key(
                a.project.parse().unwrap(),
                "https://other.example",
                "tollgate",
                tollgate_service::centrifugo::UserAuthKey::JwksUrl("http://169.254.169.254/jwks"),
            )
            .await
            .unwrap_err();
    assert!(matches!(
        err,
        tollgate_service::ServiceError::InvalidInput(_)
    ));
}
