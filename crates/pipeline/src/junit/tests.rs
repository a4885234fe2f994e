//! JUnit samples of each dialect, checked through one rendering of the parsed report.

use super::*;
use std::fmt::Write as _;

/// One line per case: `[suite] classname :: name (ms) outcome`, then the detail indented.
fn render(report: &TestReport) -> String {
    let mut out = format!(
        "tests={} failures={} errors={} skipped={} duration_ms={}\n",
        report.tests, report.failures, report.errors, report.skipped, report.duration_ms
    );
    for case in &report.cases {
        let (outcome, detail) = match &case.outcome {
            Outcome::Passed => ("passed".to_owned(), ""),
            Outcome::Failed { message, detail } => (format!("failed {message:?}"), detail.as_str()),
            Outcome::Error { message, detail } => (format!("error {message:?}"), detail.as_str()),
            Outcome::Skipped { message } => (format!("skipped {message:?}"), ""),
        };
        let TestCase { suite, classname, name, duration_ms, .. } = case;
        writeln!(out, "[{suite}] {classname} :: {name} ({duration_ms} ms) {outcome}").unwrap();
        for line in detail.lines() {
            writeln!(out, "    | {line}").unwrap();
        }
    }
    out
}

#[track_caller]
fn check(xml: &str, expected: &str) {
    let report = parse("junit.xml", xml).unwrap_or_else(|error| panic!("{error}"));
    let actual = render(&report);
    assert_eq!(actual.trim(), expected.trim(), "\nactual:\n{actual}");
}

#[track_caller]
fn check_error(xml: &str, expected: &str) {
    match parse("junit.xml", xml) {
        Ok(report) => panic!("expected an error, got:\n{}", render(&report)),
        Err(error) => assert_eq!(error.to_string(), expected),
    }
}

#[test]
fn pytest() {
    // As written by pytest 8 with `--junitxml`: one line, a `<testsuites>` root.
    let xml = r#"<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="1" failures="1" skipped="2" tests="6" time="0.093" timestamp="2025-01-10T10:00:00.000000+00:00" hostname="box"><testcase classname="tests.test_app" name="test_ok" time="0.001" /><testcase classname="tests.test_app" name="test_fail" time="0.002"><failure message="assert 1 == 2">def test_fail():
&gt;       assert 1 == 2
E       assert 1 == 2

tests/test_app.py:5: AssertionError</failure></testcase><testcase classname="tests.test_app" name="test_fixture" time="0.000"><error message="failed on setup with &quot;RuntimeError: no db&quot;">@pytest.fixture
    def db():
&gt;       raise RuntimeError("no db")
E       RuntimeError: no db

tests/test_app.py:9: RuntimeError</error></testcase><testcase classname="tests.test_app" name="test_skip" time="0.000"><skipped type="pytest.skip" message="not on linux">/app/tests/test_app.py:12: not on linux</skipped></testcase><testcase classname="tests.test_app" name="test_xfail" time="0.001"><skipped type="pytest.xfail" message="known bug" /></testcase><testcase classname="tests.test_app" name="test_param[a&lt;b]" time="0.0004" /></testsuite></testsuites>"#;
    check(
        xml,
        r#"
tests=6 failures=1 errors=1 skipped=2 duration_ms=4
[pytest] tests.test_app :: test_ok (1 ms) passed
[pytest] tests.test_app :: test_fail (2 ms) failed "assert 1 == 2"
    | def test_fail():
    | >       assert 1 == 2
    | E       assert 1 == 2
    | 
    | tests/test_app.py:5: AssertionError
[pytest] tests.test_app :: test_fixture (0 ms) error "failed on setup with \"RuntimeError: no db\""
    | @pytest.fixture
    |     def db():
    | >       raise RuntimeError("no db")
    | E       RuntimeError: no db
    | 
    | tests/test_app.py:9: RuntimeError
[pytest] tests.test_app :: test_skip (0 ms) skipped "not on linux"
[pytest] tests.test_app :: test_xfail (1 ms) skipped "known bug"
[pytest] tests.test_app :: test_param[a<b] (0 ms) passed
"#,
    );
}

