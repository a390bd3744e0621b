//! The JWKS cache against a real HTTP server on loopback (a stand-in for the application's
//! JWKS host, a third party), with time moved by backdating what the cache remembers.
//! The same behaviours over Tollgate's HTTP API are in the integration suite (`jwks.rs`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tollgate_token::jose::{Algorithm, SigningKey};

use super::*;

/// A JWKS host on loopback: serves `body` while `up`, 500 otherwise; counts connections.
struct Host {
    url: String,
    port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

async fn host(body: String) -> Host {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let up = Arc::new(AtomicBool::new(true));
    let connections = Arc::new(AtomicUsize::new(0));
    let (serving, counter) = (up.clone(), connections.clone());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let (body, up) = (body.clone(), serving.load(Ordering::SeqCst));
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let response = if up {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
                };
                let _ = sock.write_all(response.as_bytes()).await;
            });
        }
    });
    Host {
        url: format!("http://127.0.0.1:{port}/jwks.json"),
        port,
        up,
        connections,
    }
}

impl Host {
    fn fetches(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn key_set() -> String {
    let signer = SigningKey::generate(Algorithm::ES256, "k1".parse().unwrap())
        .unwrap()
        .0;
    json!({"keys": [signer.verifying_key().to_jwk().unwrap()]}).to_string()
}

#[tokio::test]
async fn keys_outlive_a_failing_host_for_a_while_and_failures_are_remembered() {
    let host = host(key_set()).await;
    let cache = JwksCache::new(true);
    assert!(cache.key(&host.url, "k1").await.unwrap().is_some());
    assert_eq!(host.fetches(), 1);

    // The keys went stale and the host is down: the refetch fails, the old keys verify.
    host.up.store(false, Ordering::SeqCst);
    cache.backdate(&host.url, FRESH);
    assert!(cache.key(&host.url, "k1").await.unwrap().is_some());
    assert_eq!(host.fetches(), 2);
    // … and the failure is not retried within the refetch window, whoever asks.
    for _ in 0..10 {
        assert!(cache.key(&host.url, "k1").await.unwrap().is_some());
        assert!(cache.key(&host.url, "unknown").await.unwrap().is_none());
    }
    assert_eq!(host.fetches(), 2);

    // After the window, asked again; still down.
    cache.backdate(&host.url, MIN_REFETCH);
    assert!(cache.key(&host.url, "k1").await.unwrap().is_some());
    assert_eq!(host.fetches(), 3);

    // Keys older than the stale-if-error limit are no longer trusted.
    cache.backdate(&host.url, STALE_IF_ERROR);
    let err = cache.key(&host.url, "k1").await.unwrap_err();
    assert!(matches!(err, ServiceError::Unavailable(_)), "{err:?}");
    assert_eq!(host.fetches(), 4);
    assert!(cache.key(&host.url, "k1").await.is_err());
    assert_eq!(host.fetches(), 4, "the failure is remembered");

    // The host is back: the next window's fetch restores fresh keys.
    host.up.store(true, Ordering::SeqCst);
    cache.backdate(&host.url, MIN_REFETCH);
    assert!(cache.key(&host.url, "k1").await.unwrap().is_some());
    assert_eq!(host.fetches(), 5);
}

#[tokio::test]
async fn a_host_that_never_answered_is_unavailable_until_the_window_ends() {
    let host = host(key_set()).await;
    host.up.store(false, Ordering::SeqCst);
    let cache = JwksCache::new(true);
    for _ in 0..5 {
        assert!(matches!(
            cache.key(&host.url, "k1").await,
            Err(ServiceError::Unavailable(_))
        ));
    }
    assert_eq!(host.fetches(), 1);
    host.up.store(true, Ordering::SeqCst);
    cache.backdate(&host.url, MIN_REFETCH);
    assert!(cache.key(&host.url, "k1").await.unwrap().is_some());
    assert_eq!(host.fetches(), 2);
}

#[tokio::test]
async fn private_addresses_are_refused_at_fetch_time_before_connecting() {
    let host = host(key_set()).await;
    // A URL naming a loopback address (stored before the check existed, say).
    let cache = JwksCache::new(false);
    assert!(matches!(
        cache.key(&host.url, "k1").await,
        Err(ServiceError::Unavailable(_))
    ));
    // A name that resolves to loopback.
    let named = format!("https://jwks.inside.test:{}/jwks.json", host.port);
    let with_name = |allow_private| {
        let mut resolver = address::PublicOnly::new(allow_private);
        resolver.fixed.insert(
            "jwks.inside.test".into(),
            vec!["127.0.0.1".parse().unwrap()],
        );
        JwksCache::with_resolver(resolver, allow_private)
    };
    assert!(with_name(false).key(&named, "k1").await.is_err());
    assert_eq!(host.fetches(), 0, "no connection was attempted");
    // The same name, allowed: the connection is made (and fails at TLS, this host
    // speaking plain HTTP), which shows the refusal above was the resolver's.
    assert!(with_name(true).key(&named, "k1").await.is_err());
    assert_eq!(host.fetches(), 1);
}

#[tokio::test]
async fn the_number_of_urls_remembered_is_bounded() {
    let cache = JwksCache::new(false);
    for i in 0..MAX_URLS + 10 {
        cache.slot(&format!("https://app{i}.example/jwks.json"));
    }
    let slots = cache.slots.lock().unwrap();
    assert_eq!(slots.len(), MAX_URLS);
    assert!(slots.contains_key(&format!("https://app{}.example/jwks.json", MAX_URLS + 9)));
}

#[test]
fn only_public_signature_keys_are_taken_and_at_most_max_keys() {
    let jwk = |kid: &str| {
        let signer = SigningKey::generate(Algorithm::ES256, kid.parse().unwrap())
            .unwrap()
            .0;
        let mut jwk = signer.verifying_key().to_jwk().unwrap();
        jwk.insert("kid".into(), json!(kid));
        Value::Object(jwk)
    };
    let mut enc = jwk("enc");
    enc["use"] = json!("enc");
    let mut bad_kid = jwk("x");
    bad_kid["kid"] = json!("no spaces allowed");
    let doc = json!({"keys": [jwk("a"), enc, bad_kid, {"kty": "oct", "kid": "h", "k": "AAAA"}]});
    let keys = parse_keys(&doc);
    assert_eq!(keys.keys().collect::<Vec<_>>(), ["a"]);
    let many: Vec<Value> = (0..MAX_KEYS + 5).map(|i| jwk(&format!("k{i}"))).collect();
    assert_eq!(parse_keys(&json!({ "keys": many })).len(), MAX_KEYS);
}

#[test]
fn logs_show_urls_without_query_or_fragment() {
    assert_eq!(
        loggable("https://app.example/jwks.json?key=secret#x"),
        "https://app.example/jwks.json"
    );
}
