//! Projects are sealed from each other. Two projects on one server use the same channel
//! names and the same user ids; every cross-tenant attempt a project could make — over the
//! Centrifugo protocol, the SignalWire protocol and the server API — reaches nothing of the
//! other project, while the same operation inside one project still works.
//!
//! Negative checks do not wait for silence: after the attempts, the victim's own project
//! publishes a marker into the same channel, and the first thing the victim's subscribers
//! receive must be that marker. Delivery into a channel is ordered, so anything that had
//! crossed over would have arrived first.

use serde_json::{Value, json};
use tollgate_token::{Scope, Scopes};

use crate::gateway::{Ws, closed, expect, open, send};
use crate::signalwire_ws::{Rpc, connect_params, mint};
use crate::support::TestServer;

/// A user id both projects use.
const ALICE: &str = "11111111-1111-4111-8111-111111111111";
/// A user only project B has.
const BOB: &str = "22222222-2222-4222-8222-222222222222";
/// A company id project B uses (project A will try to claim it).
const COMPANY: &str = "c0c0c0c0-0000-4000-8000-0000000000cc";

const CONFIG: &str = r#"
[gateway.namespaces.chat]
presence = true
join_leave = true
history_size = 20
history_ttl = "5m"
allow_history_for_subscriber = true
allow_presence_for_subscriber = true
"#;

/// One project: its API credentials and its own server API key.
struct Tenant {
    project: String,
    token: String,
    server_key: String,
}

impl Tenant {
    async fn new(s: &TestServer) -> Self {
        let all: Scopes = Scope::ALL.into_iter().collect();
        let (project, token) = s.project_with(all).await;
        let server_key = s.server_key(&project, &token).await;
        Self {
            project,
            token,
            server_key,
        }
    }

    fn auth(&self) -> (&str, &str) {
        (&self.project, &self.token)
    }

    /// Calls the server API with this project's key.
    async fn api(&self, s: &TestServer, method: &str, params: Value) -> Value {
        let res = s
            .client
            .post(s.url(&format!("/api/{method}")))
            .header("X-API-Key", &self.server_key)
            .json(&params)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{method}");
        res.json().await.unwrap()
    }

    /// A PubSub or Chat token for `member` with read and write on `channels`.
    async fn realtime_token(
        &self,
        s: &TestServer,
        kind: &str,
        member: &str,
        channels: &[&str],
    ) -> String {
        let grants: serde_json::Map<String, Value> = channels
            .iter()
            .map(|c| ((*c).to_owned(), json!({"read": true, "write": true})))
            .collect();
        mint(
            s,
            self.auth(),
            kind,
            json!({"ttl": 15, "member_id": member, "channels": grants}),
        )
        .await
    }

    /// A SAT for the subscriber whose reference is `user`.
    async fn sign_in(&self, s: &TestServer, user: &str) -> String {
        let (status, login) = s
            .post(
                "/api/fabric/subscribers/tokens",
                self.auth(),
                &json!({"reference": user}),
            )
            .await;
        assert_eq!(status, 200, "{login}");
        login["token"].as_str().unwrap().to_owned()
    }

