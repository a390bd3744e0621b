//! The deployment-wide Centrifugo credentials — `centrifugo.token_hmac_secret_key` and
//! `centrifugo.api_key` — and the one project they act for.
//!
//! They exist for users moving from a single Centrifugo, where one secret and one API key
//! stand for the whole installation. In Tollgate every connection and every server API
//! call belongs to exactly one project, so these credentials are bound to one: the project
//! named by `centrifugo.project`, or else the only project while there is exactly one.
//! With several projects and no setting they act for none — they are refused on use with
//! an error naming the setting, never applied to "all projects".

use subtle::ConstantTimeEq as _;
use tollgate_token::ProjectId;

use crate::{ServiceError, Tollgate};

/// The setting that names the project, as operators write it (for messages).
pub const PROJECT_SETTING: &str = "centrifugo.project (TOLLGATE_CENTRIFUGO__PROJECT)";

/// Longest server API key looked at: anything longer is refused without hashing.
pub(crate) const MAX_SERVER_API_KEY_LEN: usize = 256;

/// The deployment-wide credentials. `Debug` never shows the secrets.
#[derive(Clone, Default)]
pub struct SharedCredentials {
    /// Centrifugo's `client.token.hmac_secret_key`.
    pub hmac_secret: Option<Vec<u8>>,
    /// Centrifugo's `http_api.key`.
    pub api_key: Option<String>,
    /// The project both act for (`centrifugo.project`).
    pub project: Option<ProjectId>,
}

impl std::fmt::Debug for SharedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCredentials")
            .field(
                "hmac_secret",
                &self.hmac_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("project", &self.project)
            .finish()
    }
}

impl SharedCredentials {
    /// Whether either credential is configured.
    #[must_use]
    pub fn any(&self) -> bool {
        self.hmac_secret.is_some() || self.api_key.is_some()
    }
}

/// Who is calling the Centrifugo server API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerApiCaller {
    /// A key of this project (its own, or the deployment key bound to it).
    Project(ProjectId),
    /// The deployment-wide `centrifugo.api_key`, which acts for no project here (several
    /// projects and no `centrifugo.project`).
    Unbound,
    /// No key, or a wrong or revoked one.
    Denied,
}

impl Tollgate {
    /// The project the deployment-wide credentials act for: `centrifugo.project` when set,
    /// else the only project while there is exactly one. `None` when they act for none.
    ///
    /// The project count is read at most every few seconds (a cached answer; this node
    /// forgets it when it creates a project), so a shared-secret connection costs no store
    /// round trip.
    pub async fn shared_credentials_project(&self) -> Result<Option<ProjectId>, ServiceError> {
        if let Some(project) = self.inner.settings.centrifugo.project {
            return Ok(Some(project));
        }
        if let Some(only) = self.inner.only_project.get(&()) {
            return Ok(only);
        }
        let projects = self.inner.store.list_projects().await?;
        let only = match projects.as_slice() {
            [one] => Some(one.id),
            _ => None,
        };
        self.inner.only_project.put((), only);
        Ok(only)
    }

    /// Checks the deployment-wide credentials at start-up: an error when
    /// `centrifugo.project` names a project that does not exist (they would act for an
    /// empty phantom project), a warning when they are configured but act for no project.
    pub async fn check_shared_credentials(&self) -> Result<Option<String>, ServiceError> {
        let shared = &self.inner.settings.centrifugo;
        if !shared.any() {
            return Ok(None);
        }
        if let Some(project) = shared.project {
            if self.inner.store.project(project).await?.is_none() {
                return Err(ServiceError::InvalidInput(format!(
                    "{PROJECT_SETTING} names project {project}, which does not exist \
                     (`tollgate project list` shows the projects)"
                )));
            }
            return Ok(None);
        }
        let n = self.inner.store.list_projects().await?.len();
        Ok((n > 1).then(|| {
            format!(
                "centrifugo.token_hmac_secret_key / centrifugo.api_key are set but there are {n} \
                 projects and no {PROJECT_SETTING}: they are refused until it names the project \
                 they act for"
            )
        }))
    }

