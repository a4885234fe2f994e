//! Tables for branch patterns, stage selection, validation and preview names.

use super::*;

fn pattern(text: &str) -> BranchPattern {
    BranchPattern::parse(text).unwrap()
}

fn stage(name: &str, branches: &[&str], except: &[&str]) -> StageSpec {
    StageSpec {
        name: name.to_owned(),
        branches: branches.iter().map(|text| pattern(text)).collect(),
        except: except.iter().map(|text| pattern(text)).collect(),
        after: None,
        approval: Approval::None,
        hosts: None,
    }
}

fn after(mut stage: StageSpec, earlier: &str) -> StageSpec {
    stage.after = Some(earlier.to_owned());
    stage
}

/// The pipeline from the module docs.
fn example() -> PipelineSpec {
    let mut production = after(stage("production", &["main"], &[]), "staging");
    production.approval = Approval::Required;
    PipelineSpec {
        test: Some(TestSpec { run: vec!["python3 -m pytest".to_owned()], timeout: Duration::from_secs(600) }),
        stages: vec![stage("preview", &["*"], &["main"]), stage("staging", &["main"], &[]), production],
    }
}

#[test]
fn branch_patterns_match() {
    let table = [
        ("main", "main", true),
        ("main", "main2", false),
        ("main", "mai", false),
        ("main", "Main", false),
        ("*", "main", true),
        ("*", "feature/a/b", true),
        ("*", "", true),
        ("feature/*", "feature/login", true),
        ("feature/*", "feature/a/b", true),
        ("feature/*", "feature/", true),
        ("feature/*", "feature", false),
        ("feature/*", "features/x", false),
        ("*/hotfix", "release/1.2/hotfix", true),
        ("*/hotfix", "hotfix", false),
        ("release-*-rc", "release-1.2-rc", true),
        ("release-*-rc", "release--rc", true),
        ("release-*-rc", "release-1.2-rc2", false),
        ("*a*b*", "xaybz", true),
        ("*a*b*", "xbya", false),
        ("a**b", "ab", true),
        ("a**b", "a/x/b", true),
        ("*-*-*", "a-b", false),
        ("*ab", "aab", true),
        ("*aab", "aaab", true),
        ("renovate/*", "renovate/npm-lodash-4.x", true),
        ("ü*", "über", true),
        ("*ß", "straß", true),
        ("a.b", "axb", false),
        ("x;rm", "x;rm", true),
    ];
    for (text, branch, expected) in table {
        assert_eq!(pattern(text).matches(branch), expected, "{text:?} ~ {branch:?}");
    }
}