    /// Makes `user` a member of company [`COMPANY`] in this project.
    async fn join_company(&self, s: &TestServer, user: &str) {
        let res = s
            .client
            .put(s.url(&format!("/api/v1/groups/company/{COMPANY}/members/{user}")))
            .basic_auth(&self.project, Some(&self.token))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.status());
    }

    /// A connected Centrifugo client of `member` subscribed to `channels`.
    async fn centrifugo(&self, s: &TestServer, member: &str, channels: &[&str]) -> Ws {
        let token = self.realtime_token(s, "pubsub", member, channels).await;
        let mut ws = open(s).await;
        send(
            &mut ws,
            &json!({"id": 1, "connect": {"token": token}}).to_string(),
        )
        .await;
        expect(&mut ws, |v| v["id"] == 1 && v["connect"].is_object()).await;
        for (i, channel) in channels.iter().enumerate() {
            let id = i + 2;
            send(
                &mut ws,
                &json!({"id": id, "subscribe": {"channel": channel}}).to_string(),
            )
            .await;
            let reply = expect(&mut ws, |v| v["id"] == id).await;
            assert!(reply["subscribe"].is_object(), "{reply}");
        }
        ws
    }

    /// A connected SignalWire Chat member subscribed to `channels` with every event.
    async fn chat(&self, s: &TestServer, member: &str, channels: &[&str]) -> Rpc {
        let token = self.realtime_token(s, "chat", member, channels).await;
        let mut rpc = Rpc::open(s).await;
        let connected = rpc.call("signalwire.connect", connect_params(&token)).await;
        assert!(connected["result"].is_object(), "{connected}");
        let names: Vec<Value> = channels.iter().map(|c| json!({"name": c})).collect();
        let events = json!([
            "chat.channel.message",
            "chat.member.joined",
            "chat.member.left",
            "chat.member.updated"
        ]);
        let subscribed = rpc
            .call(
                "chat.subscribe",
                json!({"channels": names, "events": events}),
            )
            .await;
        assert_eq!(subscribed["result"]["code"], "200", "{subscribed}");
        rpc
    }
}

async fn two_tenants() -> (TestServer, Tenant, Tenant) {
    let s = TestServer::start_with_config(CONFIG, &[]).await;
    let a = Tenant::new(&s).await;
    let b = Tenant::new(&s).await;
    (s, a, b)
}

/// The data of the next publication a Centrifugo client receives.
async fn next_pub(ws: &mut Ws) -> Value {
    expect(ws, |v| v["push"]["pub"].is_object()).await["push"]["pub"]["data"].clone()
}

/// The content of the next message a SignalWire member receives.
async fn next_message(rpc: &mut Rpc) -> Value {
    rpc.event("chat.channel.message").await["message"]["content"].clone()
}

fn users_in(presence: &Value) -> Vec<String> {
    let mut users: Vec<String> = presence
        .as_object()
        .unwrap()
        .values()
        .map(|i| i["user"].as_str().unwrap().to_owned())
        .collect();
    users.sort();
    users
}

