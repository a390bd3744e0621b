//! Fetching an application's JWKS (user JWTs verified through a JWKS URL), over real HTTP
//! and real sockets: the application's JWKS server is a third party, so a small TCP server
//! in the test stands in for it and counts what Tollgate asks of it.
//!
//! Issue #13: the response size cap must hold while streaming, a failing host must be asked
//! at most once per refetch window, concurrent verifications must share one fetch, and
//! private addresses are refused unless `jwks.allow_private_hosts` is set.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tollgate_service::ServiceError;
use tollgate_service::centrifugo::UserAuthKey;
use tollgate_token::jose::{self, Algorithm, HeaderExtras, SigningKey};

use crate::support::{TestServer, now};

const ALLOW_PRIVATE: (&str, &str) = ("TOLLGATE_JWKS__ALLOW_PRIVATE_HOSTS", "true");
const CONNECTION_TOKEN: &str = "/api/v1/centrifugo/connection-token";
const ISSUER: &str = "https://idp.example";

/// What the stand-in JWKS server answers.
#[derive(Clone)]
enum Reply {
    /// 200 with this JSON after a delay (to let concurrent requests pile up).
    Json(String, Duration),
    /// 500.
    Fail,
    /// 200 with no `Content-Length`, streaming this many bytes until done or cut off.
    Endless(u64),
}

/// The stand-in's counters: connections accepted, body bytes the kernel took from it, and
/// whether the peer hung up before a streamed body was complete.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    written: AtomicU64,
    cut_off: AtomicBool,
}