    /// Authenticates a Centrifugo server API key: the deployment-wide `centrifugo.api_key`
    /// (compared in constant time) or a project's own server API key.
    pub async fn authenticate_server_api(
        &self,
        key: &str,
    ) -> Result<ServerApiCaller, ServiceError> {
        if key.is_empty() || key.len() > MAX_SERVER_API_KEY_LEN {
            return Ok(ServerApiCaller::Denied);
        }
        if let Some(shared) = self.inner.settings.centrifugo.api_key.as_deref()
            && bool::from(shared.as_bytes().ct_eq(key.as_bytes()))
        {
            return Ok(match self.shared_credentials_project().await? {
                Some(project) => ServerApiCaller::Project(project),
                None => {
                    tracing::warn!(
                        "server API call with centrifugo.api_key refused: several projects and \
                         no {PROJECT_SETTING}"
                    );
                    ServerApiCaller::Unbound
                }
            });
        }
        Ok(match self.authenticate_server_key(key).await? {
            Some(project) => ServerApiCaller::Project(project),
            None => ServerApiCaller::Denied,
        })
    }
}

#[cfg(test)]
mod tests {
    use tollgate_token::Scopes;

    use super::*;
    use crate::Settings;

    const KEY: &str = "deployment-api-key";

    async fn service(dir: &tempfile::TempDir, project: Option<ProjectId>) -> Tollgate {
        let settings = Settings {
            centrifugo: SharedCredentials {
                hmac_secret: Some(vec![7; 32]),
                api_key: Some(KEY.into()),
                project,
            },
            ..Settings::default()
        };
        crate::tests::service_with(dir, [3; 32], settings)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_only_project_then_none_once_there_are_two() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(&dir, None).await;
        assert_eq!(
            svc.shared_credentials_project().await.unwrap(),
            None,
            "no project yet"
        );
        let first = svc
            .create_project("one", Scopes::project_default())
            .await
            .unwrap();
        let first = first.project.id;
        assert_eq!(svc.shared_credentials_project().await.unwrap(), Some(first));
        assert_eq!(
            svc.authenticate_server_api(KEY).await.unwrap(),
            ServerApiCaller::Project(first)
        );
        assert!(svc.check_shared_credentials().await.unwrap().is_none());

        // A second project on this node unbinds them at once (no cached answer).
        svc.create_project("two", Scopes::project_default())
            .await
            .unwrap();
        assert_eq!(svc.shared_credentials_project().await.unwrap(), None);
        assert_eq!(
            svc.authenticate_server_api(KEY).await.unwrap(),
            ServerApiCaller::Unbound
        );
        let warning = svc.check_shared_credentials().await.unwrap().unwrap();
        assert!(warning.contains("centrifugo.project"), "{warning}");

        // Wrong, empty and oversized keys are refused alike.
        for key in ["wrong", "", &"k".repeat(MAX_SERVER_API_KEY_LEN + 1)] {
            assert_eq!(
                svc.authenticate_server_api(key).await.unwrap(),
                ServerApiCaller::Denied
            );
        }
    }

    #[tokio::test]
    async fn the_setting_decides_and_must_name_a_real_project() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(&dir, None).await;
        let a = svc
            .create_project("a", Scopes::project_default())
            .await
            .unwrap();
        svc.create_project("b", Scopes::project_default())
            .await
            .unwrap();
        let a = a.project.id;
        drop(svc);

        let pinned = service(&dir, Some(a)).await;
        assert_eq!(pinned.shared_credentials_project().await.unwrap(), Some(a));
        assert_eq!(
            pinned.authenticate_server_api(KEY).await.unwrap(),
            ServerApiCaller::Project(a)
        );
        assert!(pinned.check_shared_credentials().await.unwrap().is_none());

        let phantom = service(&dir, Some(ProjectId::new_random())).await;
        let refused = phantom.check_shared_credentials().await;
        assert!(
            matches!(&refused, Err(ServiceError::InvalidInput(why)) if why.contains("does not exist")),
            "{refused:?}"
        );
    }

    #[test]
    fn debug_never_shows_the_secrets() {
        let shared = SharedCredentials {
            hmac_secret: Some(b"very-secret-hmac-key-material-123".to_vec()),
            api_key: Some("very-secret-api-key".into()),
            project: None,
        };
        let shown = format!("{shared:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
    }
}