#[tokio::test]
async fn the_same_channel_name_is_two_channels_in_every_protocol() {
    let (s, a, b) = two_tenants().await;
    let room = "chat:room";
    // Both projects have an `alice` in the same room, in both protocols.
    let mut a_cf = a.centrifugo(&s, ALICE, &[room]).await;
    // A's SignalWire publisher joins before A's listening member, so the only joins that
    // member could hear are later ones. (A member's own calls skip the events read while
    // waiting for the answer, so the listener never calls while messages are due.)
    let mut a_pub = a.chat(&s, "erin", &[room]).await;
    let mut a_sw = a.chat(&s, ALICE, &[room]).await;
    let mut b_cf = b.centrifugo(&s, ALICE, &[room]).await;
    let mut b_sw = b.chat(&s, "bob", &[room]).await;

    // A injects into "its" room by every route: a client publication in each protocol
    // and a server API publication with its own key.
    send(
        &mut a_cf,
        &json!({"id": 50, "publish": {"channel": room, "data": {"from": "a-centrifugo"}}})
            .to_string(),
    )
    .await;
    expect(&mut a_cf, |v| v["id"] == 50 && v["publish"].is_object()).await;
    let published = a_pub
        .call(
            "chat.publish",
            json!({"channel": room, "content": {"from": "a-signalwire"}}),
        )
        .await;
    assert_eq!(published["result"]["code"], "200", "{published}");
    let published = a
        .api(
            &s,
            "publish",
            json!({"channel": room, "data": {"from": "a-api"}}),
        )
        .await;
    assert_eq!(
        published["result"]["offset"], 3,
        "A's stream only counts A's: {published}"
    );

    // Inside A, all three arrive, in order, in both protocols.
    for want in ["a-centrifugo", "a-signalwire", "a-api"] {
        assert_eq!(next_pub(&mut a_cf).await["from"], want);
        assert_eq!(next_message(&mut a_sw).await["from"], want);
    }
    // B's subscribers saw none of it: the first thing they get is B's own marker.
    let marker = b
        .api(
            &s,
            "publish",
            json!({"channel": room, "data": {"from": "b-marker"}}),
        )
        .await;
    assert_eq!(
        marker["result"]["offset"], 1,
        "B's stream starts at 1: {marker}"
    );
    assert_eq!(next_pub(&mut b_cf).await["from"], "b-marker");
    assert_eq!(next_message(&mut b_sw).await["from"], "b-marker");
    // …and A's subscribers did not get B's marker either.
    a.api(
        &s,
        "publish",
        json!({"channel": room, "data": {"from": "a-marker"}}),
    )
    .await;
    assert_eq!(next_pub(&mut a_cf).await["from"], "a-marker");
    assert_eq!(next_message(&mut a_sw).await["from"], "a-marker");

    // History: each project reads only its own, in every protocol and through its key.
    send(
        &mut b_cf,
        &json!({"id": 60, "history": {"channel": room, "limit": -1}}).to_string(),
    )
    .await;
    let h = expect(&mut b_cf, |v| v["id"] == 60).await;
    let data: Vec<&Value> = h["history"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["data"]["from"])
        .collect();
    assert_eq!(data, [&json!("b-marker")], "{h}");
    let messages = b_sw
        .call("chat.messages.get", json!({"channel": room}))
        .await;
    let contents: Vec<&Value> = messages["result"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["content"]["from"])
        .collect();
    assert_eq!(contents, [&json!("b-marker")], "{messages}");
    let history = b
        .api(&s, "history", json!({"channel": room, "limit": -1}))
        .await;
    assert_eq!(
        history["result"]["publications"].as_array().unwrap().len(),
        1,
        "{history}"
    );
    let history = a
        .api(&s, "history", json!({"channel": room, "limit": -1}))
        .await;
    assert_eq!(
        history["result"]["publications"].as_array().unwrap().len(),
        4,
        "{history}"
    );

    // history_remove with B's key leaves A's history alone.
    b.api(&s, "history_remove", json!({"channel": room})).await;
    let history = a
        .api(&s, "history", json!({"channel": room, "limit": -1}))
        .await;
    assert_eq!(
        history["result"]["publications"].as_array().unwrap().len(),
        4
    );
    let history = b
        .api(&s, "history", json!({"channel": room, "limit": -1}))
        .await;
    assert_eq!(
        history["result"]["publications"].as_array().unwrap().len(),
        0
    );

    // Presence and members: each project sees only its own.
    send(
        &mut a_cf,
        &json!({"id": 70, "presence": {"channel": room}}).to_string(),
    )
    .await;
    let p = expect(&mut a_cf, |v| v["id"] == 70).await;
    assert_eq!(
        users_in(&p["presence"]["presence"]),
        [ALICE, ALICE, "erin"],
        "A's own: {p}"
    );
    let presence = b.api(&s, "presence", json!({"channel": room})).await;
    assert_eq!(
        users_in(&presence["result"]["presence"]),
        [ALICE.to_owned(), "bob".to_owned()],
        "{presence}"
    );
    let stats = a.api(&s, "presence_stats", json!({"channel": room})).await;
    assert_eq!(
        (
            stats["result"]["num_clients"].as_u64(),
            stats["result"]["num_users"].as_u64()
        ),
        (Some(3), Some(2))
    );
    let members = b_sw
        .call("chat.members.get", json!({"channel": room}))
        .await;
    let mut ids: Vec<&str> = members["result"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [ALICE, "bob"], "{members}");

    // Member state: A's alice sets hers; B cannot read it, B's members get no update.
    let set = a_sw
        .call(
            "chat.member.set_state",
            json!({"member_id": ALICE, "channels": [{"name": room}], "state": {"mood": "secret"}}),
        )
        .await;
    assert_eq!(set["result"]["code"], "200", "{set}");
    let state = b_sw
        .call(
            "chat.member.get_state",
            json!({"member_id": ALICE, "channels": [{"name": room}]}),
        )
        .await;
    // B has an alice of its own (its Centrifugo client): B sees her state, never A's.
    assert_eq!(
        state["result"]["channels"][room]["state"],
        json!({}),
        "{state}"
    );
    let state = a_sw
        .call(
            "chat.member.get_state",
            json!({"member_id": ALICE, "channels": [{"name": room}]}),
        )
        .await;
    assert_eq!(state["result"]["channels"][room]["state"]["mood"], "secret");

    // Joins do not cross: a new B member joins; A's chat member hears nothing before A's
    // own next join.
    let _b_late = b.chat(&s, "carol", &[room]).await;
    let joined = b_sw.event("chat.member.joined").await;
    assert_eq!(joined["member"]["id"], "carol");
    let _a_late = a.chat(&s, "dave", &[room]).await;
    let joined = a_sw.event("chat.member.joined").await;
    assert_eq!(
        joined["member"]["id"], "dave",
        "the first join A hears is its own"
    );
}