async fn serve(reply: Reply) -> (String, Arc<Seen>) {
    // A small send buffer, so what `written` counts is close to what the client read.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(64 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(64).unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let counters = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            counters.connections.fetch_add(1, Ordering::SeqCst);
            let (reply, counters) = (reply.clone(), counters.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                match reply {
                    Reply::Json(body, delay) => {
                        tokio::time::sleep(delay).await;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = sock.write_all(format!("{head}{body}").as_bytes()).await;
                    }
                    Reply::Fail => {
                        let _ = sock
                            .write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                    }
                    Reply::Endless(total) => {
                        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"keys\":[";
                        if sock.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let chunk = vec![b' '; 64 * 1024];
                        while counters.written.load(Ordering::SeqCst) < total {
                            match sock.write(&chunk).await {
                                Ok(n) if n > 0 => {
                                    counters.written.fetch_add(n as u64, Ordering::SeqCst);
                                }
                                _ => {
                                    counters.cut_off.store(true, Ordering::SeqCst);
                                    return;
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    (url, seen)
}

/// A server with one project whose user JWTs are verified through the JWKS at `url`, and a
/// user JWT of that application (signed by `signer`).
async fn app(env: &[(&str, &str)], url: &str, signer: &SigningKey) -> (TestServer, String) {
    let s = TestServer::start_with(env).await;
    let (project, _) = s.project().await;
    s.app
        .tollgate
        .add_user_auth_key(
            project.parse().unwrap(),
            ISSUER,
            "tollgate",
            UserAuthKey::JwksUrl(url),
        )
        .await
        .unwrap();
    let claims = json!({"sub": "user-1", "iss": ISSUER, "aud": "tollgate", "exp": now() + 600});
    let jwt = jose::sign(signer, HeaderExtras::default(), &claims).unwrap();
    (s, jwt)
}

async fn connect_status(s: &TestServer, jwt: &str) -> u16 {
    s.client
        .post(s.url(CONNECTION_TOKEN))
        .bearer_auth(jwt)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn signer() -> SigningKey {
    SigningKey::generate(Algorithm::ES256, "app-key-1".parse().unwrap())
        .unwrap()
        .0
}

fn jwks_of(signer: &SigningKey) -> String {
    json!({"keys": [signer.verifying_key().to_jwk().unwrap()]}).to_string()
}

#[tokio::test]
async fn an_oversized_jwks_is_cut_off_at_the_cap_while_streaming() {
    // The probe's size: a whole read of it took the server from 56 to 580 MB of RSS.
    const BODY: u64 = 256 * 1024 * 1024;
    let (url, seen) = serve(Reply::Endless(BODY)).await;
    let signer = signer();
    let (s, jwt) = app(&[ALLOW_PRIVATE], &url, &signer).await;
    assert_eq!(connect_status(&s, &jwt).await, 503);
    // The stand-in notices the hang-up at its next write.
    for _ in 0..100 {
        if seen.cut_off.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let written = seen.written.load(Ordering::SeqCst);
    assert!(
        seen.cut_off.load(Ordering::SeqCst),
        "Tollgate must hang up mid-body ({written} bytes written)"
    );
    // The cap is 256 KiB; the rest is what the two kernels' socket buffers took in.
    assert!(
        written < 8 * 1024 * 1024,
        "Tollgate read {written} of {BODY} bytes before giving up"
    );
}

#[tokio::test]
async fn a_failing_jwks_host_is_asked_once_per_refetch_window() {
    let (url, seen) = serve(Reply::Fail).await;
    let signer = signer();
    let (s, jwt) = app(&[ALLOW_PRIVATE], &url, &signer).await;
    for _ in 0..30 {
        assert_eq!(connect_status(&s, &jwt).await, 503);
    }
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        1,
        "the failure is remembered for the refetch window"
    );
}

#[tokio::test]
async fn concurrent_verifications_share_one_fetch() {
    let signer = signer();
    let (url, seen) = serve(Reply::Json(jwks_of(&signer), Duration::from_millis(300))).await;
    let (s, jwt) = app(&[ALLOW_PRIVATE], &url, &signer).await;
    let s = Arc::new(s);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (s, jwt) = (s.clone(), jwt.clone());
            tokio::spawn(async move { connect_status(&s, &jwt).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1, "one fetch");
}

#[tokio::test]
async fn jwks_urls_naming_private_addresses_are_refused_unless_allowed() {
    let s = TestServer::start().await;
    let (project, _) = s.project().await;
    let add = |url: &'static str| {
        let tollgate = s.app.tollgate.clone();
        let project = project.parse().unwrap();
        async move {
            tollgate
                .add_user_auth_key(
                    project,
                    &format!("iss-{url}"),
                    "tollgate",
                    UserAuthKey::JwksUrl(url),
                )
                .await
        }
    };
    for url in [
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/jwks.json",
        "https://172.16.5.4/jwks.json",
        "https://192.168.1.1/jwks.json",
        "https://100.64.0.1/jwks.json",
        "https://127.0.0.1/jwks.json",
        "https://0.0.0.0/jwks.json",
        "https://224.0.0.1/jwks.json",
        "https://[::1]/jwks.json",
        "https://[fd00::1]/jwks.json",
        "https://[fe80::1]/jwks.json",
        "https://[::ffff:169.254.169.254]/jwks.json",
        // Other spellings of 127.0.0.1 that URL parsers accept.
        "https://2130706433/jwks.json",
        "https://0x7f.0.0.1/jwks.json",
        "https://localhost/jwks.json",
        "http://127.0.0.1:9000/jwks.json",
    ] {
        let err = add(url).await.unwrap_err();
        let ServiceError::InvalidInput(why) = &err else {
            panic!("{url}: {err:?}");
        };
        assert!(why.contains("jwks.allow_private_hosts"), "{url}: {why}");
    }
    add("https://jwks.example.com/.well-known/jwks.json")
        .await
        .unwrap();
    add("https://93.184.215.14/jwks.json").await.unwrap();

    // With the setting, loopback (and private https) is accepted: local development.
    let dev = TestServer::start_with(&[ALLOW_PRIVATE]).await;
    let (project, _) = dev.project().await;
    for url in [
        "http://127.0.0.1:9000/jwks.json",
        "http://localhost:9000/jwks.json",
        "https://10.0.0.1/jwks.json",
    ] {
        dev.app
            .tollgate
            .add_user_auth_key(
                project.parse().unwrap(),
                &format!("iss-{url}"),
                "tollgate",
                UserAuthKey::JwksUrl(url),
            )
            .await
            .unwrap();
    }
    // Plain http stays loopback-only even then.
    let err = dev
        .app
        .tollgate
        .add_user_auth_key(
            project.parse().unwrap(),
            "iss-http-private",
            "tollgate",
            UserAuthKey::JwksUrl("http://10.0.0.1/jwks.json"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::InvalidInput(_)), "{err:?}");
}

#[tokio::test]
async fn a_good_key_set_is_fetched_once_and_an_unknown_kid_does_not_refetch_at_once() {
    let signer = signer();
    let (url, seen) = serve(Reply::Json(jwks_of(&signer), Duration::ZERO)).await;
    let (s, jwt) = app(&[ALLOW_PRIVATE], &url, &signer).await;
    for _ in 0..5 {
        assert_eq!(connect_status(&s, &jwt).await, 200);
    }
    let stranger = SigningKey::generate(Algorithm::ES256, "app-key-2".parse().unwrap())
        .unwrap()
        .0;
    let claims = json!({"sub": "user-1", "iss": ISSUER, "aud": "tollgate", "exp": now() + 600});
    let forged = jose::sign(&stranger, HeaderExtras::default(), &claims).unwrap();
    for _ in 0..5 {
        assert_eq!(connect_status(&s, &forged).await, 401);
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}