#[test]
fn branch_patterns_parse() {
    let table = [
        ("main", Ok(())),
        ("feature/*", Ok(())),
        ("*", Ok(())),
        ("release-1.2", Ok(())),
        ("", Err("the branch pattern is empty")),
        (
            "feature/ login",
            Err(
                r#"branch pattern "feature/ login" contains ' ', which no branch name can hold (only `*` is a wildcard)"#,
            ),
        ),
        (
            "release-?",
            Err(r#"branch pattern "release-?" contains '?', which no branch name can hold (only `*` is a wildcard)"#),
        ),
        ("[ab]", Err(r#"branch pattern "[ab]" contains '[', which no branch name can hold (only `*` is a wildcard)"#)),
        ("a~1", Err(r#"branch pattern "a~1" contains '~', which no branch name can hold (only `*` is a wildcard)"#)),
        ("a\tb", Err(r#"branch pattern "a\tb" contains '\t', which no branch name can hold (only `*` is a wildcard)"#)),
    ];
    for (text, expected) in table {
        let actual = BranchPattern::parse(text).map(|_| ()).map_err(|error| error.to_string());
        assert_eq!(actual, expected.map_err(str::to_owned), "{text:?}");
    }
    let json = serde_json::to_string(&pattern("feature/*")).unwrap();
    assert_eq!(json, r#""feature/*""#);
    assert_eq!(serde_json::from_str::<BranchPattern>(&json).unwrap(), pattern("feature/*"));
    assert!(serde_json::from_str::<BranchPattern>(r#""a b""#).is_err());
}

#[test]
fn stages_for_branches() {
    let pipeline = example();
    let table: [(&str, &[&str]); 6] = [
        ("main", &["staging", "production"]),
        ("feature/login", &["preview"]),
        ("mainline", &["preview"]),
        ("x;rm -rf ~", &["preview"]),
        ("", &["preview"]),
        ("日本語", &["preview"]),
    ];
    for (branch, expected) in table {
        let names: Vec<&str> = pipeline.stages_for(branch).iter().map(|stage| stage.name.as_str()).collect();
        assert_eq!(names, expected, "{branch:?}");
    }

    // Declared order is kept, and `except` only removes.
    let pipeline = PipelineSpec {
        test: None,
        stages: vec![
            stage("b", &["release/*"], &["release/old-*"]),
            stage("a", &["*"], &[]),
            stage("c", &["release/1", "hotfix/*"], &[]),
            stage("never", &["main"], &["*"]),
        ],
    };
    let table: [(&str, &[&str]); 5] = [
        ("release/1", &["b", "a", "c"]),
        ("release/old-1", &["a"]),
        ("hotfix/x", &["a", "c"]),
        ("main", &["a"]),
        ("dev", &["a"]),
    ];
    for (branch, expected) in table {
        let names: Vec<&str> = pipeline.stages_for(branch).iter().map(|stage| stage.name.as_str()).collect();
        assert_eq!(names, expected, "{branch:?}");
    }
    assert!(PipelineSpec::default().stages_for("main").is_empty());
}

#[test]
fn validation() {
    assert_eq!(example().validate(), Ok(()));
    assert_eq!(PipelineSpec::default().validate(), Ok(()));

    fn with_stages(stages: Vec<StageSpec>) -> PipelineSpec {
        PipelineSpec { test: None, stages }
    }
    fn with_test(run: &[&str], timeout: Duration) -> PipelineSpec {
        let run = run.iter().map(|command| command.to_string()).collect();
        PipelineSpec { test: Some(TestSpec { run, timeout }), stages: Vec::new() }
    }
    let minute = Duration::from_secs(60);
    let table = [
        (with_test(&["make test"], minute), ""),
        (with_test(&[], minute), "pipeline.test.run: expected at least one command"),
        (with_test(&["make", "  "], minute), "pipeline.test.run[1]: the command is empty"),
        (with_test(&["make"], Duration::ZERO), "pipeline.test.timeout: expected a duration longer than 0s, like 10m"),
        (
            with_stages(vec![stage("a", &["*"], &[]), stage("Prod", &["main"], &[])]),
            r#"pipeline.stages[1].name: stage name "Prod" may only contain lowercase letters, digits and '-', and must start with a letter"#,
        ),
        (with_stages(vec![stage("", &["*"], &[])]), "pipeline.stages[0].name: the stage name is empty"),
        (
            with_stages(vec![stage("1st", &["*"], &[])]),
            r#"pipeline.stages[0].name: stage name "1st" may only contain lowercase letters, digits and '-', and must start with a letter"#,
        ),
        (
            with_stages(vec![stage("a-", &["*"], &[])]),
            r#"pipeline.stages[0].name: stage name "a-" may only contain lowercase letters, digits and '-', and must start with a letter"#,
        ),
        (
            with_stages(vec![stage("a.b", &["*"], &[])]),
            r#"pipeline.stages[0].name: stage name "a.b" may only contain lowercase letters, digits and '-', and must start with a letter"#,
        ),
        (
            with_stages(vec![stage(&"s".repeat(64), &["*"], &[])]),
            &format!("pipeline.stages[0].name: stage name {:?} is longer than 63 characters", "s".repeat(64)),
        ),
        (with_stages(vec![stage(&"s".repeat(63), &["*"], &[])]), ""),
        (
            with_stages(vec![stage("a", &["*"], &[]), stage("b", &["*"], &[]), stage("a", &["main"], &[])]),
            r#"pipeline.stages[2].name: stage "a" is already declared as stages[0]"#,
        ),
        (
            with_stages(vec![stage("a", &[], &[])]),
            r#"pipeline.stages[0].branches: expected at least one branch pattern, like ["main"] or ["*"]"#,
        ),
        (
            with_stages(vec![after(stage("a", &["*"], &[]), "a")]),
            r#"pipeline.stages[0].after: stage "a" cannot come after itself"#,
        ),
        (
            with_stages(vec![after(stage("a", &["*"], &[]), "b"), stage("b", &["*"], &[])]),
            r#"pipeline.stages[0].after: stage "b" is declared later, as stages[1]: `after` must name an earlier stage"#,
        ),
        (
            with_stages(vec![after(stage("a", &["*"], &[]), "zzz")]),
            r#"pipeline.stages[0].after: no stage named "zzz": this is the first stage, so it cannot come after one"#,
        ),
        (
            with_stages(vec![
                stage("a", &["*"], &[]),
                stage("b", &["*"], &[]),
                after(stage("c", &["*"], &[]), "stagin"),
            ]),
            r#"pipeline.stages[2].after: no stage named "stagin"; earlier stages are "a", "b""#,
        ),
        // Overlapping stages are fine: a branch may deploy to several.
        (
            with_stages(vec![stage("a", &["*"], &[]), stage("b", &["*"], &[]), after(stage("c", &["main"], &[]), "a")]),
            "",
        ),
    ];
    for (pipeline, expected) in table {
        let actual = match pipeline.validate() {
            Ok(()) => String::new(),
            Err(error) => error.to_string(),
        };
        assert_eq!(actual, expected, "{pipeline:?}");
    }
    let error = with_stages(vec![stage("a", &[], &[])]).validate().unwrap_err();
    assert_eq!((error.stage_idx, error.field.as_str()), (Some(0), "pipeline.stages[0].branches"));
    let error = with_test(&[], minute).validate().unwrap_err();
    assert_eq!((error.stage_idx, error.field.as_str()), (None, "pipeline.test.run"));
}

#[test]
fn specs_round_trip_through_json() {
    let pipeline = example();
    let json = serde_json::to_string(&pipeline).unwrap();
    assert!(json.contains(r#""approval":"required""#), "{json}");
    assert!(json.contains(r#""branches":["*"],"except":["main"]"#), "{json}");
    assert_eq!(serde_json::from_str::<PipelineSpec>(&json).unwrap(), pipeline);
    let minimal: PipelineSpec = serde_json::from_str(r#"{"stages":[{"name":"s","branches":["main"]}]}"#).unwrap();
    assert_eq!(minimal, PipelineSpec { test: None, stages: vec![stage("s", &["main"], &[])] });
}

#[test]
fn preview_names() {
    let hello = AppName::parse("hello").unwrap();
    let long_app = AppName::parse(&format!("a{}", "b".repeat(39))).unwrap();
    let app_31 = AppName::parse(&"c".repeat(31)).unwrap();
    let app_cut_at_dash = AppName::parse(&format!("{}-tail", "d".repeat(30))).unwrap();
    let table = [
        (&hello, "feature/login", Some("feature-login-hello")),
        (&hello, "Feature/Login", Some("feature-login-hello")),
        (&hello, "main", Some("main-hello")),
        (&hello, "fix--double__sep..", Some("fix-double-sep-hello")),
        (&hello, "--leading", Some("leading-hello")),
        (&hello, "x;rm -rf ~", Some("x-rm-rf-hello")),
        (&hello, "$(reboot)", Some("reboot-hello")),
        (&hello, "`id`&&ls|cat>/etc/passwd", Some("id-ls-cat-etc-passwd-hello")),
        (&hello, "../../etc", Some("etc-hello")),
        (&hello, "a\nb\0c", Some("a-b-c-hello")),
        (&hello, "café-ünïcode", Some("caf-n-code-hello")),
        // A slug of exactly the room left is kept whole: 34 + 1 + 5 = 40.
        (&hello, &"x".repeat(34), Some("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-hello")),
        // One more and the name is cut, with a hash.
        (&hello, &"x".repeat(35), Some("xxxxxxxxxxxxxxxxxxxxxxxxxxx-b3dd77-hello")),
        (&hello, &format!("feature/{}", "very-long-".repeat(20)), Some("feature-very-long-very-long-b5a630-hello")),
        // A cut that ends on a separator does not leave a dangling '-'.
        (&hello, &format!("{}-{}", "x".repeat(26), "y".repeat(10)), Some("xxxxxxxxxxxxxxxxxxxxxxxxxx-4b0ae0-hello")),
        // Slugs that cannot start a name: empty, or starting with a digit.
        (&hello, "日本語", Some("b-cdf867-hello")),
        (&hello, "!!!", Some("b-eb9f15-hello")),
        (&hello, "123-fix", Some("b123-fix-f15c5a-hello")),
        // Apps too long to fit whole are cut to 31 characters.
        (&long_app, "main", Some("m-929d6b-abbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")),
        (&app_31, "main", Some("main-ccccccccccccccccccccccccccccccc")),
        (&app_31, "feature/login", Some("f-af5c74-ccccccccccccccccccccccccccccccc")),
        (&app_cut_at_dash, "dev", Some("dev-dddddddddddddddddddddddddddddd-tail")),
        (&app_cut_at_dash, "feature/login", Some("fe-982130-dddddddddddddddddddddddddddddd")),
        (&hello, "", None),
    ];
    let mut wrong = Vec::new();
    for (app, branch, expected) in table {
        let actual = preview_app_name(app, branch);
        if actual.as_ref().map(AppName::as_str) != expected {
            wrong.push(format!("{app} {branch:?}: expected {expected:?}, got {actual:?}"));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn preview_names_are_always_valid_and_distinct_when_cut() {
    // Deterministic pseudo-random branch names over an alphabet heavy in separators, digits,
    // shell metacharacters and multi-byte characters.
    let alphabet: Vec<char> = "aZ09-_/.;$`'\" \n~^é日😀".chars().collect();
    let apps =
        ["a", "hello", &"k".repeat(35), &format!("x-{}", "y".repeat(38))].map(|app| AppName::parse(app).unwrap());
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize
    };
    for _ in 0..5000 {
        let len = next() % 80 + 1;
        let branch: String = (0..len).map(|_| alphabet[next() % alphabet.len()]).collect();
        for app in &apps {
            let name = preview_app_name(app, &branch).unwrap();
            assert!(AppName::parse(name.as_str()).is_ok(), "{branch:?} -> {name}");
        }
    }
    // Long branches that differ only at the end, which the cut drops, still get different names.
    let hello = AppName::parse("hello").unwrap();
    let base = "feature/".to_owned() + &"x".repeat(60);
    let one = preview_app_name(&hello, &format!("{base}-one")).unwrap();
    let two = preview_app_name(&hello, &format!("{base}-two")).unwrap();
    assert_ne!(one, two);
}

#[test]
fn hashed_preview_names_keep_branches_apart_that_plain_names_merge() {
    let hello = AppName::parse("hello").unwrap();
    let plain = |branch| preview_app_name(&hello, branch).unwrap().to_string();
    let hashed = |branch| preview_app_name_hashed(&hello, branch).unwrap().to_string();
    assert_eq!(plain("feature/login"), plain("feature-login"));
    assert_ne!(hashed("feature/login"), hashed("feature-login"));
    let name = hashed("feature/login");
    assert!(name.starts_with("feature-login-") && name.ends_with("-hello") && name.len() == 26, "{name}");
    assert_eq!(preview_app_name_hashed(&hello, ""), None);
}

#[test]
fn issue_9_f1_stage_apps_get_hosts_of_their_own() {
    let app_hosts = vec!["shop.example.com".to_owned(), "www.shop.example.com".to_owned()];
    let table = [
        ("production", None, "shop.example.com www.shop.example.com"),
        ("staging", None, "staging.shop.example.com staging.www.shop.example.com"),
        ("preview", None, ""),
        ("staging", Some(vec!["beta.example.com".to_owned()]), "beta.example.com"),
        ("production", Some(vec![]), ""),
    ];
    for (name, hosts, expected) in table {
        let mut spec = stage(name, &["main"], &[]);
        spec.hosts = hosts;
        assert_eq!(spec.hosts(&app_hosts).join(" "), expected, "{name}");
    }
    let mut pipeline = example();
    pipeline.stages[0].hosts = Some(vec!["preview.example.com".to_owned()]);
    let error = pipeline.validate().unwrap_err();
    assert_eq!((error.stage_idx, error.field.as_str()), (Some(0), "pipeline.stages[0].hosts"), "{error:?}");
}
