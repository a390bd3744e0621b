//! A real Tollgate server for tests.
//!
//! Every server gets a fresh database: a temporary SQLite file by default, or, with
//! `TOLLGATE_TEST_DATABASE=postgres`, a freshly created PostgreSQL database on the server
//! `TOLLGATE_TEST_POSTGRES_URL` names (dropped, best effort, when the server's data is).

use std::net::SocketAddr;
use std::path::Path;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tollgate::App;
use tollgate::config;
use tollgate_token::Scopes;
use tollgate_token::jose::SigningKey;

/// The master key every PostgreSQL-backed test server uses (there is no key file beside a
/// PostgreSQL database).
const PG_MASTER_KEY: [u8; 32] = [7; 32];

/// Whether this run puts every test server on PostgreSQL (`TOLLGATE_TEST_DATABASE=postgres`).
pub(crate) fn on_postgres() -> bool {
    match std::env::var("TOLLGATE_TEST_DATABASE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("TOLLGATE_TEST_DATABASE={other:?}: use sqlite or postgres"),
    }
}

/// A PostgreSQL database owned by a test server's data, dropped with it (best effort).
struct PgData(Option<tollgate_store::testing::PgTestDatabase>);

impl Drop for PgData {
    fn drop(&mut self) {
        let Some(db) = self.0.take() else {
            return;
        };
        // Drop runs inside the test's runtime: drop the database from a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(db.drop_now());
        })
        .join();
    }
}

/// A test server's data: its temporary directory (the SQLite file, or nothing but the
/// settings file) and, on PostgreSQL, its database. Handing it to [`TestServer::start_in`]
/// restarts a server over the same data.
pub(crate) struct DataDir {
    dir: tempfile::TempDir,
    pg: Option<PgData>,
}

impl DataDir {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            pg: None,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) app: App,
    data: DataDir,
    /// `TOLLGATE_SECRET_KEY` as configured, if it was (else the key file in the data dir).
    secret_key: Option<String>,
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
        Self::start_in(DataDir::new(), env).await
    }

    /// Starts a server on a temporary SQLite database whatever the run's database: for
    /// tests that inspect the database file itself.
    pub(crate) async fn start_sqlite() -> Self {
        Self::start_from(DataDir::new(), None, &[], false).await
    }

    /// Starts a server with a TOML settings file (and extra `TOLLGATE_*` settings).
    pub(crate) async fn start_with_config(toml: &str, env: &[(&str, &str)]) -> Self {
        let data = DataDir::new();
        let file = data.path().join("tollgate.toml");
        std::fs::write(&file, toml).unwrap();
        Self::start_from(data, Some(&file), env, on_postgres()).await
    }

    /// Starts a server over the data of a stopped one (or fresh data).
    pub(crate) async fn start_in(data: DataDir, env: &[(&str, &str)]) -> Self {
        Self::start_from(data, None, env, on_postgres()).await
    }

    async fn start_from(
        mut data: DataDir,
        file: Option<&Path>,
        env: &[(&str, &str)],
        postgres: bool,
    ) -> Self {
        let own_database = env.iter().any(|(k, _)| *k == "TOLLGATE_DATABASE_URL");
        let mut vars = Vec::new();
        if postgres && !own_database {
            if data.pg.is_none() {
                let admin = std::env::var("TOLLGATE_TEST_POSTGRES_URL").expect(
                    "TOLLGATE_TEST_DATABASE=postgres needs TOLLGATE_TEST_POSTGRES_URL \
                     (e.g. postgres://postgres@127.0.0.1:5432/test)",
                );
                data.pg = Some(PgData(Some(
                    tollgate_store::testing::PgTestDatabase::create(&admin).await,
                )));
            }
            let pg = data
                .pg
                .as_ref()
                .and_then(|pg| pg.0.as_ref())
                .map(|db| db.url.clone())
                .unwrap();
            vars.push(("TOLLGATE_DATABASE_URL".to_owned(), pg));
            vars.push((
                "TOLLGATE_SECRET_KEY".to_owned(),
                base64::engine::general_purpose::STANDARD.encode(PG_MASTER_KEY),
            ));
        } else {
            vars.push((
                "TOLLGATE_DATABASE_URL".to_owned(),
                format!("sqlite://{}/tollgate.db", data.path().display()),
            ));
        }
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let secret_key = vars
            .iter()
            .rev()
            .find(|(k, _)| k == "TOLLGATE_SECRET_KEY")
            .map(|(_, v)| v.clone());
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
            data,
            secret_key,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// What another node of the same installation needs: this server's database URL and
    /// master key, as `TOLLGATE_*` settings.
    pub(crate) fn shared_settings(&self) -> [(&'static str, String); 2] {
        let database = match self.data.pg.as_ref().and_then(|pg| pg.0.as_ref()) {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}/tollgate.db", self.data.path().display()),
        };
        let key = self.secret_key.clone().unwrap_or_else(|| {
            std::fs::read_to_string(self.data.path().join("tollgate.key"))
                .unwrap()
                .trim()
                .to_owned()
        });
        [
            ("TOLLGATE_DATABASE_URL", database),
            ("TOLLGATE_SECRET_KEY", key),
        ]
    }

    /// The server's data directory (its SQLite file, when it runs on SQLite).
    pub(crate) fn dir(&self) -> &Path {
        self.data.path()
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

    /// A new server API key of `project` (over the admin API, with its `management` token).
    pub(crate) async fn server_key(&self, project: &str, token: &str) -> String {
        let res = self
            .client
            .post(self.url("/api/v1/server-keys"))
            .basic_auth(project, Some(token))
            .json(&json!({"name": "test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let created: Value = res.json().await.unwrap();
        created["key"].as_str().unwrap().to_owned()
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
    pub(crate) async fn stop(mut self) -> DataDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        self.data
    }

    /// The installation's master key: the configured one, or the key file the server
    /// created beside its SQLite database.
    pub(crate) fn master_key(&self) -> tollgate_service::MasterKey {
        let text = match &self.secret_key {
            Some(k) => k.clone(),
            None => std::fs::read_to_string(self.data.path().join("tollgate.key")).unwrap(),
        };
        tollgate::master_key::decode(&text).unwrap()
    }

    /// The project's active signing key, unsealed with the master key: to sign tokens
    /// with claims Tollgate's endpoints would never put in them (another `aud`, `nbf`,
    /// `expire_at`, a short `exp`), exactly as Tollgate itself would sign them.
    pub(crate) async fn project_signer(&self, project: &str) -> SigningKey {
        let keys = self
            .app
            .tollgate
            .signing_keys(project.parse().unwrap())
            .await
            .unwrap();
        let record = keys
            .iter()
            .find(|k| k.state == tollgate_store::KeyState::Active)
            .expect("an active signing key");
        let secret = tollgate_service::Secrets::new(&self.master_key())
            .open(&record.kid, &record.sealed_secret)
            .unwrap();
        SigningKey::from_secret(record.alg, record.kid.clone(), &secret).unwrap()
    }
}

/// Signs `claims` with `key` the way Tollgate signs (its `kid` in the header).
pub(crate) fn sign(key: &SigningKey, claims: &Value) -> String {
    tollgate_token::jose::sign(key, tollgate_token::jose::HeaderExtras::default(), claims).unwrap()
}

/// The current unix time.
pub(crate) fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// The value of one series in Prometheus text (`name{labels}`), 0 when absent.
pub(crate) fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(|v| v.trim().parse::<f64>().unwrap())
        })
        .unwrap_or(0.0)
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
