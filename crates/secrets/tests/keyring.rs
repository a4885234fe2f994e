//! The keyring through its public API, with real key files in a temporary directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use secrets::{Keyring, SecretError};

const CONTEXT: &str = "app=hello;stage=staging;key=DB_PASSWORD";

fn keyring(dir: &Path) -> Keyring {
    Keyring::load_or_create(&dir.join("secrets.key")).unwrap()
}

/// Seals `plaintext`, checks that the sealed bytes do not give it away, and opens it again.
fn check_round_trip(keyring: &Keyring, plaintext: &[u8]) {
    let sealed = keyring.seal(CONTEXT, plaintext);
    assert_eq!(sealed.len(), 1 + 24 + plaintext.len() + 16);
    if !plaintext.is_empty() {
        assert!(!sealed.windows(plaintext.len()).any(|window| window == plaintext), "sealed value shows {plaintext:?}");
    }
    assert_eq!(keyring.open(CONTEXT, &sealed).unwrap().expose(), plaintext);
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = keyring(dir.path());
    let long = "0123456789abcdef".repeat(1000);
    let plaintexts: [&[u8]; 6] =
        [b"", b"hunter2", b"p\xc3\xa4ssw\xc3\xb6rd", b"\x00\xff\xfe binary", b"line one\nline two\n", long.as_bytes()];
    for plaintext in plaintexts {
        check_round_trip(&keyring, plaintext);
    }
}

#[test]
fn sealing_twice_gives_different_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = keyring(dir.path());
    assert_ne!(keyring.seal(CONTEXT, b"hunter2"), keyring.seal(CONTEXT, b"hunter2"));
}

#[test]
fn another_context_or_key_fails() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = keyring(dir.path());
    let sealed = keyring.seal(CONTEXT, b"hunter2");
    for context in ["app=hello;stage=production;key=DB_PASSWORD", "app=hello;stage=staging;key=API_TOKEN", ""] {
        let error = keyring.open(context, &sealed).unwrap_err();
        assert!(matches!(error, SecretError::Decrypt { .. }), "{context}: {error}");
    }
    let other = tempfile::tempdir().unwrap();
    let error = self::keyring(other.path()).open(CONTEXT, &sealed).unwrap_err();
    assert!(matches!(error, SecretError::Decrypt { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "cannot decrypt the sealed value for \"app=hello;stage=staging;key=DB_PASSWORD\": it was sealed with another \
         key file or for another context, or it was altered"
    );
}

#[test]
fn tampered_value_fails() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = keyring(dir.path());
    let sealed = keyring.seal(CONTEXT, b"hunter2");
    // Every bit of every byte counts: the version, the nonce, the ciphertext and the tag.
    for idx in 0..sealed.len() {
        for bit in 0..8 {
            let mut tampered = sealed.clone();
            tampered[idx] ^= 1 << bit;
            let error = keyring.open(CONTEXT, &tampered).unwrap_err();
            let expected = match idx {
                0 => matches!(error, SecretError::UnknownVersion { .. }),
                _ => matches!(error, SecretError::Decrypt { .. }),
            };
            assert!(expected, "byte {idx} bit {bit}: {error}");
        }
    }
    for len in [0, 1, 25, 40, sealed.len() - 1] {
        let error = keyring.open(CONTEXT, &sealed[..len]).unwrap_err();
        let expected = match len {
            0..41 => matches!(error, SecretError::Truncated { .. }),
            _ => matches!(error, SecretError::Decrypt { .. }),
        };
        assert!(expected, "first {len} bytes: {error}");
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(matches!(keyring.open(CONTEXT, &longer), Err(SecretError::Decrypt { .. })));
}

#[test]
fn key_file_is_created_private_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.key");
    let first = Keyring::load_or_create(&path).unwrap();
    let metadata = fs::metadata(&path).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    let content = fs::read_to_string(&path).unwrap();
    assert_eq!(content.len(), 65, "{content:?}");
    assert!(content.trim_end().bytes().all(|byte| byte.is_ascii_hexdigit()) && content.ends_with('\n'));
    // Only the key file is left: no temporary file.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

    let sealed = first.seal(CONTEXT, b"hunter2");
    let second = Keyring::load_or_create(&path).unwrap();
    assert_eq!(second.open(CONTEXT, &sealed).unwrap().expose(), b"hunter2");
    assert_eq!(fs::read_to_string(&path).unwrap(), content, "loading rewrote the key file");
}