#[tokio::test]
async fn the_server_api_reaches_only_its_own_projects_channels_and_connections() {
    let (s, a, b) = two_tenants().await;
    let mut a_cf = a
        .centrifugo(&s, ALICE, &["chat:a-only", "chat:shared"])
        .await;
    let mut b_cf = b.centrifugo(&s, ALICE, &["chat:shared"]).await;

    // `channels` lists the caller's channels with the caller's counts.
    let channels = a.api(&s, "channels", json!({})).await;
    let names: Vec<&String> = channels["result"]["channels"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(names, ["chat:a-only", "chat:shared"], "{channels}");
    let channels = b.api(&s, "channels", json!({"pattern": "*"})).await;
    assert_eq!(
        channels["result"]["channels"],
        json!({"chat:shared": {"num_clients": 1}})
    );
    // `info` reports the caller's share of the node.
    let info = b.api(&s, "info", json!({})).await;
    assert_eq!(info["result"]["nodes"][0]["num_clients"], 1, "{info}");
    assert_eq!(info["result"]["nodes"][0]["num_channels"], 1, "{info}");

    // `subscribe` and `unsubscribe` of a user reach only the caller's user of that id.
    b.api(
        &s,
        "subscribe",
        json!({"user": ALICE, "channel": "chat:pushed"}),
    )
    .await;
    let pushed = expect(&mut b_cf, |v| v["push"]["subscribe"].is_object()).await;
    assert_eq!(pushed["push"]["channel"], "chat:pushed");
    b.api(
        &s,
        "unsubscribe",
        json!({"user": ALICE, "channel": "chat:shared"}),
    )
    .await;
    let gone = expect(&mut b_cf, |v| v["push"]["unsubscribe"].is_object()).await;
    assert_eq!(gone["push"]["channel"], "chat:shared");
    // A's alice was touched by neither: her next push is A's own publication, in a
    // channel she still has.
    a.api(
        &s,
        "publish",
        json!({"channel": "chat:shared", "data": {"n": "a"}}),
    )
    .await;
    let next = expect(&mut a_cf, |v| v["push"].is_object()).await;
    assert_eq!(next["push"]["channel"], "chat:shared", "{next}");
    assert_eq!(next["push"]["pub"]["data"]["n"], "a", "{next}");

    // `disconnect` of a user id both projects have closes only the caller's.
    b.api(
        &s,
        "disconnect",
        json!({"user": ALICE, "disconnect": {"code": 4100, "reason": "bye"}}),
    )
    .await;
    assert_eq!(closed(&mut b_cf).await, 4100);
    a.api(
        &s,
        "publish",
        json!({"channel": "chat:a-only", "data": {"n": "still here"}}),
    )
    .await;
    assert_eq!(next_pub(&mut a_cf).await["n"], "still here");

    // `refresh` with `expired` ends only the caller's connections of that user.
    let mut b_again = b.centrifugo(&s, ALICE, &["chat:shared"]).await;
    a.api(&s, "refresh", json!({"user": ALICE, "expired": true}))
        .await;
    assert_eq!(closed(&mut a_cf).await, 3005);
    b.api(
        &s,
        "publish",
        json!({"channel": "chat:shared", "data": {"n": "b lives"}}),
    )
    .await;
    assert_eq!(next_pub(&mut b_again).await["n"], "b lives");

    // Batches and the legacy endpoint run with the caller's project too.
    let batch = a
        .api(
            &s,
            "batch",
            json!({"commands": [{"history": {"channel": "chat:shared", "limit": -1}}]}),
        )
        .await;
    let kept = batch["replies"][0]["history"]["publications"]
        .as_array()
        .unwrap();
    assert_eq!(kept.len(), 1, "A's one publication to chat:shared: {batch}");
    let res = s
        .client
        .post(s.url("/api"))
        .header("Authorization", format!("apikey {}", b.server_key))
        .body(
            json!({"method": "history", "params": {"channel": "chat:shared", "limit": -1}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let legacy: Value = res.json().await.unwrap();
    let kept = legacy["result"]["publications"].as_array().unwrap();
    assert_eq!(kept.len(), 1, "B's one publication: {legacy}");
    assert_eq!(kept[0]["data"]["n"], "b lives");
}

#[tokio::test]
async fn channel_rules_grant_channels_only_inside_the_callers_project() {
    let (s, a, b) = two_tenants().await;
    // Each project has a signed-in alice (a SAT whose reference is her user id).
    let (a_sat, b_sat) = (a.sign_in(&s, ALICE).await, b.sign_in(&s, ALICE).await);
    let app_token = |sat: String, path: &'static str, body: Value| {
        let s = &s;
        async move {
            let res = s
                .client
                .post(s.url(path))
                .bearer_auth(sat)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{path}");
            let v: Value = res.json().await.unwrap();
            v["token"].as_str().unwrap().to_owned()
        }
    };
    // B's company channel, and alice's personal channel in B.
    let company = format!("company:{COMPANY}");
    let personal = format!("user:{ALICE}");
    b.join_company(&s, ALICE).await;
    // A's management token puts its own alice into a group with B's company id, and its
    // alice has the same user id as B's: A gets genuine tokens for both channel names.
    a.join_company(&s, ALICE).await;
    let connect = |sat: String| app_token(sat, "/api/v1/centrifugo/connection-token", json!({}));
    let subscribe = |sat: String, ch: String| {
        app_token(
            sat,
            "/api/v1/centrifugo/subscription-token",
            json!({"channel": ch}),
        )
    };
    let mut clients = Vec::new();
    for sat in [&a_sat, &b_sat] {
        let mut ws = open(&s).await;
        send(
            &mut ws,
            &json!({"id": 1, "connect": {"token": connect(sat.clone()).await}}).to_string(),
        )
        .await;
        expect(&mut ws, |v| v["id"] == 1 && v["connect"].is_object()).await;
        for (id, ch) in [(2, &company), (3, &personal)] {
            let token = subscribe(sat.clone(), ch.clone()).await;
            send(
                &mut ws,
                &json!({"id": id, "subscribe": {"channel": ch, "token": token}}).to_string(),
            )
            .await;
            let reply = expect(&mut ws, |v| v["id"] == id).await;
            assert!(reply["subscribe"].is_object(), "{reply}");
        }
        clients.push(ws);
    }
    let (mut a_ws, mut b_ws) = (clients.remove(0), clients.remove(0));
    // B publishes into its company and to its alice: only B's alice receives them.
    for ch in [&company, &personal] {
        b.api(
            &s,
            "publish",
            json!({"channel": ch, "data": {"secret": ch}}),
        )
        .await;
        assert_eq!(next_pub(&mut b_ws).await["secret"], ch.as_str());
    }
    for ch in [&company, &personal] {
        a.api(&s, "publish", json!({"channel": ch, "data": {"own": ch}}))
            .await;
        let got = next_pub(&mut a_ws).await;
        assert_eq!(
            got["own"],
            ch.as_str(),
            "A's alice got {got} before A's own publication"
        );
    }

    // A's subscription token never opens the channel on B's connection (and the other way
    // round): a token is for its own project's connections only.
    let a_sub = subscribe(a_sat.clone(), company.clone()).await;
    send(
        &mut b_ws,
        &json!({"id": 9, "unsubscribe": {"channel": company}}).to_string(),
    )
    .await;
    expect(&mut b_ws, |v| v["id"] == 9).await;
    send(
        &mut b_ws,
        &json!({"id": 10, "subscribe": {"channel": company, "token": a_sub}}).to_string(),
    )
    .await;
    let refused = expect(&mut b_ws, |v| v["id"] == 10).await;
    assert_eq!(refused["error"]["code"], 103, "{refused}");

    // A opens its whole `user` namespace to any signed-in user: its alice now gets a
    // token for B's bob's personal channel name, and it opens A's channel of that name.
    let res = s
        .client
        .put(s.url("/api/v1/namespaces/user"))
        .basic_auth(&a.project, Some(&a.token))
        .json(&json!({"rule": "authenticated"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let bobs = format!("user:{BOB}");
    let bob_sat = b.sign_in(&s, BOB).await;
    let mut bob = open(&s).await;
    let bob_connect = connect(bob_sat.clone()).await;
    send(
        &mut bob,
        &json!({"id": 1, "connect": {"token": bob_connect}}).to_string(),
    )
    .await;
    expect(&mut bob, |v| v["id"] == 1 && v["connect"].is_object()).await;
    let token = subscribe(bob_sat, bobs.clone()).await;
    send(
        &mut bob,
        &json!({"id": 2, "subscribe": {"channel": bobs, "token": token}}).to_string(),
    )
    .await;
    assert!(expect(&mut bob, |v| v["id"] == 2).await["subscribe"].is_object());
    let token = subscribe(a_sat, bobs.clone()).await;
    send(
        &mut a_ws,
        &json!({"id": 20, "subscribe": {"channel": bobs, "token": token}}).to_string(),
    )
    .await;
    assert!(expect(&mut a_ws, |v| v["id"] == 20).await["subscribe"].is_object());
    b.api(
        &s,
        "publish",
        json!({"channel": bobs, "data": {"for": "bob"}}),
    )
    .await;
    assert_eq!(next_pub(&mut bob).await["for"], "bob");
    a.api(
        &s,
        "publish",
        json!({"channel": bobs, "data": {"for": "a"}}),
    )
    .await;
    assert_eq!(
        next_pub(&mut a_ws).await["for"],
        "a",
        "A never saw B's message to bob"
    );
}

#[tokio::test]
async fn the_per_user_connection_limit_counts_per_project() {
    let s = TestServer::start_with_config(
        CONFIG,
        &[("TOLLGATE_GATEWAY__MAX_CONNECTIONS_PER_USER", "1")],
    )
    .await;
    let (a, b) = (Tenant::new(&s).await, Tenant::new(&s).await);
    let _a1 = a.centrifugo(&s, ALICE, &["chat:x"]).await;
    // B's alice is another user: her first connection is allowed.
    let _b1 = b.centrifugo(&s, ALICE, &["chat:x"]).await;
    // A's alice is at her limit.
    let token = a.realtime_token(&s, "pubsub", ALICE, &["chat:x"]).await;
    let mut a2 = open(&s).await;
    send(
        &mut a2,
        &json!({"id": 1, "connect": {"token": token}}).to_string(),
    )
    .await;
    assert_eq!(closed(&mut a2).await, 3504);
}
