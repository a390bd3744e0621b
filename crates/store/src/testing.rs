//! Test support (feature `testing`): a throwaway PostgreSQL database per test, so tests
//! against the real server never see each other's rows.

use std::io::Write as _;

use sqlx::Connection as _;

/// A freshly created database on the server named by an admin URL.
#[derive(Debug)]
pub struct PgTestDatabase {
    admin_url: String,
    name: String,
    /// Connection URL of the new database.
    pub url: String,
}

impl PgTestDatabase {
    /// The admin URL from `TOLLGATE_TEST_POSTGRES_URL`, or `None` when it is not set: the
    /// calling test then skips, and says so on stderr with a `SKIPPED` line naming it.
    ///
    /// # Panics
    /// When it is not set and `CI=true`: CI runs PostgreSQL, so a missing server there is
    /// a failure, never a quiet pass.
    #[must_use]
    pub fn admin_url_from_env() -> Option<String> {
        let url = std::env::var("TOLLGATE_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty());
        if url.is_none() {
            let thread = std::thread::current();
            let test = thread.name().unwrap_or("a PostgreSQL test");
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test}: TOLLGATE_TEST_POSTGRES_URL is not set, and CI=true needs PostgreSQL"
            );
            // Straight to the process's stderr: the test harness captures `eprintln!` of
            // passing tests, and a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: TOLLGATE_TEST_POSTGRES_URL is not set (no PostgreSQL)"
            );
        }
        url
    }

    /// Creates a uniquely named database.
    ///
    /// # Panics
    /// If the server cannot be reached: a test that asked for PostgreSQL must not pass
    /// without it.
    pub async fn create(admin_url: &str) -> Self {
        let name = format!("tollgate_test_{}", uuid::Uuid::new_v4().simple());
        Self::admin(admin_url, &format!("CREATE DATABASE {name}")).await;
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("admin URL ends in /DATABASE");
        Self {
            admin_url: admin_url.to_owned(),
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// Drops the database, disconnecting anyone still using it.
    pub async fn drop_now(&self) {
        Self::admin(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await;
    }

    /// Simulates an outage (`false`) or its end (`true`): refuses new connections and cuts
    /// the existing ones.
    pub async fn set_available(&self, available: bool) {
        Self::admin(
            &self.admin_url,
            &format!("ALTER DATABASE {} ALLOW_CONNECTIONS {available}", self.name),
        )
        .await;
        if !available {
            Self::admin(
                &self.admin_url,
                &format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
                    self.name
                ),
            )
            .await;
        }
    }

    async fn admin(admin_url: &str, sql: &str) {
        let mut conn = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("connect to TOLLGATE_TEST_POSTGRES_URL");
        sqlx::query(sql)
            .execute(&mut conn)
            .await
            .expect("administer the test database");
    }
}