#[test]
fn maven_surefire() {
    // A single `<testsuite>` root with a namespace, properties, CDATA and per-case output.
    // Surefire's `<flakyFailure>` belongs to a test that passed on a rerun: it passed.
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuite xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="https://maven.apache.org/surefire/maven-surefire-plugin/xsd/surefire-test-report-3.0.xsd" version="3.0" name="com.example.AppTest" time="0.045" tests="5" errors="1" skipped="1" failures="1">
  <properties>
    <property name="java.version" value="17.0.9"/>
    <property name="line.separator" value="&#10;"/>
  </properties>
  <testcase name="testOk" classname="com.example.AppTest" time="0.001"/>
  <testcase name="testFail" classname="com.example.AppTest" time="0.003">
    <failure message="expected: &lt;1&gt; but was: &lt;2&gt;" type="org.opentest4j.AssertionFailedError"><![CDATA[org.opentest4j.AssertionFailedError: expected: <1> but was: <2>
	at com.example.AppTest.testFail(AppTest.java:12)
]]></failure>
    <system-out><![CDATA[connecting to db
]]></system-out>
  </testcase>
  <testcase name="testError" classname="com.example.AppTest" time="1,234.5">
    <error type="java.lang.IllegalStateException">java.lang.IllegalStateException
	at com.example.AppTest.testError(AppTest.java:20)</error>
  </testcase>
  <testcase name="testSkip" classname="com.example.AppTest" time="0">
    <skipped/>
  </testcase>
  <testcase name="testFlaky" classname="com.example.AppTest" time="0,012">
    <flakyFailure message="timeout" type="java.util.concurrent.TimeoutException"><stackTrace>java.util.concurrent.TimeoutException</stackTrace></flakyFailure>
  </testcase>
</testsuite>
"#;
    check(
        xml,
        r#"
tests=5 failures=1 errors=1 skipped=1 duration_ms=1234516
[com.example.AppTest] com.example.AppTest :: testOk (1 ms) passed
[com.example.AppTest] com.example.AppTest :: testFail (3 ms) failed "expected: <1> but was: <2>"
    | org.opentest4j.AssertionFailedError: expected: <1> but was: <2>
    | 	at com.example.AppTest.testFail(AppTest.java:12)
    | 
    | --- system-out ---
    | connecting to db
[com.example.AppTest] com.example.AppTest :: testError (1234500 ms) error "java.lang.IllegalStateException"
    | java.lang.IllegalStateException
    | 	at com.example.AppTest.testError(AppTest.java:20)
[com.example.AppTest] com.example.AppTest :: testSkip (0 ms) skipped ""
[com.example.AppTest] com.example.AppTest :: testFlaky (12 ms) passed
"#,
    );
}

#[test]
fn node_test_runner() {
    // `node --test --test-reporter=junit`: describe blocks become nested suites, top-level tests
    // sit directly under `<testsuites>`, and the message attribute spans lines.
    let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<testsuites>
	<testsuite name="math" time="0.002" disabled="0" errors="0" tests="3" failures="1" skipped="0" hostname="box">
		<testcase name="adds" time="0.000500" classname="test"/>
		<testcase name="subtracts" time="0.001200" classname="test" failure="Expected values to be strictly equal:&#10;&#10;1 !== 2&#10;">
			<failure type="testCodeFailure" message="Expected values to be strictly equal:&#10;&#10;1 !== 2&#10;">
[Error [ERR_TEST_FAILURE]: Expected values to be strictly equal:

1 !== 2
] {
  code: 'ERR_TEST_FAILURE',
  failureType: 'testCodeFailure'
}
			</failure>
		</testcase>
		<testsuite name="nested" time="0.0001" disabled="0" errors="0" tests="1" failures="0" skipped="0" hostname="box">
			<testcase name="deep" time="0.0001" classname="test"/>
		</testsuite>
		<testcase name="after nested" time="0.0001" classname="test"/>
	</testsuite>
	<testcase name="top level" time="0.003" classname="test"/>
	<testcase name="todo thing" time="0.00001" classname="test">
		<skipped type="todo" message="TODO"/>
	</testcase>
	<!-- tests 6 -->
	<!-- suites 2 -->
	<!-- pass 4 -->
	<!-- fail 1 -->
</testsuites>
"#;
    check(
        xml,
        r#"
tests=6 failures=1 errors=0 skipped=1 duration_ms=5
[math] test :: adds (1 ms) passed
[math] test :: subtracts (1 ms) failed "Expected values to be strictly equal:\n\n1 !== 2"
    | [Error [ERR_TEST_FAILURE]: Expected values to be strictly equal:
    | 
    | 1 !== 2
    | ] {
    |   code: 'ERR_TEST_FAILURE',
    |   failureType: 'testCodeFailure'
    | }
[math > nested] test :: deep (0 ms) passed
[math] test :: after nested (0 ms) passed
[] test :: top level (3 ms) passed
[] test :: todo thing (0 ms) skipped "TODO"
"#,
    );
}

