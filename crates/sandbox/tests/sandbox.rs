//! The sandbox through its public API, with real files, real processes and real ids (as root;
//! elsewhere each test says it was skipped).

use sandbox::{become_user, can_switch_users, hand_over, take_back, AppUser};
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

#[test]
fn a_tree_is_handed_over_and_taken_back_without_following_links() {
    if !can_switch_users() {
        eprintln!("skipped: changing owners needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("a/b")).unwrap();
    fs::write(tree.join("a/b/file"), "x").unwrap();
    let outside = dir.path().join("outside");
    fs::write(&outside, "root's").unwrap();
    symlink(&outside, tree.join("a/link")).unwrap();
    let user = AppUser::numbered(7).unwrap();

    hand_over(&tree, user).unwrap();
    for rel in ["", "a", "a/b", "a/b/file", "a/link"] {
        assert_eq!(fs::symlink_metadata(tree.join(rel)).unwrap().uid(), user.uid, "{rel}");
    }
    assert_eq!(fs::metadata(&outside).unwrap().uid(), 0, "a link is not followed");

    // What the user might leave: a world-writable, set-uid file.
    fs::set_permissions(tree.join("a/b/file"), fs::Permissions::from_mode(0o4777)).unwrap();
    take_back(&tree).unwrap();
    for rel in ["", "a", "a/b", "a/b/file", "a/link"] {
        let metadata = fs::symlink_metadata(tree.join(rel)).unwrap();
        assert_eq!((metadata.uid(), metadata.gid()), (0, 0), "{rel}");
    }
    assert_eq!(fs::metadata(tree.join("a/b/file")).unwrap().mode() & 0o7777, 0o755);
}

#[test]
fn become_user_drops_every_id_for_good() {
    if !can_switch_users() {
        eprintln!("skipped: switching users needs root");
        return;
    }
    let user = AppUser::numbered(8).unwrap();
    let mut command = std::process::Command::new("/bin/sh");
    command.args(["-c", "id -u; id -g; id -G; cat /proc/self/status | grep -E '^(Uid|Gid)'"]);
    // SAFETY: become_user makes only raw system calls.
    unsafe { std::os::unix::process::CommandExt::pre_exec(&mut command, move || become_user(user)) };
    let out = command.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let id = user.uid.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(&lines[..3], [id.as_str(), id.as_str(), id.as_str()], "{text}");
    // Real, effective, saved and file-system ids are all the user's.
    for line in &lines[3..] {
        let ids: Vec<&str> = line.split_whitespace().skip(1).collect();
        assert_eq!(ids, [id.as_str(); 4], "{line}");
    }
}
