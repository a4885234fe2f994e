//! SQLite state: apps, releases, instances, events. The only crate with SQL.
