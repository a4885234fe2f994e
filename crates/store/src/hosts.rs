//! Who may release what: the one place that decides host ownership and stage ownership for every
//! way a release is made (upload, push, pipeline stage, config change, rollback).
//!
//! An app serves its own host `APP.DOMAIN` and the extra `routing.hosts` of its release. Each
//! extra host is claimed in `host_claims` by the release that names it, in the same transaction
//! that creates the release; a release whose host another app holds (claimed, or as that app's
//! own `APP.DOMAIN`) is refused, and so is an app whose own host another app claimed. A release
//! that drops a host lets go of it. The routing table serves a release's extra host only while
//! the app holds its claim, so an automatic rollback to an older release never takes a host back
//! from the app that claimed it since.
//!
//! An app that a pipeline stage claimed (`stage_apps`) is released only by that stage: a hand
//! deploy, a push to that app's own repository or another pipeline is refused.

use crate::{Result, Store, StoreError};
use model::{AppName, AppSpec};
use rusqlite::{params, OptionalExtension, Transaction};
use std::collections::HashMap;

/// Why a release may not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseRefused {
    #[error("routing.hosts: {host} is already served by app {owner}")]
    HostTaken { host: String, owner: AppName },
    #[error("app {app}: its host {host} is already served by app {owner} (listed in its routing.hosts)")]
    OwnHostTaken { app: AppName, host: String, owner: AppName },
    #[error("app {app} is the {stage} app of {pipeline_app}'s pipeline{branch}: it is released only by that stage (push to {pipeline_app}, or `drover config set {pipeline_app} --stage {stage}`)")]
    StageApp { app: AppName, pipeline_app: String, stage: String, branch: String },
}

/// The host an app serves by its name alone.
pub fn own_host(app: &AppName, domain: &str) -> String {
    format!("{app}.{domain}")
}

impl Store {
    /// Whether `spec` may be released now, as [`Store::create_release`] will decide it. Lets a
    /// caller refuse before a long build; the release itself checks again, in its transaction.
    pub fn check_release(&mut self, spec: &AppSpec, domain: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        check(&tx, spec, domain)
        // Dropped, not committed: nothing was written.
    }

    /// Every claimed extra host and the app that holds it.
    pub fn host_claims(&self) -> Result<HashMap<String, AppName>> {
        let mut stmt = self.conn.prepare("SELECT host, app FROM host_claims")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut claims = HashMap::new();
        for row in rows {
            let (host, app) = row?;
            claims.insert(host, crate::parse_app_name(0, &app)?);
        }
        Ok(claims)
    }

    /// Claims the hosts of apps' current releases where nobody holds them, oldest release first:
    /// state from before host claims existed gets them on the first start that knows them.
    pub fn backfill_host_claims(&mut self) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let targets: Vec<(String, String)> = {
            let mut stmt = tx.prepare(
                "SELECT r.app, r.spec_json FROM apps a JOIN releases r ON r.app = a.name AND r.id = a.target
                 WHERE NOT EXISTS (SELECT 1 FROM host_claims c WHERE c.app = a.name)
                 ORDER BY r.created_at_ms, r.app",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<std::result::Result<_, _>>()?
        };
        let mut claimed = 0;
        for (app, spec_json) in targets {
            let spec: AppSpec = crate::parse_json("release spec", &spec_json)?;
            for host in &spec.routing.hosts {
                claimed +=
                    tx.execute("INSERT OR IGNORE INTO host_claims (host, app) VALUES (?1, ?2)", params![host, app])?;
            }
        }
        tx.commit()?;
        Ok(claimed)
    }
}

