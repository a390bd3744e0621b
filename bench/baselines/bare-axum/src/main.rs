//! The HTTP ceiling on this machine: axum, one POST route, a constant JSON body the size
//! of a token response. Same runtime and server stack as Tollgate, no work behind it.

use axum::Router;
use axum::routing::post;

const BODY: &str = r#"{"token":"eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0.eyJpc3MiOiJ0b2xsZ2F0ZSIsInN1YiI6IjEyM2U0NTY3LWU4OWItMTJkMy1hNDU2LTQyNjYxNDE3NDAwMCIsImNoYW5uZWwiOiJ1c2VyOjEyM2U0NTY3LWU4OWItMTJkMy1hNDU2LTQyNjYxNDE3NDAwMCJ9.c2lnbmF0dXJl"}"#;

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8091".into());
    let app = Router::new().fallback(post(|| async {
        ([("content-type", "application/json")], BODY)
    }));
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}
