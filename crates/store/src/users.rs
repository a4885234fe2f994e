//! Which unprivileged user each app runs as (see [`model::AppUser`]).
//!
//! An app gets its number the first time it asks (its first build or instance) and keeps it,
//! also once it is destroyed: a later app of the same name is the same app to its files. The
//! numbers count up and are never given to a second name, so two apps never share a user.

use crate::{Result, Store, StoreError};
use model::{AppName, AppUser};
use rusqlite::params;

impl Store {
    /// The user `app` runs as, given out now if it has none yet.
    pub fn app_user(&mut self, app: &AppName) -> Result<AppUser> {
        let tx = self.conn.transaction()?;
        tx.execute("INSERT OR IGNORE INTO app_users (app) VALUES (?1)", params![app.as_str()])?;
        let n: i64 = tx.query_row("SELECT n FROM app_users WHERE app = ?1", params![app.as_str()], |r| r.get(0))?;
        tx.commit()?;
        // AUTOINCREMENT numbers from 1.
        let n = u32::try_from(n - 1).map_err(|_| StoreError::NoAppUser)?;
        AppUser::numbered(n).ok_or(StoreError::NoAppUser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_app_keeps_its_own_user_and_no_two_share_one() {
        let mut store = Store::open_in_memory().unwrap();
        let name = |n: &str| AppName::parse(n).unwrap();
        let a = store.app_user(&name("a")).unwrap();
        let b = store.app_user(&name("b")).unwrap();
        assert_ne!(a, b);
        assert_eq!(store.app_user(&name("a")).unwrap(), a);
        assert_eq!(a, AppUser::numbered(0).unwrap());
        // A number once given is never given again, even if its row were gone.
        store.conn.execute("DELETE FROM app_users WHERE app = 'b'", []).unwrap();
        let c = store.app_user(&name("c")).unwrap();
        assert!(c != a && c != b, "{c} is new, not {b} again");
    }
}