/// The checks of a release of `spec`, inside the transaction that makes it.
pub(crate) fn check(tx: &Transaction<'_>, spec: &AppSpec, domain: &str) -> Result<()> {
    let app = spec.name.as_str();
    let stage: Option<(String, String, String)> = tx
        .query_row("SELECT pipeline_app, stage, branch FROM stage_apps WHERE app = ?1", [app], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    if let Some((pipeline_app, stage, branch)) = stage {
        let scope = spec.var_scope();
        if scope.app.as_str() != pipeline_app || scope.stage != stage {
            return Err(refused(ReleaseRefused::StageApp {
                app: spec.name.clone(),
                pipeline_app,
                stage,
                branch: if branch.is_empty() { String::new() } else { format!(" for branch {branch:?}") },
            }));
        }
    }
    let own = own_host(&spec.name, domain);
    let holder: Option<String> = tx
        .query_row("SELECT app FROM host_claims WHERE host = ?1 AND app != ?2", params![own, app], |r| r.get(0))
        .optional()?;
    if let Some(owner) = holder {
        return Err(refused(ReleaseRefused::OwnHostTaken {
            app: spec.name.clone(),
            host: own,
            owner: crate::parse_app_name(0, &owner)?,
        }));
    }
    let suffix = format!(".{domain}");
    for host in &spec.routing.hosts {
        let claimed: Option<String> = tx
            .query_row("SELECT app FROM host_claims WHERE host = ?1 AND app != ?2", params![host, app], |r| r.get(0))
            .optional()?;
        // Another live app's own host is as taken as a claimed one.
        let named = match host.strip_suffix(&suffix) {
            Some(name) if name != app => tx
                .query_row("SELECT name FROM apps WHERE name = ?1 AND destroyed = 0", [name], |r| r.get(0))
                .optional()?,
            _ => None,
        };
        if let Some(owner) = claimed.or(named) {
            return Err(refused(ReleaseRefused::HostTaken {
                host: host.clone(),
                owner: crate::parse_app_name(0, &owner)?,
            }));
        }
    }
    Ok(())
}

/// Makes the claims of `spec`'s app exactly its extra hosts, after [`check`] passed.
pub(crate) fn claim(tx: &Transaction<'_>, spec: &AppSpec) -> Result<()> {
    tx.execute("DELETE FROM host_claims WHERE app = ?1", [spec.name.as_str()])?;
    for host in &spec.routing.hosts {
        tx.execute("INSERT INTO host_claims (host, app) VALUES (?1, ?2)", params![host, spec.name.as_str()])?;
    }
    Ok(())
}

fn refused(reason: ReleaseRefused) -> StoreError {
    StoreError::Refused(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Claim, StageOwner};
    use model::{Digest, ProcessType, VarScope};

    fn name(n: &str) -> AppName {
        AppName::parse(n).unwrap()
    }

    fn spec(app: &str, hosts: &[&str]) -> AppSpec {
        let mut spec = AppSpec::new(name(app), [(ProcessType::web(), "python3 app.py".to_owned())].into());
        spec.routing.hosts = hosts.iter().map(|h| h.to_string()).collect();
        spec
    }

    /// Releases `spec` and says what happened: `ok` or the refusal.
    fn release(store: &mut Store, spec: &AppSpec) -> String {
        match store.create_release(spec, &Digest::from_sha256(&[1; 32]), "test", 1, "localhost") {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn issue_9_f1_a_host_is_one_apps_in_every_direction() {
        let mut store = Store::open_in_memory().unwrap();
        assert_eq!(release(&mut store, &spec("shop", &["shop.example.com"])), "ok");
        // Another app cannot claim it, nor shop's own host.
        assert_eq!(
            release(&mut store, &spec("blog", &["shop.example.com"])),
            "routing.hosts: shop.example.com is already served by app shop"
        );
        assert_eq!(
            release(&mut store, &spec("blog", &["shop.localhost"])),
            "routing.hosts: shop.localhost is already served by app shop"
        );
        // An app whose own host another app claimed cannot be made.
        assert_eq!(release(&mut store, &spec("blog", &["news.localhost"])), "ok");
        assert_eq!(
            release(&mut store, &spec("news", &[])),
            "app news: its host news.localhost is already served by app blog (listed in its routing.hosts)"
        );
        // A refused release wrote nothing: blog holds only what it held.
        assert!(store.app(&name("news")).is_err());
        assert_eq!(store.host_claims().unwrap().len(), 2);
        // Releasing again with the same hosts is fine; dropping a host lets go of it.
        assert_eq!(release(&mut store, &spec("shop", &["shop.example.com"])), "ok");
        assert_eq!(release(&mut store, &spec("shop", &[])), "ok");
        assert_eq!(release(&mut store, &spec("blog", &["shop.example.com"])), "ok");
        assert_eq!(store.host_claims().unwrap()["shop.example.com"], name("blog"));
        // The read-only check says the same as the release, and writes nothing.
        let taken = spec("shop", &["shop.example.com"]);
        assert!(store.check_release(&taken, "localhost").is_err());
        assert_eq!(release(&mut store, &taken), "routing.hosts: shop.example.com is already served by app blog");
    }

    #[test]
    fn issue_9_f12_a_stage_app_is_released_only_by_its_stage() {
        let mut store = Store::open_in_memory().unwrap();
        let owner = StageOwner { pipeline_app: name("shop"), stage: "staging".into(), branch: String::new() };
        assert_eq!(store.claim_stage_app(&name("shop-staging"), &owner).unwrap(), Claim::Ours);
        let mut staged = spec("shop-staging", &[]);
        staged.vars_from = Some(VarScope { app: name("shop"), stage: "staging".into() });
        assert_eq!(release(&mut store, &staged), "ok");
        // By hand (no stage scope), or by another stage: refused.
        assert!(release(&mut store, &spec("shop-staging", &[]))
            .starts_with("app shop-staging is the staging app of shop's pipeline"));
        staged.vars_from = Some(VarScope { app: name("blog"), stage: "staging".into() });
        assert!(release(&mut store, &staged).contains("released only by that stage"));
    }

    #[test]
    fn issue_9_f1_claims_are_backfilled_oldest_first_and_let_go_on_purge() {
        let mut store = Store::open_in_memory().unwrap();
        assert_eq!(release(&mut store, &spec("shop", &["shop.example.com"])), "ok");
        // State from before claims: the claim is missing.
        store.conn.execute("DELETE FROM host_claims", []).unwrap();
        assert_eq!(store.backfill_host_claims().unwrap(), 1);
        assert_eq!(store.backfill_host_claims().unwrap(), 0);
        assert_eq!(store.host_claims().unwrap()["shop.example.com"], name("shop"));
        store.destroy_app(&name("shop")).unwrap();
        assert!(store.purge_app(&name("shop")).unwrap());
        assert!(store.host_claims().unwrap().is_empty());
    }
}
