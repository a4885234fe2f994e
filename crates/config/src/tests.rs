//! Table tests for the public API: drover.yml and Procfile text in, a spec summary or the exact
//! error message out.
//!
//! Every row goes through [`check`], so a change to the spec's shape or the error format is a
//! change to [`summary`] or the expected strings, not to a hundred test functions.

use crate::{load_dir, parse_procfile, parse_yaml, ConfigError};
use model::RoutingSpec;
use model::{AppName, AppSpec, DeploySpec, HealthSpec};
use std::fmt::Write;

/// A spec in one line: name, processes, then only the parts that differ from the defaults.
fn summary(spec: &AppSpec) -> String {
    let mut out = spec.name.to_string();
    out.push(';');
    for (process, command) in &spec.processes {
        write!(out, " {process}={command:?}").expect("writing to a String cannot fail");
    }
    if !spec.build.is_empty() {
        let steps: Vec<String> = spec
            .build
            .iter()
            .map(|step| match step.is_layer() {
                false => format!("{:?}", step.run),
                true => format!("{:?} {:?}->{:?}", step.run, step.inputs, step.outputs),
            })
            .collect();
        write!(out, "; build=[{}]", steps.join(", ")).expect("writing to a String cannot fail");
    }
    if let Some(dockerfile) = &spec.dockerfile {
        write!(out, "; dockerfile={dockerfile:?}").expect("writing to a String cannot fail");
    }
    if !spec.env.is_empty() {
        write!(out, "; env={:?}", spec.env).expect("writing to a String cannot fail");
    }
    if !spec.scale.is_empty() {
        let scale: Vec<String> = spec.scale.iter().map(|(process, n)| format!("{process}={n}")).collect();
        write!(out, "; scale={}", scale.join(" ")).expect("writing to a String cannot fail");
    }
    if spec.health != HealthSpec::default() {
        write!(out, "; {:?}", spec.health).expect("writing to a String cannot fail");
    }
    if spec.deploy != DeploySpec::default() {
        write!(out, "; {:?}", spec.deploy).expect("writing to a String cannot fail");
    }
    if let Some(test) = &spec.pipeline.test {
        write!(out, "; test={:?} {}s", test.run, test.timeout.as_secs()).expect("writing to a String cannot fail");
    }
    if !spec.pipeline.stages.is_empty() {
        let stages: Vec<String> = spec
            .pipeline
            .stages
            .iter()
            .map(|stage| {
                let mut parts: Vec<String> = stage.branches.iter().map(|b| b.as_str().to_owned()).collect();
                parts.extend(stage.except.iter().map(|b| format!("-{}", b.as_str())));
                if let Some(after) = &stage.after {
                    parts.push(format!("after {after}"));
                }
                if stage.approval == model::pipeline::Approval::Required {
                    parts.push("approval".to_owned());
                }
                format!("{}({})", stage.name, parts.join(","))
            })
            .collect();
        write!(out, "; stages={}", stages.join(" ")).expect("writing to a String cannot fail");
    }
    if spec.routing != RoutingSpec::default() {
        write!(out, "; {:?}", spec.routing).expect("writing to a String cannot fail");
    }
    out
}

fn check(input: &str, actual: Result<AppSpec, ConfigError>, expected: &str) {
    let actual = match actual {
        Ok(spec) => {
            // What config accepts, model accepts too: the two apply the same rules.
            assert_eq!(spec.validate(), Ok(()), "\ninput:\n{input}");
            summary(&spec)
        }
        Err(err) => err.to_string(),
    };
    assert_eq!(actual, expected, "\ninput:\n{input}");
}

/// The smallest valid drover.yml, three lines long, so that rows can add lines from line 4.
const MINIMAL: &str = "app: hello\nprocesses:\n  web: python3 app.py\n";

fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

const FULL: &str = r#"app: hello
processes:                 # Procfile-style; `web` gets $PORT and is routed by the proxy
  web: python3 app.py
  worker: python3 worker.py
build:                     # list of shell command strings (or a single string)
  - pip install -r requirements.txt --target .deps
env: {GREETING: hello}
scale: {web: 2}
health: {path: /healthz, interval: 1s, timeout: 1s, start_period: 10s, healthy_threshold: 1, unhealthy_threshold: 2, liveness_threshold: 10}
deploy: {strategy: rolling, max_surge: 1, max_unavailable: 0, deadline: 60s, drain_timeout: 30s, stop_grace: 10s}
pipeline:
  test:
    run: make test
  stages:
    - {name: preview, branches: ["*"], except: [main]}
    - {name: staging, branches: [main]}
    - {name: production, branches: [main], after: staging, approval: required}
"#;

