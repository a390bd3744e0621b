//! A real Tollgate server for tests.

use std::net::SocketAddr;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tollgate::App;
use tollgate::config;
use tollgate_token::Scopes;

pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) app: App,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub(crate) async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts a server on a fresh temporary database with extra `TOLLGATE_*` settings.
    pub(crate) async fn start_with(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, env).await
    }

    /// Starts a server with a TOML settings file (and extra `TOLLGATE_*` settings).
    pub(crate) async fn start_with_config(toml: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tollgate.toml");
        std::fs::write(&file, toml).unwrap();
        Self::start_from(dir, Some(&file), env).await
    }

    /// Starts a server over the database in `dir` (which may already hold data).
    pub(crate) async fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Self {
        Self::start_from(dir, None, env).await
    }

    async fn start_from(
        dir: tempfile::TempDir,
        file: Option<&std::path::Path>,
        env: &[(&str, &str)],
    ) -> Self {
        let mut vars = vec![(
            "TOLLGATE_DATABASE_URL".to_owned(),
            format!("sqlite://{}/tollgate.db", dir.path().display()),
        )];
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let config = config::load(file, vars).unwrap().config;
        let app = App::build(config).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = app.clone();
        let task = tokio::spawn(async move {
            serving
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
        });
        Self {
            addr,
            app,
            dir,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET path` as text (metrics, JWKS).
    pub(crate) async fn get_text(&self, path: &str) -> String {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Creates a project and returns `(project_id, api_token)`.
    pub(crate) async fn project(&self) -> (String, String) {
        self.project_with(Scopes::project_default()).await
    }

    pub(crate) async fn project_with(&self, scopes: Scopes) -> (String, String) {
        let created = self
            .app
            .tollgate
            .create_project("test", scopes)
            .await
            .unwrap();
        (
            created.project.id.to_string(),
            created.api_token.expose().to_owned(),
        )
    }

    /// POSTs `body` (raw) with Basic credentials.
    pub(crate) async fn post_raw(
        &self,
        path: &str,
        auth: Option<(&str, &str)>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some((user, pass)) = auth {
            req = req.basic_auth(user, Some(pass));
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(json!({"raw": text}));
        (status, headers, body)
    }

    pub(crate) async fn post(&self, path: &str, auth: (&str, &str), body: &Value) -> (u16, Value) {
        let (status, _, body) = self.post_raw(path, Some(auth), body.to_string()).await;
        (status, body)
    }

    /// Stops the server gracefully and waits for it.
    ///
    /// (Dropping a `TestServer` also stops it: the shutdown channel closes.)
    pub(crate) async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        self.dir
    }
}

/// Decodes a JWS part without verifying it.
pub(crate) fn decode_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Verifies a token Tollgate minted, with the key its header names.
pub(crate) async fn verify(app: &App, token: &str) -> serde_json::Map<String, Value> {
    let header = decode_part(token, 0);
    let kid = header["kid"].as_str().unwrap().parse().unwrap();
    let key = app.tollgate.verifying_key(&kid).await.unwrap().unwrap();
    tollgate_token::jose::verify(token, 1 << 20, |_| Some(&*key))
        .unwrap()
        .claims
}