#[test]
fn go_junit_report() {
    // go-junit-report v2: one suite per package, CDATA everywhere, a build failure as an error.
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="4" failures="1" errors="1" skipped="1">
	<testsuite name="example.com/shop/cart" tests="3" failures="1" errors="0" id="0" hostname="box" time="0.012" timestamp="2025-01-10T10:00:00Z">
		<properties>
			<property name="go.version" value="go1.22.0 linux/amd64"></property>
		</properties>
		<testcase name="TestAdd" classname="example.com/shop/cart" time="0.000"></testcase>
		<testcase name="TestTotal" classname="example.com/shop/cart" time="0.010">
			<failure message="Failed"><![CDATA[    cart_test.go:21: total = 3, want 4]]></failure>
		</testcase>
		<testcase name="TestSlow" classname="example.com/shop/cart" time="0.000">
			<skipped message="Skipped"><![CDATA[    cart_test.go:30: slow]]></skipped>
		</testcase>
		<system-out><![CDATA[goos: linux]]></system-out>
	</testsuite>
	<testsuite name="example.com/shop/db" tests="1" failures="0" errors="1" id="1" hostname="box" time="0.000" timestamp="2025-01-10T10:00:00Z">
		<testcase name="[build failed]" classname="example.com/shop/db" time="0.000">
			<error message="Build error"><![CDATA[db/db.go:3:2: undefined: sql]]></error>
		</testcase>
	</testsuite>
</testsuites>
"#;
    check(
        xml,
        r#"
tests=4 failures=1 errors=1 skipped=1 duration_ms=10
[example.com/shop/cart] example.com/shop/cart :: TestAdd (0 ms) passed
[example.com/shop/cart] example.com/shop/cart :: TestTotal (10 ms) failed "Failed"
    |     cart_test.go:21: total = 3, want 4
[example.com/shop/cart] example.com/shop/cart :: TestSlow (0 ms) skipped "Skipped"
[example.com/shop/db] example.com/shop/db :: [build failed] (0 ms) error "Build error"
    | db/db.go:3:2: undefined: sql
"#,
    );
}