#[test]
fn drover_yml_accepted() {
    let table: &[(String, &str)] = &[
        (MINIMAL.to_owned(), r#"hello; web="python3 app.py""#),
        (
            FULL.to_owned(),
            r#"hello; web="python3 app.py" worker="python3 worker.py"; build=["pip install -r requirements.txt --target .deps"]; env={"GREETING": "hello"}; scale=web=2; HealthSpec { path: Some("/healthz"), interval: 1s, timeout: 1s, start_period: 10s, healthy_threshold: 1, unhealthy_threshold: 2, liveness_threshold: 10 }; test=["make test"] 600s; stages=preview(*,-main) staging(main) production(main,after staging,approval)"#,
        ),
        (
            "# my app\napp: my-app-2\nprocesses: {web: ./server, worker: \"./work --queue=a\"}\n".to_owned(),
            r#"my-app-2; web="./server" worker="./work --queue=a""#,
        ),
        // A single build command; a `|` block loses its trailing newline.
        (with("build: make\n"), r#"hello; web="python3 app.py"; build=["make"]"#),
        (
            with("build:\n  - |\n    make\n  - make install\n"),
            r#"hello; web="python3 app.py"; build=["make", "make install"]"#,
        ),
        (with("dockerfile: docker/Dockerfile\n"), r#"hello; web="python3 app.py"; dockerfile="docker/Dockerfile""#),
        // Cached layers: one path or a list; a trailing `/` is dropped; a map without inputs is
        // a plain step.
        (
            with("build:\n  - {run: pip install, inputs: requirements.txt, outputs: [.deps/]}\n  - run: make\n  - {run: npm ci, inputs: [package.json, package-lock.json], outputs: [node_modules, lib/gen]}\n"),
            r#"hello; web="python3 app.py"; build=["pip install" ["requirements.txt"]->[".deps"], "make", "npm ci" ["package.json", "package-lock.json"]->["node_modules", "lib/gen"]]"#,
        ),
        // Numbers and booleans are stringified as written; `yes` is not a boolean.
        (
            with("env: {A: 1, B: true, C: 1.10, D: \"x\", E: yes, F: '', G: 0x1F, _H: -2}\n"),
            r#"hello; web="python3 app.py"; env={"A": "1", "B": "true", "C": "1.10", "D": "x", "E": "yes", "F": "", "G": "0x1F", "_H": "-2"}"#,
        ),
        (
            with("env: {A: .nan, B: 1e999, C: !!str 12}\n"),
            r#"hello; web="python3 app.py"; env={"A": ".nan", "B": "1e999", "C": "12"}"#,
        ),
        (with("scale: {web: 0}\n"), r#"hello; web="python3 app.py"; scale=web=0"#),
        (with("scale: {web: 100}\n"), r#"hello; web="python3 app.py"; scale=web=100"#),
        // No path means a TCP check; the timeout may exceed the interval; start_period may be 0.
        (
            with("health: {interval: 500ms, timeout: 1.5s, start_period: 0s}\n"),
            r#"hello; web="python3 app.py"; HealthSpec { path: None, interval: 500ms, timeout: 1.5s, start_period: 0ns, healthy_threshold: 1, unhealthy_threshold: 2, liveness_threshold: 10 }"#,
        ),
        (
            with("deploy: {strategy: blue-green, deadline: 2m, drain_timeout: 0s, stop_grace: 0s}\n"),
            r#"hello; web="python3 app.py"; DeploySpec { strategy: BlueGreen, deadline: 120s, drain_timeout: 0ns, stop_grace: 0ns }"#,
        ),
        (
            with("routing: {balance: round-robin, hosts: [shop.example.com, a-1.test]}\n"),
            r#"hello; web="python3 app.py"; RoutingSpec { balance: RoundRobin, hosts: ["shop.example.com", "a-1.test"] }"#,
        ),
        (
            with("deploy: {max_surge: 0, max_unavailable: 1}\n"),
            r#"hello; web="python3 app.py"; DeploySpec { strategy: Rolling { max_surge: 0, max_unavailable: 1 }, deadline: 60s, drain_timeout: 30s, stop_grace: 10s }"#,
        ),
        // Empty optional sections mean the defaults.
        (with("build:\nenv:\nscale:\nhealth:\ndeploy:\npipeline:\n"), r#"hello; web="python3 app.py""#),
        (
            with("pipeline:\n  test: {run: [a, b], timeout: 2m}\n"),
            r#"hello; web="python3 app.py"; test=["a", "b"] 120s"#,
        ),
        // Anchors and merge keys are plain YAML and work.
        (
            "app: hello\nprocesses:\n  web: &cmd ./server\n  worker: *cmd\nhealth: &h {interval: 2s}\n".to_owned(),
            r#"hello; web="./server" worker="./server"; HealthSpec { path: None, interval: 2s, timeout: 1s, start_period: 10s, healthy_threshold: 1, unhealthy_threshold: 2, liveness_threshold: 10 }"#,
        ),
    ];
    for (input, expected) in table {
        check(input, parse_yaml("drover.yml", input), expected);
    }
}

#[test]
fn drover_yml_rejected() {
    const TOP: &str =
        "(expected one of: app, processes, build, dockerfile, build_timeout, env, scale, health, deploy, routing, pipeline)";
    const NAME_RULE: &str = "may only contain lowercase letters, digits and '-', and must start with a letter";
    let table: &[(String, String)] = &[
        // Malformed YAML and documents of the wrong shape.
        ("app: [hello\n".into(), "drover.yml:1:6: unclosed bracket '['".into()),
        (with("env: {A: 1\n"), "drover.yml:4:6: unclosed bracket '{'".into()),
        ("".into(), "drover.yml:1:1: expected a mapping with `app` and `processes`, found nothing".into()),
        ("- web\n".into(), "drover.yml:1:1: expected a mapping with `app` and `processes`, found a list".into()),
        // Unknown fields, with and without a suggestion.
        (with("helth: {path: /}\n"), format!("drover.yml:4:1: helth: unknown field, did you mean `health`? {TOP}")),
        (with("replicas: 3\n"), format!("drover.yml:4:1: replicas: unknown field {TOP}")),
        (
            with("health:\n  path: /healthz\n  timout: 2s\n"),
            "drover.yml:6:3: health.timout: unknown field, did you mean `timeout`? (expected one of: path, interval, timeout, start_period, healthy_threshold, unhealthy_threshold, liveness_threshold)".into(),
        ),
        (
            with("deploy: {strategy: rolling, surge: 2}\n"),
            "drover.yml:4:29: deploy.surge: unknown field (expected one of: strategy, max_surge, max_unavailable, deadline, drain_timeout, stop_grace)".into(),
        ),
        ("app: hello\napp: bye\nprocesses: {web: x}\n".into(), "drover.yml:2:1: app: duplicate key, first defined on line 1".into()),
        // app.
        ("processes:\n  web: x\n".into(), "drover.yml:1:1: app: required field is missing".into()),
        ("app: Hello\nprocesses:\n  web: x\n".into(), format!(r#"drover.yml:1:6: app: app name "Hello" {NAME_RULE}"#)),
        ("app: ../etc\nprocesses:\n  web: x\n".into(), format!(r#"drover.yml:1:6: app: app name "../etc" {NAME_RULE}"#)),
        ("app: \"a;rm -rf ~\"\nprocesses:\n  web: x\n".into(), format!(r#"drover.yml:1:6: app: app name "a;rm -rf ~" {NAME_RULE}"#)),
        ("app: [hello]\nprocesses:\n  web: x\n".into(), "drover.yml:1:6: app: expected an app name, found a list".into()),
        // processes.
        ("app: hello\n".into(), "drover.yml:1:1: processes: required field is missing".into()),
        ("app: hello\nprocesses: {}\n".into(), "drover.yml:2:12: processes: expected at least one process, like `web: ./server`".into()),
        ("app: hello\nprocesses: [web]\n".into(), "drover.yml:2:12: processes: expected a mapping, found a list".into()),
        ("app: hello\nprocesses:\n  Web: x\n".into(), format!(r#"drover.yml:3:3: processes.Web: process type "Web" {NAME_RULE}"#)),
        ("app: hello\nprocesses:\n  web: ''\n".into(), "drover.yml:3:8: processes.web: expected a command, found an empty string".into()),
        ("app: hello\nprocesses:\n  web: [a, b]\n".into(), "drover.yml:3:8: processes.web: expected a command, found a list".into()),
        ("app: hello\nprocesses:\n  web: 42\n".into(), "drover.yml:3:8: processes.web: expected a command, found 42".into()),
        ("app: hello\nprocesses:\n  web:\n".into(), "drover.yml:3:6: processes.web: expected a command, found nothing".into()),
        ("app: hello\nprocesses:\n  web: a\n  web: b\n".into(), "drover.yml:4:3: processes.web: duplicate key, first defined on line 3".into()),
        // build.
        (with("build:\n  - make\n  - ''\n"), "drover.yml:6:5: build[1]: expected a command, found an empty string".into()),
        (with("build: make\ndockerfile: Dockerfile\n"), "drover.yml:5:1: dockerfile: an app is built either by `build:` steps or from a Dockerfile, not both".into()),
        (with("dockerfile: /Dockerfile\n"), "drover.yml:4:13: dockerfile: \"/Dockerfile\" is absolute: expected a path relative to the app".into()),
        (with("build: {a: b}\n"), "drover.yml:4:8: build: expected a command or a list of build steps, found a mapping".into()),
        (with("build:\n  - {run: make, inputs: [a]}\n"), "drover.yml:5:5: build[0].outputs: required field is missing".into()),
        (with("build:\n  - {run: make, outputs: [a]}\n"), "drover.yml:5:17: build[0].outputs: a step with outputs needs `inputs`: its outputs are cached by the hash of its inputs".into()),
        (with("build:\n  - {inputs: [a], outputs: [b]}\n"), "drover.yml:5:5: build[0].run: required field is missing".into()),
        (with("build:\n  - {run: make, input: [a], outputs: [b]}\n"), "drover.yml:5:17: build[0].input: unknown field, did you mean `inputs`? (expected one of: run, inputs, outputs)".into()),
        (with("build:\n  - {run: make, inputs: [/etc/passwd], outputs: [b]}\n"), "drover.yml:5:26: build[0].inputs[0]: \"/etc/passwd\" is absolute: expected a path relative to the app".into()),
        (with("build:\n  - {run: make, inputs: [a/../../x], outputs: [b]}\n"), "drover.yml:5:26: build[0].inputs[0]: \"a/../../x\" has a `..` component: expected a plain relative path".into()),
        (with("build:\n  - {run: make, inputs: [.git/HEAD], outputs: [b]}\n"), "drover.yml:5:26: build[0].inputs[0]: \".git/HEAD\" has a `.git` component: expected a plain relative path".into()),
        (with("build:\n  - {run: make, inputs: [a//b], outputs: [b]}\n"), "drover.yml:5:26: build[0].inputs[0]: \"a//b\" has an empty component: expected a plain relative path".into()),
        (with("build:\n  - {run: make, inputs: [], outputs: [b]}\n"), "drover.yml:5:25: build[0].inputs: expected at least one path, found an empty list".into()),
        (with("build:\n  - {run: make, inputs: [lib, lib/x], outputs: [b]}\n"), "drover.yml:5:31: build[0].inputs[1]: \"lib/x\" overlaps \"lib\", listed before it".into()),
        (with("build:\n  - {run: make, inputs: [src], outputs: [src/gen]}\n"), "drover.yml:5:42: build[0].outputs[0]: \"src/gen\" overlaps input \"src\": outputs are added to the tree, next to the inputs".into()),

        // env.
        (
            with("env: {1FOO: x}\n"),
            r#"drover.yml:4:7: env.1FOO: "1FOO" is not a variable name: expected letters, digits and `_`, not starting with a digit"#.into(),
        ),
        (
            with("env:\n  MY-VAR: x\n"),
            r#"drover.yml:5:3: env.MY-VAR: "MY-VAR" is not a variable name: expected letters, digits and `_`, not starting with a digit"#.into(),
        ),
        (
            with("env:\n  \"A B\": x\n"),
            r#"drover.yml:5:3: env."A B": "A B" is not a variable name: expected letters, digits and `_`, not starting with a digit"#.into(),
        ),
        (with("env:\n  PORT: 8080\n"), "drover.yml:5:3: env.PORT: PORT is reserved: drover sets it to the port the proxy routes to".into()),
        (with("env:\n  A: [1]\n"), "drover.yml:5:6: env.A: expected a string, found a list".into()),
        (with("env:\n  A:\n"), "drover.yml:5:4: env.A: expected a string, found nothing".into()),
        (with("env:\n  A: ~\n"), "drover.yml:5:6: env.A: expected a string, found nothing".into()),
        // routing.
        (with("routing: {balance: random}\n"), r#"drover.yml:4:20: routing.balance: unknown balance "random" (expected one of: round-robin, least-connections)"#.into()),
        (with("routing: {hosts: shop.example.com}\n"), r#"drover.yml:4:18: routing.hosts: expected a list of host names, found "shop.example.com""#.into()),
        (with("routing:\n  hosts:\n    - Shop.example.com:8080\n"), r#"drover.yml:6:7: routing.hosts[0]: "Shop.example.com:8080" is not a lowercase host name such as `shop.example.com` (no port, scheme or path)"#.into()),
        (with("routing: {hosts: [a.test, a.test]}\n"), r#"drover.yml:4:27: routing.hosts[1]: "a.test" is listed twice"#.into()),
        (with("routing: {hots: []}\n"), "drover.yml:4:11: routing.hots: unknown field, did you mean `hosts`? (expected one of: balance, hosts)".into()),
        // scale.
        (with("scale:\n  wbe: 2\n"), "drover.yml:5:3: scale.wbe: not a declared process, did you mean `web`? (declared: web)".into()),
        (with("scale:\n  worker: 2\n"), "drover.yml:5:3: scale.worker: not a declared process (declared: web)".into()),
        (with("scale: {web: 101}\n"), "drover.yml:4:14: scale.web: expected a whole number from 0 to 100, found 101".into()),
        (with("scale: {web: -1}\n"), "drover.yml:4:14: scale.web: expected a whole number from 0 to 100, found -1".into()),
        (with("scale: {web: two}\n"), r#"drover.yml:4:14: scale.web: expected a whole number from 0 to 100, found "two""#.into()),
        (with("scale: {web: 1.5}\n"), "drover.yml:4:14: scale.web: expected a whole number from 0 to 100, found 1.5".into()),
        // health.
        (with("health:\n  path: healthz\n"), r#"drover.yml:5:9: health.path: expected a path starting with "/""#.into()),
        (with("health: {path: /health z}\n"), "drover.yml:4:16: health.path: expected a path without whitespace".into()),
        (with("health: {path: 5}\n"), "drover.yml:4:16: health.path: expected a path like /healthz, found 5".into()),
        (
            "app: hello\nprocesses:\n  worker: x\nhealth: {path: /}\n".into(),
            "drover.yml:4:1: health: health checks apply to the `web` process, but there is no `web` process".into(),
        ),
        (with("health: {interval: 0s}\n"), "drover.yml:4:20: health.interval: must be at least 100ms".into()),
        // An alias is reported where it is used, not where its anchor is.
        (
            with("health:\n  timeout: 1s\n  start_period: &zero 0s\n  interval: *zero\n"),
            "drover.yml:7:13: health.interval: must be at least 100ms".into(),
        ),
        (with("health:\n  timeout: 0ms\n"), "drover.yml:5:12: health.timeout: must be at least 10ms".into()),
        (
            with("health:\n  interval: 5\n"),
            "drover.yml:5:13: health.interval: expected a duration like 500ms, 1s, 1.5s or 2m, found 5".into(),
        ),
        (
            with("health:\n  start_period: -1s\n"),
            r#"drover.yml:5:17: health.start_period: expected a duration like 500ms, 1s, 1.5s or 2m, found "-1s""#.into(),
        ),
        (
            with("health:\n  healthy_threshold: 0\n"),
            "drover.yml:5:22: health.healthy_threshold: expected a whole number, 1 or more, found 0".into(),
        ),
        (
            with("health:\n  unhealthy_threshold: 0\n"),
            "drover.yml:5:24: health.unhealthy_threshold: expected a whole number, 1 or more, found 0".into(),
        ),
        (
            with("health:\n  liveness_threshold: 0\n"),
            "drover.yml:5:23: health.liveness_threshold: expected a whole number, 1 or more, found 0".into(),
        ),
        (with("health: /healthz\n"), r#"drover.yml:4:9: health: expected a mapping, found "/healthz""#.into()),
        // deploy.
        (
            with("deploy:\n  max_surge: 0\n  max_unavailable: 0\n"),
            "drover.yml:5:14: deploy.max_surge: max_surge and max_unavailable are both 0, so a rolling deploy cannot replace any instance".into(),
        ),
        (
            with("deploy:\n  strategy: blue-green\n  max_surge: 2\n"),
            "drover.yml:6:3: deploy.max_surge: only valid with strategy `rolling`, not `blue-green`".into(),
        ),
        (
            with("deploy:\n  strategy: blue-green\n  max_unavailable: 1\n"),
            "drover.yml:6:3: deploy.max_unavailable: only valid with strategy `rolling`, not `blue-green`".into(),
        ),
        (
            with("deploy: {strategy: bluegreen}\n"),
            r#"drover.yml:4:20: deploy.strategy: unknown strategy "bluegreen", did you mean `blue-green`? (expected one of: rolling, blue-green)"#.into(),
        ),
        (
            with("deploy: {strategy: canary}\n"),
            r#"drover.yml:4:20: deploy.strategy: unknown strategy "canary" (expected one of: rolling, blue-green)"#.into(),
        ),
        (with("deploy: {strategy: 1}\n"), "drover.yml:4:20: deploy.strategy: expected one of: rolling, blue-green, found 1".into()),
        (with("deploy: {max_surge: -1}\n"), "drover.yml:4:21: deploy.max_surge: expected a whole number, 0 or more, found -1".into()),
        (with("deploy: {deadline: 0s}\n"), "drover.yml:4:20: deploy.deadline: must be at least 1s".into()),
        (
            with("deploy:\n  drain_timeout: 1 minute\n"),
            r#"drover.yml:5:18: deploy.drain_timeout: expected a duration like 500ms, 1s, 1.5s or 2m, found "1 minute""#.into(),
        ),
        (with("deploy: rolling\n"), r#"drover.yml:4:9: deploy: expected a mapping, found "rolling""#.into()),
        // pipeline.
        (with("pipeline: make test\n"), r#"drover.yml:4:11: pipeline: expected a mapping, found "make test""#.into()),
        (with("pipeline:\n  steps: []\n"), "drover.yml:5:3: pipeline.steps: unknown field (expected one of: test, stages)".into()),
        (with("pipeline:\n  test: {timeout: 1m}\n"), "drover.yml:5:9: pipeline.test.run: required field is missing".into()),
        (
            with("pipeline:\n  stages:\n    - {name: prod, branches: [main], after: staging}\n"),
            r#"drover.yml:6:7: pipeline.stages[0].after: no stage named "staging": this is the first stage, so it cannot come after one"#.into(),
        ),
        (
            with("pipeline:\n  stages:\n    - {name: prod, branches: [\"ma in\"]}\n"),
            r#"drover.yml:6:31: pipeline.stages[0].branches[0]: branch pattern "ma in" contains ' ', which no branch name can hold (only `*` is a wildcard)"#.into(),
        ),
        (
            with("pipeline:\n  stages:\n    - {name: prod, branches: [main], approval: maybe}\n"),
            r#"drover.yml:6:48: pipeline.stages[0].approval: unknown approval "maybe" (expected one of: none, required)"#.into(),
        ),
    ];
    for (input, expected) in table {
        check(input, parse_yaml("drover.yml", input), expected);
    }
}

#[test]
fn procfiles() {
    const NAME_RULE: &str = "may only contain lowercase letters, digits and '-', and must start with a letter";
    let table: &[(&str, String)] = &[
        (
            "web: python3 app.py\nworker: python3 worker.py\n",
            r#"hello; web="python3 app.py" worker="python3 worker.py""#.into(),
        ),
        (
            "# comment\n\nweb: ./server --port $PORT\n   # indented comment\n",
            r#"hello; web="./server --port $PORT""#.into(),
        ),
        ("web: a\r\nworker: b", r#"hello; web="a" worker="b""#.into()),
        ("\u{feff}web:a\n", r#"hello; web="a""#.into()),
        // Only the first colon separates the name.
        (
            "web: gunicorn --bind 0.0.0.0:$PORT app:app\n",
            r#"hello; web="gunicorn --bind 0.0.0.0:$PORT app:app""#.into(),
        ),
        ("web: a\nthis is not a process\n", "Procfile:2:1: expected `name: command`".into()),
        (": a\n", "Procfile:1:1: expected `name: command`".into()),
        ("Web: a\n", format!(r#"Procfile:1:1: Web: process type "Web" {NAME_RULE}"#)),
        ("  web server: a\n", format!(r#"Procfile:1:3: "web server": process type "web server" {NAME_RULE}"#)),
        ("web:\n", "Procfile:1:5: web: expected a command after `:`".into()),
        ("worker: b\n  web :   \n", "Procfile:2:8: web: expected a command after `:`".into()),
        ("web: a\n\nweb: b\n", "Procfile:3:1: web: duplicate process type, first declared on line 1".into()),
        ("", "Procfile:1:1: no processes declared, expected lines like `web: ./server`".into()),
        ("# nothing yet\n", "Procfile:1:1: no processes declared, expected lines like `web: ./server`".into()),
    ];
    let name = AppName::parse("hello").expect("valid name");
    for (input, expected) in table {
        check(input, parse_procfile("Procfile", input, name.clone()), expected);
    }
}

/// Files to create in an app directory: name and contents.
type Files<'a> = &'a [(&'a str, &'a str)];

#[test]
fn load_dir_prefers_drover_yml() {
    let procfile = ("Procfile", "web: ./from-procfile\n");
    let yml = ("drover.yml", "app: from-yml\nprocesses:\n  web: ./from-yml\n");
    let table: &[(Files, Option<&str>, &str)] = &[
        (&[yml], None, r#"from-yml; web="./from-yml""#),
        (&[yml, procfile], Some("fallback"), r#"from-yml; web="./from-yml""#),
        (&[procfile], Some("fallback"), r#"fallback; web="./from-procfile""#),
        (&[procfile], None, "the app has no name: a Procfile cannot give one, so add a drover.yml with `app: NAME`"),
        (&[], Some("fallback"), "no drover.yml or Procfile found"),
        // Contents errors name the file relative to the app's directory.
        (
            &[("drover.yml", "app: hello\nprocesses:\n  web: ''\n")],
            None,
            "drover.yml:3:8: processes.web: expected a command, found an empty string",
        ),
        (&[("Procfile", "web\n")], Some("fallback"), "Procfile:1:1: expected `name: command`"),
    ];
    for (files, fallback, expected) in table {
        let dir = tempfile::tempdir().expect("create a temp dir");
        for (name, text) in *files {
            std::fs::write(dir.path().join(name), text).expect("write a test file");
        }
        let fallback = fallback.map(|name| AppName::parse(name).expect("valid name"));
        let expected = expected.replace("{dir}", &dir.path().display().to_string());
        check(&format!("{files:?}"), load_dir(dir.path(), fallback.as_ref()), &expected);
    }
}

#[test]
fn load_dir_reports_unreadable_files() {
    let dir = tempfile::tempdir().expect("create a temp dir");
    std::fs::create_dir(dir.path().join("drover.yml")).expect("create a directory named drover.yml");
    let err = load_dir(dir.path(), None).expect_err("a directory is not a readable file");
    assert_eq!(err.to_string(), format!("cannot read {}", dir.path().join("drover.yml").display()));
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
}

#[test]
fn errors_expose_position_and_field() {
    let err = parse_yaml("drover.yml", &with("health:\n  path: healthz\n")).expect_err("path without /");
    let at = err.position().expect("a contents error has a position");
    assert_eq!((at.file.as_str(), at.line, at.column), ("drover.yml", 5, 9));
    assert_eq!(err.field(), Some("health.path"));
}

#[test]
fn an_alias_bomb_is_refused_in_plain_words() {
    let mut text =
        String::from("app: hello\nprocesses:\n  web: ./server\nenv:\n  L0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..8 {
        let prev = format!("*l{}", level - 1);
        text.push_str(&format!("  L{level}: &l{level} [{}]\n", [prev.as_str(); 10].join(", ")));
    }
    let error = parse_yaml("drover.yml", &text).unwrap_err().to_string();
    assert!(error.starts_with("drover.yml:") && error.contains("larger or more deeply nested"), "{error}");
}

#[test]
fn issue_9_f11_health_interval_has_an_upper_bound() {
    let table: &[(String, &str)] = &[
        (with("health:\n  interval: 4000000000000000h\n"), "drover.yml:5:13: health.interval: must be at most 1h"),
        (with("health:\n  interval: 61m\n"), "drover.yml:5:13: health.interval: must be at most 1h"),
        (
            with("health:\n  interval: 1h\n"),
            r#"hello; web="python3 app.py"; HealthSpec { path: None, interval: 3600s, timeout: 1s, start_period: 10s, healthy_threshold: 1, unhealthy_threshold: 2, liveness_threshold: 10 }"#,
        ),
        // Too small is a busy loop of probes.
        (with("health:\n  interval: 99ms\n"), "drover.yml:5:13: health.interval: must be at least 100ms"),
    ];
    for (input, expected) in table {
        check(input, parse_yaml("drover.yml", input), expected);
    }
}

#[test]
fn issue_9_f11_deploy_deadline_cannot_wrap() {
    // 18446744073709552s is 385 ms more milliseconds than a u64 holds: it used to wrap to 384 ms.
    let table: &[(String, &str)] = &[
        (with("deploy:\n  deadline: 18446744073709552s\n"), "drover.yml:5:13: deploy.deadline: must be at most 24h"),
        // Too long for any duration at all: still the field's bound, not "expected a duration".
        (
            with("deploy:\n  deadline: 99999999999999999999999h\n"),
            "drover.yml:5:13: deploy.deadline: must be at most 24h",
        ),
        (
            with("deploy:\n  deadline: 24h\n"),
            r#"hello; web="python3 app.py"; DeploySpec { strategy: Rolling { max_surge: 1, max_unavailable: 0 }, deadline: 86400s, drain_timeout: 30s, stop_grace: 10s }"#,
        ),
    ];
    for (input, expected) in table {
        check(input, parse_yaml("drover.yml", input), expected);
    }
}

#[test]
fn issue_9_f11_every_duration_field_is_bounded() {
    let table: &[(&str, &str)] = &[
        ("health: {interval: 2h}", "drover.yml:4:20: health.interval: must be at most 1h"),
        ("health: {timeout: 11m}", "drover.yml:4:19: health.timeout: must be at most 10m"),
        ("health: {timeout: 9ms}", "drover.yml:4:19: health.timeout: must be at least 10ms"),
        ("health: {start_period: 2h}", "drover.yml:4:24: health.start_period: must be at most 1h"),
        ("deploy: {deadline: 25h}", "drover.yml:4:20: deploy.deadline: must be at most 24h"),
        ("deploy: {deadline: 999ms}", "drover.yml:4:20: deploy.deadline: must be at least 1s"),
        ("deploy: {drain_timeout: 1.5h}", "drover.yml:4:25: deploy.drain_timeout: must be at most 1h"),
        ("deploy: {stop_grace: 3601s}", "drover.yml:4:22: deploy.stop_grace: must be at most 1h"),
        ("pipeline: {test: {run: t, timeout: 7h}}", "drover.yml:4:36: pipeline.test.timeout: must be at most 6h"),
        ("pipeline: {test: {run: t, timeout: 500ms}}", "drover.yml:4:36: pipeline.test.timeout: must be at least 1s"),
        ("build_timeout: 7h", "drover.yml:4:16: build_timeout: must be at most 6h"),
        ("build_timeout: 0s", "drover.yml:4:16: build_timeout: must be at least 1s"),
    ];
    for (extra, expected) in table {
        let input = with(&format!("{extra}\n"));
        check(&input, parse_yaml("drover.yml", &input), expected);
    }
    // The bounds themselves are accepted.
    let input = with(
        "health: {interval: 100ms, timeout: 10m, start_period: 1h}\n\
         deploy: {deadline: 1s, drain_timeout: 1h, stop_grace: 1h}\n\
         pipeline: {test: {run: t, timeout: 6h}}\n\
         build_timeout: 6h\n",
    );
    let spec = parse_yaml("drover.yml", &input).expect("bounds are inclusive");
    assert_eq!(spec.validate(), Ok(()));
    assert_eq!(spec.build_timeout, std::time::Duration::from_secs(6 * 3600));
    assert_eq!(parse_yaml("drover.yml", &with("")).unwrap().build_timeout, model::DEFAULT_BUILD_TIMEOUT);
}

#[test]
fn issue_9_f2_env_is_checked_at_the_edge() {
    let long = "v".repeat(model::env::MAX_VALUE_LEN + 1);
    let many: String = (0..9).map(|idx| format!("  K{idx}: {}\n", "v".repeat(model::env::MAX_VALUE_LEN))).collect();
    let table: &[(String, &str)] = &[
        (
            with("env:\n  A: \"x\\0y\"\n"),
            "drover.yml:5:6: env.A: the value holds a NUL byte, which no process environment can carry",
        ),
        (
            with("env:\n  \"A\\0B\": x\n"),
            r#"drover.yml:5:3: env."A\0B": "A\0B" is not a variable name: expected letters, digits and `_`, not starting with a digit"#,
        ),
        (
            with("env:\n  \"A=B\": x\n"),
            r#"drover.yml:5:3: env."A=B": "A=B" is not a variable name: expected letters, digits and `_`, not starting with a digit"#,
        ),
        (with("env:\n  \"\": x\n"), r#"drover.yml:5:3: env."": the variable name is empty"#),
        (
            with("env:\n  DROVER_APP: other\n"),
            "drover.yml:5:3: env.DROVER_APP: DROVER_APP is reserved: drover sets the variables starting with DROVER_",
        ),
        (
            with("env:\n  HOME: /root\n"),
            "drover.yml:5:3: env.HOME: HOME is reserved: drover sets it to the instance's own home directory",
        ),
        (
            with(&format!("env:\n  A: {long}\n")),
            "drover.yml:5:6: env.A: the value is 32769 bytes long, more than 32768",
        ),
        (
            with(&format!("env:\n{many}")),
            "drover.yml:4:1: env: the variables take 294948 bytes together, more than 262144",
        ),
        (
            with("env:\n  PATH: /app/bin:/usr/bin\n"),
            r#"hello; web="python3 app.py"; env={"PATH": "/app/bin:/usr/bin"}"#,
        ),
    ];
    for (input, expected) in table {
        check(input, parse_yaml("drover.yml", input), expected);
    }
}

#[test]
fn issue_9_f2_commands_and_paths_with_nul_are_refused() {
    const NUL: &str = "the command holds a NUL byte, which no command line can carry";
    let table: &[(String, String)] = &[
        ("app: hello\nprocesses:\n  web: \"a\\0b\"\n".into(), format!("drover.yml:3:8: processes.web: {NUL}")),
        (with("build: \"make\\0\"\n"), format!("drover.yml:4:8: build: {NUL}")),
        (
            with("build:\n  - {run: \"make\\0\", inputs: [a], outputs: [b]}\n"),
            format!("drover.yml:5:11: build[0].run: {NUL}"),
        ),
        (with("pipeline:\n  test: {run: [ok, \"t\\0\"]}\n"), format!("drover.yml:5:20: pipeline.test.run[1]: {NUL}")),
        (
            with("build:\n  - {run: make, inputs: [\"a\\0\"], outputs: [b]}\n"),
            r#"drover.yml:5:26: build[0].inputs[0]: "a\0" holds a control character: expected a plain path"#.into(),
        ),
        (
            with("dockerfile: \"Docker\\tfile\"\n"),
            r#"drover.yml:4:13: dockerfile: "Docker\tfile" holds a control character: expected a plain path"#.into(),
        ),
    ];
    for (input, expected) in table {
        check(input, parse_yaml("drover.yml", input), expected);
    }
    let name = AppName::parse("hello").expect("valid name");
    let procfile = "web: ./a\nworker:  run\0me\n";
    check(procfile, parse_procfile("Procfile", procfile, name), &format!("Procfile:2:10: worker: {NUL}"));
}
