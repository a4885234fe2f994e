//! The unprivileged user each app's code runs as.

use serde::{Deserialize, Serialize};

/// The user and group an app's build steps, tests and instances run as, when Drover runs as
/// root. Every app has its own, so one app's processes can neither read another's files and
/// `/proc` entries nor Drover's own state (token, key, database).
///
/// The ids are numbered from [`AppUser::FIRST_ID`], above the ranges that distributions,
/// directory services and systemd give to users and containers, and are never given to two
/// apps. They have no entry in `/etc/passwd`: nothing needs one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AppUser {
    pub uid: u32,
    pub gid: u32,
}

impl AppUser {
    /// The id of app user number 0. systemd's container range ends at 0x6FFFFFFF; this is
    /// above it and well below 2^31, which some tools still read as a signed number.
    pub const FIRST_ID: u32 = 1_900_000_000;
    /// How many app users there can be.
    pub const COUNT: u32 = 100_000_000;

    /// App user number `n` (uid and gid the same), or `None` past [`AppUser::COUNT`].
    pub fn numbered(n: u32) -> Option<Self> {
        (n < Self::COUNT).then(|| Self { uid: Self::FIRST_ID + n, gid: Self::FIRST_ID + n })
    }
}

impl std::fmt::Display for AppUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "uid {}", self.uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_users_stay_in_their_range() {
        assert_eq!(AppUser::numbered(0), Some(AppUser { uid: 1_900_000_000, gid: 1_900_000_000 }));
        let last = AppUser::numbered(AppUser::COUNT - 1).unwrap();
        assert!(last.uid < 1 << 31, "{last}");
        assert_eq!(AppUser::numbered(AppUser::COUNT), None);
    }
}