#[test]
fn nested_suites_and_odd_shapes() {
    let table = [
        // Suites three deep; unnamed suites leave no empty segment.
        (
            r#"<testsuites><testsuite name="a"><testsuite><testsuite name="c"><testcase name="t"/></testsuite></testsuite></testsuite></testsuites>"#,
            "tests=1 failures=0 errors=0 skipped=0 duration_ms=0\n[a > c]  :: t (0 ms) passed",
        ),
        // No cases at all.
        (r#"<testsuites/>"#, "tests=0 failures=0 errors=0 skipped=0 duration_ms=0"),
        (r#"<testsuite name="empty" tests="0"></testsuite>"#, "tests=0 failures=0 errors=0 skipped=0 duration_ms=0"),
        // Counts come from the cases, not from attributes that claim otherwise.
        (
            r#"<testsuite tests="99" failures="0"><testcase name="t"><failure/></testcase></testsuite>"#,
            "tests=1 failures=1 errors=0 skipped=0 duration_ms=0\n[]  :: t (0 ms) failed \"\"",
        ),
        // A failure outranks an earlier skip; the first failure or error wins over later ones.
        (
            r#"<testsuite><testcase name="t"><skipped message="s"/><failure message="f1"/><error message="e"/></testcase></testsuite>"#,
            "tests=1 failures=1 errors=0 skipped=0 duration_ms=0\n[]  :: t (0 ms) failed \"f1\"",
        ),
        // Without `message` or `type`, the message is the first line of the text.
        (
            "<testsuite><testcase name=\"t\"><failure>\n\n  first line\nsecond</failure></testcase></testsuite>",
            "tests=1 failures=1 errors=0 skipped=0 duration_ms=0\n[]  :: t (0 ms) failed \"first line\"\n    |   first line\n    | second",
        ),
        // Output of a passing case is not kept; output of a failing case follows the failure.
        (
            r#"<testsuite><testcase name="ok"><system-out>noise</system-out></testcase><testcase name="bad"><system-err>stderr</system-err><error/><system-out>stdout</system-out></testcase></testsuite>"#,
            "tests=2 failures=0 errors=1 skipped=0 duration_ms=0\n[]  :: ok (0 ms) passed\n[]  :: bad (0 ms) error \"\"\n    | --- system-err ---\n    | stderr\n    | \n    | --- system-out ---\n    | stdout",
        ),
        // Unparseable and negative times count as zero.
        (
            r#"<testsuite><testcase name="a" time="N/A"/><testcase name="b" time="-3"/><testcase name="c" time="2"/></testsuite>"#,
            "tests=3 failures=0 errors=0 skipped=0 duration_ms=2000\n[]  :: a (0 ms) passed\n[]  :: b (0 ms) passed\n[]  :: c (2000 ms) passed",
        ),
        // A duplicated attribute is not worth failing a report for: the first one counts.
        (
            r#"<testsuite><testcase name="a" name="b"/></testsuite>"#,
            "tests=1 failures=0 errors=0 skipped=0 duration_ms=0\n[]  :: a (0 ms) passed",
        ),
        // A byte order mark, a doctype and a processing instruction are fine.
        (
            "\u{feff}<?xml version=\"1.0\"?><!DOCTYPE testsuite><?pi x?><testsuite><testcase name=\"t\"/></testsuite>",
            "tests=1 failures=0 errors=0 skipped=0 duration_ms=0\n[]  :: t (0 ms) passed",
        ),
    ];
    for (xml, expected) in table {
        check(xml, expected);
    }
}

#[test]
fn entities_are_decoded() {
    let xml = "<testsuite name=\"a &amp; b\"><testcase classname=\"&lt;c&gt;\" name=\"&quot;q&quot; &apos;s&apos; &#233;&#x1F600;\"><failure message=\"line1&#10;line2\">&lt;tag&gt; &amp;&amp; &#x41;&#66; &nbsp; R&amp;D & co</failure></testcase></testsuite>";
    check(
        xml,
        "tests=1 failures=1 errors=0 skipped=0 duration_ms=0\n[a & b] <c> :: \"q\" 's' é😀 (0 ms) failed \"line1\\nline2\"\n    | <tag> && AB &nbsp; R&D & co",
    );
}

#[test]
fn huge_texts_are_bounded() {
    let head = "AssertionError: the start\n";
    let tail = "\nthe end: line 42";
    let middle = "é".repeat(100_000);
    let long_name = "n".repeat(5000);
    let xml = format!(
        "<testsuite><testcase name=\"{long_name}\"><failure message=\"{long_name}\">{head}{middle}{tail}</failure></testcase></testsuite>"
    );
    let report = parse("big.xml", &xml).unwrap();
    let case = &report.cases[0];
    assert!(case.name.len() <= TEXT_LIMIT && case.name.ends_with('…'), "{}", case.name.len());
    let Outcome::Failed { message, detail } = &case.outcome else { panic!("{:?}", case.outcome) };
    assert!(message.len() <= TEXT_LIMIT && message.ends_with('…'));
    assert!(detail.len() <= DETAIL_LIMIT, "{}", detail.len());
    assert!(detail.len() > DETAIL_LIMIT - 100, "{}", detail.len());
    assert!(detail.starts_with(head), "{detail}");
    assert!(detail.ends_with(tail), "{detail}");
    // What was kept and what was left out add up to the whole text.
    let total = head.len() + middle.len() + tail.len();
    let (kept_head, rest) = detail.split_once("\n[… ").unwrap();
    let (left_out, kept_tail) = rest.split_once(" bytes left out …]\n").unwrap();
    assert_eq!(kept_head.len() + left_out.parse::<usize>().unwrap() + kept_tail.len(), total);
}

#[test]
fn malformed_reports_say_where() {
    let table = [
        (
            "<testsuites>\n  <testsuite>\n    <testcase name=\"a\">\n  </testsuite>\n</testsuites>",
            "junit.xml:4:3: ill-formed document: expected `</testcase>`, but `</testsuite>` was found",
        ),
        ("<testsuite>\n  <testcase name=\"a\">\n", "junit.xml:3:1: unexpected end of file: <testcase> is not closed"),
        (
            "<testsuite>\n  <testcase name=a/>\n</testsuite>",
            "junit.xml:2:18: <testcase>: attribute value must be enclosed in `\"` or `'`",
        ),
        (
            "<testsuite><testcase name=\"a\"/></testsuite>\n<testsuite/>",
            "junit.xml:2:1: a second root element <testsuite>: expected only one",
        ),
        (
            "<?xml version=\"1.0\"?>\n<html><body>502 Bad Gateway</body></html>",
            "junit.xml:2:1: expected <testsuites> or <testsuite> as the root element, found <html>",
        ),
        ("", "junit.xml:1:1: the file has no <testsuites> or <testsuite> element"),
        ("  \n", "junit.xml:1:1: the file has no <testsuites> or <testsuite> element"),
        (
            "<?xml version=\"1.0\"?>\n<!-- pytest crashed -->\n",
            "junit.xml:1:1: the file has no <testsuites> or <testsuite> element",
        ),
        (
            "<testsuite><testcase name=\"é\">&#xD800;</testcase></testsuite>",
            "junit.xml:1:31: &#xD800;: invalid character reference: `55296` is not a valid codepoint",
        ),
        (
            "<testsuite>\n<!-- unterminated",
            "junit.xml:2:1: syntax error: comment not closed: `-->` not found before end of input",
        ),
        // Reports cut short by a crash while writing them.
        (
            "<testsuite>\n<testcase name=\"a\"><failure message=\"x\">trace",
            "junit.xml:2:46: unexpected end of file: <failure> is not closed",
        ),
        ("<testsuite>\n<testca", "junit.xml:2:1: syntax error: tag not closed: `>` not found before end of input"),
    ];
    for (xml, expected) in table {
        check_error(xml, expected);
    }
}

#[test]
fn merging_and_passing() {
    let passing = parse(
        "a.xml",
        r#"<testsuite><testcase name="a" time="1"/><testcase name="s"><skipped/></testcase></testsuite>"#,
    )
    .unwrap();
    assert!(passing.passed());
    let failing =
        parse("b.xml", r#"<testsuite><testcase name="b" time="2"><failure/></testcase></testsuite>"#).unwrap();
    assert!(!failing.passed());
    let erroring = parse("c.xml", r#"<testsuite><testcase name="c"><error/></testcase></testsuite>"#).unwrap();
    assert!(!erroring.passed());

    let mut merged = passing.clone();
    merged.merge(failing.clone());
    merged.merge(erroring);
    assert_eq!((merged.tests, merged.failures, merged.errors, merged.skipped), (4, 1, 1, 1));
    assert_eq!(merged.duration_ms, 3000);
    let names: Vec<&str> = merged.cases.iter().map(|case| case.name.as_str()).collect();
    assert_eq!(names, ["a", "s", "b", "c"]);
    assert!(!merged.passed());

    let mut empty = TestReport::default();
    assert!(empty.passed());
    empty.merge(passing.clone());
    assert_eq!(empty, passing);
}

#[test]
fn reports_round_trip_through_json() {
    let report = parse(
        "a.xml",
        r#"<testsuite name="s"><testcase name="a"/><testcase name="b"><failure message="m">d</failure></testcase><testcase name="c"><error message="m">d</error></testcase><testcase name="d"><skipped message="m"/></testcase></testsuite>"#,
    )
    .unwrap();
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains(r#""outcome":{"kind":"failed","message":"m","detail":"d"}"#), "{json}");
    assert!(json.contains(r#""outcome":{"kind":"passed"}"#), "{json}");
    assert_eq!(serde_json::from_str::<TestReport>(&json).unwrap(), report);
}

#[test]
fn durations() {
    let table = [
        ("0.003", 3),
        ("12", 12_000),
        ("0.0004", 0),
        ("0.0005", 1),
        (" 1.5 ", 1500),
        ("1,234.5", 1_234_500),
        ("0,012", 12),
        ("", 0),
        ("N/A", 0),
        ("-1", 0),
        ("NaN", 0),
        ("inf", 0),
        ("1e400", 0),
        ("1e300", u64::MAX),
    ];
    for (time, expected) in table {
        assert_eq!(duration_ms(time), expected, "{time:?}");
    }
}

#[test]
fn bounding_cuts_on_char_boundaries() {
    let table = [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("abcdefghijk", 10, "abcdefg…"),
        ("ééééééé", 10, "ééé…"),
        ("aéééééé", 10, "aééé…"),
        ("éééé", 10, "éééé"),
    ];
    for (text, limit, expected) in table {
        let actual = bounded(text, limit);
        assert_eq!(actual, expected, "{text:?}");
        assert!(actual.len() <= limit);
    }
    for len in [0, 1, 100, 200, 1000, 10_000] {
        for filler in ["a", "é", "😀"] {
            let text = filler.repeat(len);
            let actual = bounded_middle(&text, 200);
            assert!(actual.len() <= 200, "{len} {filler}: {}", actual.len());
            if text.len() <= 200 {
                assert_eq!(actual, text);
            }
        }
    }
    let table = [("\n\n  indented\n  more\n\n", "  indented\n  more"), ("plain", "plain"), ("  \n \t\n", ""), ("", "")];
    for (text, expected) in table {
        assert_eq!(trim_blank_lines(text), expected, "{text:?}");
    }
}
