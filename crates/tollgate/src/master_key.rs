//! Loading (or, on first start, creating) the instance master key.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use tollgate_service::MasterKey;
use tollgate_service::secrets::MASTER_KEY_LEN;

use crate::config::MasterKeySource;

/// Decodes a base64 (standard or URL-safe, padded or not) 32-byte key.
pub fn decode(text: &str) -> Result<MasterKey, String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or("must be base64 (generate one with `openssl rand -base64 32`)")?;
    let bytes: [u8; MASTER_KEY_LEN] = bytes
        .try_into()
        .map_err(|_| format!("must decode to exactly {MASTER_KEY_LEN} bytes"))?;
    Ok(MasterKey::from_bytes(bytes))
}

/// Resolves the configured master key, creating the key file if it does not exist yet.
/// The flag says whether this call created it (start-up asks the operator to back it up).
pub fn load(source: &MasterKeySource) -> anyhow::Result<(MasterKey, bool)> {
    match source {
        MasterKeySource::Inline(secret) => decode(secret.expose())
            .map(|key| (key, false))
            .map_err(|e| anyhow::anyhow!("TOLLGATE_SECRET_KEY: {e}")),
        MasterKeySource::File(path) => load_or_create_file(path),
    }
}

fn load_or_create_file(path: &Path) -> anyhow::Result<(MasterKey, bool)> {
    let created = !path.exists() && create_file(path)?;
    let meta = fs::metadata(path).with_context(|| format!("key file {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "key file {} is accessible to other users; run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let text = fs::read_to_string(path).with_context(|| format!("key file {}", path.display()))?;
    let key = decode(&text).map_err(|e| anyhow::anyhow!("key file {}: {e}", path.display()))?;
    Ok((key, created))
}

/// Writes a new random key so that concurrent first starts (a server and a CLI command)
/// agree on one key: write a private temporary file, then hard-link it into place, which
/// fails if another process got there first. Returns whether this process wrote the key.
fn create_file(path: &Path) -> anyhow::Result<bool> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let key = MasterKey::generate();
    let text = base64::engine::general_purpose::STANDARD.encode(key.expose_bytes());
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_reuses_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/tollgate.key");
        let (a, created_a) = load_or_create_file(&path).unwrap();
        let (b, created_b) = load_or_create_file(&path).unwrap();
        assert!(
            created_a && !created_b,
            "only the first load creates the file"
        );
        assert_eq!(a.expose_bytes(), b.expose_bytes());
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn decodes_only_32_byte_keys() {
        assert!(decode(&base64::engine::general_purpose::STANDARD.encode([7u8; 32])).is_ok());
        assert!(
            decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32])).is_ok()
        );
        assert!(decode(&base64::engine::general_purpose::STANDARD.encode([7u8; 31])).is_err());
        assert!(decode("not base64!").is_err());
    }
}