#[test]
fn racing_creators_agree_on_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.key");
    let keyrings: Vec<Keyring> = std::thread::scope(|scope| {
        let creators: Vec<_> = (0..8).map(|_| scope.spawn(|| Keyring::load_or_create(&path).unwrap())).collect();
        creators.into_iter().map(|creator| creator.join().unwrap()).collect()
    });
    let sealed = keyrings[0].seal(CONTEXT, b"hunter2");
    for keyring in &keyrings {
        assert_eq!(keyring.open(CONTEXT, &sealed).unwrap().expose(), b"hunter2");
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "temporary files left behind");
}

#[test]
fn raw_and_hex_key_files_are_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.key");
    let hex = dir.path().join("hex.key");
    let key: Vec<u8> = (0u8..32).collect();
    let hex_digits: String = key.iter().map(|byte| format!("{byte:02x}")).collect();
    for (path, content) in [(&raw, key.clone()), (&hex, format!("  {}\n", hex_digits.to_uppercase()).into_bytes())] {
        fs::write(path, content).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o400)).unwrap();
    }
    let sealed = Keyring::load_or_create(&raw).unwrap().seal(CONTEXT, b"hunter2");
    assert_eq!(Keyring::load_or_create(&hex).unwrap().open(CONTEXT, &sealed).unwrap().expose(), b"hunter2");
}

#[test]
fn unsafe_or_malformed_key_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.key");
    let key_hex = "00".repeat(32);
    // (mode, content, expected error)
    let cases: [(u32, &[u8], &str); 7] = [
        (0o644, key_hex.as_bytes(), "has mode 644: group and others must have no access (chmod 600 it)"),
        (0o640, key_hex.as_bytes(), "has mode 640: group and others must have no access (chmod 600 it)"),
        (0o602, key_hex.as_bytes(), "has mode 602: group and others must have no access (chmod 600 it)"),
        (0o600, b"", "holds 0 bytes: expected 32 raw bytes or 64 hex digits"),
        (0o600, &[7; 31], "holds 31 bytes: expected 32 raw bytes or 64 hex digits"),
        (0o600, &[b'a'; 66], "holds 66 bytes: expected 32 raw bytes or 64 hex digits"),
        (0o600, &[b'g'; 64], "holds 64 characters that are not all hex digits"),
    ];
    for (mode, content, expected) in cases {
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        let error = Keyring::load_or_create(&path).unwrap_err();
        assert_eq!(error.to_string(), format!("key file {} {expected}", path.display()));
        // A refused key file is left as it is, never replaced by a new key.
        assert_eq!(fs::read(&path).unwrap(), content);
    }

    let error = Keyring::load_or_create(dir.path()).unwrap_err();
    assert!(matches!(error, SecretError::KeyFileNotRegular { .. }), "{error}");
    let error = Keyring::load_or_create(&dir.path().join("missing/secrets.key")).unwrap_err();
    assert!(matches!(error, SecretError::KeyFileIo { action: "create", .. }), "{error}");
}

#[test]
fn debug_shows_no_key_or_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.key");
    let keyring = Keyring::load_or_create(&path).unwrap();
    let key_hex = fs::read_to_string(&path).unwrap();
    let debug = format!("{keyring:?}");
    assert_eq!(debug, "Keyring { .. }");
    assert!(!debug.contains(key_hex.trim_end()));
    let value = keyring.open(CONTEXT, &keyring.seal(CONTEXT, b"hunter2")).unwrap();
    assert_eq!(format!("{value:?} {value}"), "*** ***");
}
