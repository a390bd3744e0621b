//! The cluster's control plane, on two nodes of one installation sharing one private
//! `redis-server`: the server API's `subscribe` reaches a connection on the other node,
//! `info` lists every live node (and drops a stopped one within the heartbeat TTL), and a
//! change made through one node (a subscriber deleted, a namespace set, a signing key
//! rotated) empties the other node's caches at once instead of after their time bound.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_token::{Scope, Scopes};

use crate::cluster::{RedisServer, subscriber, two_nodes, within};
use crate::gateway::{api, expect};
use crate::support::TestServer;

#[tokio::test]
async fn server_api_subscribe_on_one_node_subscribes_a_connection_on_the_other() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b, project, token) = two_nodes(&redis).await;
    let mut on_a = subscriber(&a, &project, &token).await;

    let done = api(
        &b,
        "subscribe",
        json!({"user": "carol", "channel": "news", "data": {"welcome": true},
               "override": {"presence": {"value": false}}}),
    )
    .await;
    assert_eq!(done, json!({"result": {}}));
    let push = expect(&mut on_a, |v| v["push"]["subscribe"].is_object()).await;
    assert_eq!(push["push"]["channel"], "news", "{push}");
    assert_eq!(push["push"]["subscribe"]["data"], json!({"welcome": true}));

    // Subscribed for real: a publication through B reaches carol on A.
    let published = api(&b, "publish", json!({"channel": "news", "data": {"n": 1}})).await;
    assert_eq!(published, json!({"result": {}}));
    let push = expect(&mut on_a, |v| v["push"]["pub"].is_object()).await;
    assert_eq!(push["push"]["channel"], "news");
    assert_eq!(push["push"]["pub"]["data"], json!({"n": 1}));
}

/// A `subscribe` quickly followed by an `unsubscribe` reaches the other node in that order
/// (one queue per node, not one task per message): the connection ends unsubscribed, with
/// the two pushes in order. A large `subscribe` ahead of a small `unsubscribe` is where a
/// task per message let the second overtake the first.
#[tokio::test]
async fn commands_reach_the_other_node_in_the_order_they_were_made() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b, project, token) = two_nodes(&redis).await;
    let mut on_a = subscriber(&a, &project, &token).await;
    let big = "x".repeat(300_000);
    for i in 0..5 {
        let channel = format!("order{i}");
        let subscribed = api(
            &b,
            "subscribe",
            json!({"user": "carol", "channel": channel, "data": {"big": big}}),
        )
        .await;
        // Right after the answer: the subscribe may still be on its way to Redis.
        let unsubscribed = api(
            &b,
            "unsubscribe",
            json!({"user": "carol", "channel": channel}),
        )
        .await;
        assert_eq!(subscribed, json!({"result": {}}));
        assert_eq!(unsubscribed, json!({"result": {}}));
        let first = expect(&mut on_a, |v| v["push"]["channel"] == channel.as_str()).await;
        assert!(first["push"]["subscribe"].is_object(), "{channel}: {first}");
        let second = expect(&mut on_a, |v| v["push"]["channel"] == channel.as_str()).await;
        assert!(
            second["push"]["unsubscribe"].is_object(),
            "{channel}: {second}"
        );
    }
}

/// `info`'s nodes, by uid.
async fn nodes(node: &TestServer) -> Vec<Value> {
    let info = api(node, "info", json!({})).await;
    let mut nodes = info["result"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{info}"))
        .clone();
    nodes.sort_by_key(|n| n["uid"].as_str().map(str::to_owned));
    nodes
}

#[tokio::test]
async fn info_lists_every_live_node_and_drops_a_stopped_one_within_the_bound() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b, project, token) = two_nodes(&redis).await;
    let _on_a = subscriber(&a, &project, &token).await;

    // Through either node: both nodes, A with carol's connection and channel.
    for through in [&a, &b] {
        let listed = within(Duration::from_secs(5), "both nodes listed", async || {
            let nodes = nodes(through).await;
            let busy: Vec<&Value> = nodes.iter().filter(|n| n["num_clients"] == 1).collect();
            (nodes.len() == 2 && busy.len() == 1).then_some(nodes)
        })
        .await;
        for n in &listed {
            assert_eq!(n["name"], "tollgate");
            assert_eq!(n["version"], env!("CARGO_PKG_VERSION"));
        }
        let busy = listed.iter().find(|n| n["num_clients"] == 1).unwrap();
        assert_eq!(busy["num_users"], 1, "{busy}");
        assert_eq!(busy["num_channels"], 1, "{busy}");
        assert_eq!(busy["num_subs"], 1, "{busy}");
        let idle = listed.iter().find(|n| n["num_clients"] == 0).unwrap();
        assert_eq!(idle["num_channels"], 0, "{idle}");
    }

    // B stops without a word to Redis: A stops listing it within the node TTL (6 s).
    let stopped = Instant::now();
    let _b_data = b.stop().await;
    within(
        Duration::from_secs(7),
        "the stopped node dropped",
        async || (nodes(&a).await.len() == 1).then_some(()),
    )
    .await;
    assert!(stopped.elapsed() < Duration::from_secs(7));
}

