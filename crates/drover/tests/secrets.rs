//! Config vars and secrets: secrets reach builds and instances, are sealed on disk, and show up
//! as `***` in every log, including base64 and split across lines; changing config rolls out a
//! new release.

mod common;

use common::*;
use std::io::Write;
use std::process::Stdio;

const SECRET: &str = "swordfish-opens-the-door";

fn set_secret(drover: &Drover, app: &str, key: &str, value: &str) -> String {
    let mut child =
        drover.command(&["secrets", "set", app, key]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{value}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn secrets_are_sealed_injected_and_masked_and_config_makes_releases() {
    let drover = Drover::new();
    drover.start();
    assert!(set_secret(&drover, "vault", "DB_PASSWORD", SECRET).contains("saved"));
    drover.ok(&["config", "set", "vault", "GREETING=configured"]);

    let app = app_dir(
        "vault",
        r#"build:
  - echo "build sees $DB_PASSWORD"
  - echo "build sees config $GREETING"
  - printf %s "$DB_PASSWORD" | base64
  - echo "${DB_PASSWORD%%-*}"; echo "-${DB_PASSWORD#*-}"
"#,
    );
    let yaml = std::fs::read_to_string(app.path().join("drover.yml")).unwrap();
    std::fs::write(
        app.path().join("drover.yml"),
        yaml.replace("web: python3 app.py", r#"web: echo "run sees $DB_PASSWORD" && exec python3 app.py"#),
    )
    .unwrap();
    let out = drover.ok(&["deploy", app.path().to_str().unwrap()]);
    assert!(out.contains("build sees ***") && out.contains("build sees config configured"), "{out}");
    assert!(!out.contains(SECRET) && !out.contains("c3dvcmRmaXNo") && !out.contains("swordfish"), "{out}");
    assert!(!out.contains("opens-the-door"), "the second half of a split secret leaked: {out}");

    let (_, body) = drover.get("vault", "/");
    assert!(body.contains("\"configured\""), "{body}");
    wait_until("the app to log its start", std::time::Duration::from_secs(30), || {
        drover.ok(&["logs", "vault"]).contains("run sees ***")
    });
    let logs = drover.ok(&["logs", "vault"]);
    assert!(!logs.contains(SECRET), "{logs}");

    let config = drover.json(&["config", "show", "vault"]);
    assert_eq!(config["vars"]["GREETING"], "configured");
    assert_eq!(config["secrets"], serde_json::json!(["DB_PASSWORD"]));
    // A plain value cannot silently replace a secret.
    let out = drover.run(&["config", "set", "vault", "DB_PASSWORD=plain"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("DB_PASSWORD is a secret"), "{stderr}");
    // `secrets list` names the secrets, and nothing else.
    assert_eq!(drover.ok(&["secrets", "list", "vault"]), "DB_PASSWORD\n");
    assert_eq!(drover.json(&["secrets", "list", "vault"]), serde_json::json!(["DB_PASSWORD"]));

    // Nothing in the data directory holds the secret in plain text: not the database, the
    // instances' spec files, the logs or the artifacts.
    let grep =
        std::process::Command::new("grep").args(["-r", "-l", "-a", SECRET]).arg(drover.data.path()).output().unwrap();
    assert!(grep.stdout.is_empty(), "plain text secret in: {}", String::from_utf8_lossy(&grep.stdout));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(drover.path("secret.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // Changing config rolls out a new release with it.
    drover.ok(&["config", "set", "vault", "GREETING=changed"]);
    assert!(drover.get("vault", "/").1.contains("\"changed\""));
    let releases = drover.json(&["releases", "vault"]);
    assert_eq!(releases[0]["description"], "config: set GREETING");
    assert_eq!(releases[0]["digest"], releases[1]["digest"], "a config change reuses the artifact");

    let bad = drover.run(&["config", "set", "vault", "PORT=1"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("PORT is reserved: drover sets it"));
}
