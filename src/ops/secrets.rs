//! The secrets sealed with the master key, as a whole: how many there are, and dropping them
//! all when the key is lost (`trex master-key reset`), with the new key's check value written
//! in the same transaction. Runs on a bare [`Store`]: an [`App`](crate::App) cannot be opened
//! without the old key.

use serde_json::json;

use super::{Actor, audited_in};
use crate::config::AuditConfig;
use crate::error::Result;
use crate::store::{Store, settings, sso};

/// How many secrets are sealed in the store (SSO and app client secrets, database passwords).
pub async fn sealed_count(store: &Store) -> Result<i64> {
    store.run(sso::count_sealed).await
}

/// Drops every sealed secret (SSO providers and apps are disabled, database credentials
/// deleted) and stores `check`, the new key's sealed check value. Returns how many of each
/// kind went: `(sso, apps, credentials)`.
pub async fn drop_sealed(
    store: &Store,
    retention: AuditConfig,
    actor: &Actor,
    sealed: i64,
    check: String,
) -> Result<(usize, usize, usize)> {
    let args = json!({"sealedSecrets": sealed});
    audited_in(store, retention, actor, "master-key-reset", args, async {
        store
            .write(move |c| {
                let n = sso::drop_sealed(c)?;
                settings::set(c, settings::MASTER_KEY_CHECK, &check)?;
                Ok(n)
            })
            .await
    })
    .await
}