#[tokio::test]
async fn info_shows_a_project_only_its_own_counts_on_every_node() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b, project, token) = two_nodes(&redis).await;
    let _on_a = subscriber(&a, &project, &token).await;
    // Another project, with its own server API key, sees both nodes and none of the
    // first project's activity.
    let all: Scopes = Scope::ALL.into_iter().collect();
    let (other, other_token) = a.project_with(all).await;
    let key = a.server_key(&other, &other_token).await;
    let info = within(Duration::from_secs(5), "both nodes listed", async || {
        let info: Value = b
            .client
            .post(b.url("/api/info"))
            .header("X-API-Key", &key)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (info["result"]["nodes"].as_array().map(Vec::len) == Some(2)).then_some(info)
    })
    .await;
    for n in info["result"]["nodes"].as_array().unwrap() {
        for count in ["num_clients", "num_users", "num_channels", "num_subs"] {
            assert_eq!(n[count], 0, "{info}");
        }
    }
}

/// A Basic-authenticated call to `node` as `project`.
async fn basic(
    node: &TestServer,
    (project, token): (&str, &str),
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = node
        .client
        .request(method.parse().unwrap(), node.url(path))
        .basic_auth(project, Some(token));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_change_through_one_node_empties_the_other_nodes_caches_at_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b, project, token) = two_nodes(&redis).await;
    let auth = (project.as_str(), token.as_str());
    // Well inside the caches' own bound (5 s), with room for a loaded machine.
    let quickly = Duration::from_secs(1);

    // A subscriber's SAT, validated (and so cached) on B.
    let (status, login) = b
        .post(
            "/api/fabric/subscribers/tokens",
            auth,
            &json!({"reference": "ada@example.com"}),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let sat = login["token"].as_str().unwrap().to_owned();
    let info_on_b = async || {
        b.client
            .get(b.url("/api/fabric/subscriber/info"))
            .bearer_auth(&sat)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(info_on_b().await, 200);
    // Deleted through A: B refuses the SAT at once, not after its cache's 5 s.
    let id = login["subscriber_id"].as_str().unwrap();
    let path = format!("/api/fabric/resources/subscribers/{id}");
    let deleted = Instant::now();
    assert_eq!(basic(&a, auth, "DELETE", &path, None).await.0, 204);
    within(
        quickly,
        "the deleted subscriber's SAT refused on B",
        async || (info_on_b().await == 401).then_some(()),
    )
    .await;
    assert!(deleted.elapsed() < quickly);

    // Namespaces: B has the project's list cached; a namespace set through A shows on B.
    let names = async || -> Vec<String> {
        let (_, list) = basic(&b, auth, "GET", "/api/v1/namespaces", None).await;
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(!names().await.contains(&"team".to_owned()));
    let body = json!({"rule": "member:team", "id_format": "token", "token_ttl": 600});
    let (status, ns) = basic(&a, auth, "PUT", "/api/v1/namespaces/team", Some(body)).await;
    assert_eq!(status, 200, "{ns}");
    within(quickly, "the new namespace listed on B", async || {
        names().await.contains(&"team".to_owned()).then_some(())
    })
    .await;

    // Signing keys: B signs with the project's key (cached for 30 s); after a rotation
    // through A, B signs with the new one at once.
    let kid_on_b = async || -> String {
        let (status, res) = b
            .post(
                "/api/pubsub/tokens",
                auth,
                &json!({"ttl": 5, "channels": {"room": {"read": true}}}),
            )
            .await;
        assert_eq!(status, 200, "{res}");
        crate::support::decode_part(res["token"].as_str().unwrap(), 0)["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = kid_on_b().await;
    let (status, rotated) = basic(&a, auth, "POST", "/api/v1/keys/rotate", Some(json!({}))).await;
    assert_eq!(status, 201, "{rotated}");
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, before);
    within(quickly, "B signing with the new key", async || {
        (kid_on_b().await == new_kid).then_some(())
    })
    .await;
}
