//! The masker through its public API: tables of secrets, input lines and the masked lines that
//! come out, each tagged with when it came out.

use secrets::Masker;

/// Streams `input` through a masker of `secrets` and compares the lines that come out, each
/// tagged with the push that released it (`"2: ..."` came out of the second push) or `"flush: "`
/// for the final flush. Also checks that every line comes out once, that no output holds a
/// secret, and that a single line comes out of `mask_line` the same way.
fn check(secrets: &[&str], input: &[&str], expected: &[&str]) {
    let masker = Masker::new(secrets);
    let mut stream = masker.stream();
    let mut output = Vec::new();
    for (idx, line) in input.iter().enumerate() {
        let n_pushed = idx + 1;
        output.extend(stream.push(line).into_iter().map(|masked| format!("{n_pushed}: {masked}")));
        assert!(output.len() <= n_pushed, "more lines out than in: {output:?}");
    }
    output.extend(stream.flush().into_iter().map(|masked| format!("flush: {masked}")));
    assert_eq!(output.len(), input.len(), "lines out {output:?}");
    assert_eq!(output, expected, "secrets {secrets:?}, input {input:?}");

    for secret in secrets.iter().filter(|secret| secret.chars().count() >= secrets::MIN_VALUE_CHARS) {
        for line in &output {
            assert!(!line.contains(secret), "{line:?} shows {secret:?}");
        }
    }
    if let [line] = input {
        let (_, masked) = expected[0].split_once(": ").unwrap();
        assert_eq!(masker.mask_line(line), masked, "mask_line({line:?})");
    }
}

#[test]
fn plain() {
    check(&["hunter2secret"], &["password is hunter2secret."], &["1: password is ***."]);
    check(&["hunter2secret"], &["hunter2secret"], &["1: ***"]);
    check(&["hunter2secret"], &["hunter2secret hunter2secret!"], &["1: *** ***!"]);
    check(&["hunter2secret"], &["nothing to see here."], &["1: nothing to see here."]);
    check(&["hunter2secret"], &[""], &["1: "]);
    check(&["pässwörd"], &["pw=pässwörd, ok"], &["1: pw=***, ok"]);
    // Case matters: a secret is a byte string.
    check(&["hunter2secret"], &["HUNTER2SECRET."], &["1: HUNTER2SECRET."]);
}

#[test]
fn several_and_overlapping_secrets() {
    check(&["alpha-secret", "beta-secret"], &["a=alpha-secret b=beta-secret."], &["1: a=*** b=***."]);
    // Adjacent secrets are one masked run.
    check(&["alpha-secret", "beta-secret"], &["alpha-secretbeta-secret."], &["1: ***."]);
    // Overlapping: a leftmost-longest search alone would leave "ghij" visible.
    check(&["abcdef12", "ef12ghij"], &["x abcdef12ghij y."], &["1: x *** y."]);
    // One secret inside another.
    check(&["password", "pass"], &["my password and pass."], &["1: my *** and ***."]);
    check(&["pass", "password"], &["my password and pass."], &["1: my *** and ***."]);
    // The same secret twice.
    check(&["hunter2secret", "hunter2secret"], &["hunter2secret."], &["1: ***."]);
}

#[test]
fn base64() {
    let secret = "hunter2>?secret~~";
    // Table lines end with `.`, which no form starts with, so each comes out at once.
    let cases = [
        // The value on its own, as `printf %s "$S" | base64` prints it: standard and URL-safe,
        // padded and not.
        ("token aHVudGVyMj4/c2VjcmV0fn4= end.", "token *** end."),
        ("token aHVudGVyMj4/c2VjcmV0fn4 end.", "token *** end."),
        ("token aHVudGVyMj4_c2VjcmV0fn4= end.", "token *** end."),
        ("token aHVudGVyMj4_c2VjcmV0fn4 end.", "token *** end."),
        // With the newline of `echo "$S" | base64`: the newline's first bits happen to be zeros,
        // so even the last character of the unpadded form matches, and only `K` is left.
        ("aHVudGVyMj4/c2VjcmV0fn4K.", "***K."),
        // Inside a longer blob (`id:` + value + `Trailer bytes`, with 3, 4 and 5 bytes before it),
        // at each of the three alignments, in both alphabets. Only the stable middle is masked.
        ("aWQ6aHVudGVyMj4/c2VjcmV0fn5UcmFpbGVyIGJ5dGVz ok.", "aWQ6***5UcmFpbGVyIGJ5dGVz ok."),
        ("aWQ6MWh1bnRlcjI+P3NlY3JldH5+VHJhaWxlciBieXRlcw== ok.", "aWQ6MW***VHJhaWxlciBieXRlcw== ok."),
        ("aWQ6MTJodW50ZXIyPj9zZWNyZXR+flRyYWlsZXIgYnl0ZXM= ok.", "aWQ6MTJ***lRyYWlsZXIgYnl0ZXM= ok."),
        ("aWQ6aHVudGVyMj4_c2VjcmV0fn5UcmFpbGVyIGJ5dGVz ok.", "aWQ6***5UcmFpbGVyIGJ5dGVz ok."),
        ("aWQ6MWh1bnRlcjI-P3NlY3JldH5-VHJhaWxlciBieXRlcw== ok.", "aWQ6MW***VHJhaWxlciBieXRlcw== ok."),
        ("aWQ6MTJodW50ZXIyPj9zZWNyZXR-flRyYWlsZXIgYnl0ZXM= ok.", "aWQ6MTJ***lRyYWlsZXIgYnl0ZXM= ok."),
        // When the byte after the value starts with two zero bits, as `<` does, the last character
        // of the value's own unpadded form is right too and is masked with the middle.
        ("aWQ6aHVudGVyMj4/c2VjcmV0fn48dHJhaWxlciBieXRlcz4= ok.", "aWQ6***8dHJhaWxlciBieXRlcz4= ok."),
    ];
    for (line, masked) in cases {
        check(&[secret], &[line], &[&format!("1: {masked}")]);
    }
    // `base64` wraps at 76 columns; here the value's stable middle spans the wrap.
    check(
        &[secret],
        &[
            "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4aHVudGVyMj4/c2Vj",
            "cmV0fn55eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5",
        ],
        &[
            "2: eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4***",
            "2: ***55eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5",
        ],
    );
}

#[test]
fn url_encoded() {
    let secret = "my pass&word/with+plus";
    // Table lines end with `.`, which no form starts with, so each comes out at once.
    let cases = [
        // encodeURIComponent, Go's url.PathEscape, Python's quote(safe=""): every reserved
        // character escaped.
        ("GET /login?pw=my%20pass%26word%2Fwith%2Bplus&next=/.", "GET /login?pw=***&next=/."),
        // The same in lower-case hex.
        ("pw=my%20pass%26word%2fwith%2bplus.", "pw=***."),
        // A form body: a space is `+`, so a plus is `%2B`.
        ("pw=my+pass%26word%2Fwith%2Bplus&x=y.", "pw=***&x=y."),
        // Python's quote(): `/` left alone.
        ("pw=my%20pass%26word/with%2Bplus.", "pw=***."),
        // encodeURI(): only the space escaped.
        ("pw=my%20pass&word/with+plus.", "pw=***."),
        // Escaped characters that need not be.
        ("pw=%6Dy%20pass%26word%2Fwith%2Bplus.", "pw=***."),
        // No encoder writes one `+` for a space and leaves another for a plus, and neither reading
        // of the line holds the value.
        ("pw=my+pass&word/with+plus.", "pw=my+pass&word/with+plus."),
        // Stray percent signs do not disturb the rest.
        ("100% of my%20pass%26word%2Fwith%2Bplus%.", "100% of ***%."),
    ];
    for (line, masked) in cases {
        check(&[secret], &[line], &[&format!("1: {masked}")]);
    }
    // A line that ends in `%` could end in the first half of an escape, so it waits for the next.
    check(&[secret], &["100% of my%20pass%26word%2Fwith%2Bplus%"], &["flush: 100% of ***%"]);
    check(&["pässwörd"], &["pw=p%C3%A4ssw%c3%b6rd."], &["1: pw=***."]);
}

#[test]
fn split_across_two_lines_at_every_point() {
    for secret in ["hunter2secret", "pässwörd-ünïcode"] {
        let boundaries = secret.char_indices().map(|(idx, _)| idx).skip(1);
        for split in boundaries {
            let (first, second) = secret.split_at(split);
            check(&[secret], &[first, second], &["2: ***", "2: ***"]);
            check(&[secret], &[&format!("echo {first}"), &format!("{second} done.")], &["2: echo ***", "2: *** done."]);
        }
    }
}

#[test]
fn lines_held_back_and_released() {
    let secret = "hunter2secret";
    // The end of the first line could start the secret, but the next line does not go on with it:
    // nothing is masked, and the first line comes out with the second.
    check(&[secret], &["x hunt", "nope."], &["2: x hunt", "2: nope."]);
    check(&[secret], &["x hunt", "er2 nope."], &["2: x hunt", "2: er2 nope."]);
    // At the end of the stream, flush releases the held line as it is.
    check(&[secret], &["x hunt"], &["flush: x hunt"]);
    check(&[secret], &["a.", "x hunt"], &["1: a.", "flush: x hunt"]);
    // A line that does not end like a secret starts comes out at once.
    check(&[secret], &["a.", "b.", "c."], &["1: a.", "2: b.", "3: c."]);
    // A line that ends with a whole secret comes out at once, since no longer secret starts so.
    check(&["abcd"], &["x abcd"], &["1: x ***"]);
    // ...but is held when a longer secret starts with it.
    check(&["abcd", "abcdef"], &["x abcd", "ef."], &["2: x ***", "2: ***."]);
    // A line that ends a split secret can start another.
    check(&[secret], &["a hunt", "er2secret b hunt", "er2secret c."], &["2: a ***", "3: *** b ***", "3: *** c."]);
    // The second part followed by the whole secret on the same line.
    check(&[secret], &["a hunter", "2secret and hunter2secret."], &["2: a ***", "2: *** and ***."]);
    // A split secret next to a whole one on the first line.
    check(&[secret], &["hunter2secret hunter", "2secret."], &["2: *** ***", "2: ***."]);
}

#[test]
fn multi_line_secret() {
    let key = "-----BEGIN KEY-----\nMIIEabc123\n-----END KEY-----";
    check(
        &[key],
        &["key:", "-----BEGIN KEY-----", "MIIEabc123", "-----END KEY-----", "done."],
        // The first and last lines end with `-`, which starts other lines of the key, so each waits
        // for the line after it.
        &["1: key:", "3: ***", "3: ***", "5: ***", "5: done."],
    );
}

#[test]
fn empty_masker_and_short_values() {
    check(&[], &["anything hunt", "at all."], &["1: anything hunt", "2: at all."]);
    assert!(Masker::new(Vec::<String>::new()).is_empty());
    // Fewer than four characters are ignored, counted in characters, not bytes.
    check(&["abc", "", "äöü"], &["abc, äöü and ab"], &["1: abc, äöü and ab"]);
    assert!(Masker::new(["abc", "", "äöü"]).is_empty());
    check(&["abc", "abcd"], &["abc abcd."], &["1: abc ***."]);
    assert!(!Masker::new(["abcd"]).is_empty());
}

#[test]
fn debug_shows_no_secret() {
    let masker = Masker::new(["hunter2secret"]);
    let mut stream = masker.stream();
    assert_eq!(stream.push("x hunter2"), Vec::<String>::new());
    let debug = format!("{masker:?} {stream:?}");
    assert!(!debug.contains("hunter"), "{debug}");
}

#[test]
fn issue_9_f8_hex_encoded_secret_is_masked() {
    let secret = "hunter2secret";
    let cases = [
        // `xxd -p`, `hex::encode`, `printf %s "$S" | od -An -tx1 | tr -d ' \n'`.
        ("token 68756e74657232736563726574.", "token ***."),
        // `xxd -p -u`, `hex::encode_upper`, `%X` formats.
        ("token 68756E74657232736563726574.", "token ***."),
        // Inside a longer blob: each byte owns its two digits, so the value's hex is always there.
        ("blob=deadbeef68756e74657232736563726574cafe.", "blob=deadbeef***cafe."),
    ];
    for (line, masked) in cases {
        check(&[secret], &[line], &[&format!("1: {masked}")]);
    }
    // Mixed case is not covered (documented on `Masker`): no encoder prints it.
    check(&["zzzz"], &["7a7A7a7A."], &["1: 7a7A7a7A."]);
    // `xxd -p` wraps its output, here inside the value's hex.
    check(&[secret], &["0000000068756e746572", "32736563726574000000."], &["2: 00000000***", "2: ***000000."]);
}

#[test]
fn issue_9_f8_base64_of_hex_is_masked() {
    let secret = "hunter2secret";
    check(&[secret], &["x Njg3NTZlNzQ2NTcyMzI3MzY1NjM3MjY1NzQ= y."], &["1: x *** y."]);
    check(&[secret], &["x Njg3NTZFNzQ2NTcyMzI3MzY1NjM3MjY1NzQ y."], &["1: x *** y."]);
}

#[test]
fn issue_9_f8_secret_split_over_three_or_more_lines_is_masked() {
    for secret in ["hunter2secret", "pässwörd-ünïcode"] {
        let boundaries: Vec<usize> = secret.char_indices().map(|(idx, _)| idx).skip(1).collect();
        for (n, &first) in boundaries.iter().enumerate() {
            for &second in &boundaries[n + 1..] {
                let parts = [&secret[..first], &secret[first..second], &secret[second..]];
                check(&[secret], &parts, &["3: ***", "3: ***", "3: ***"]);
                let (head, middle, tail) = (format!("echo {}", parts[0]), parts[1], format!("{} done.", parts[2]));
                check(&[secret], &[&head, middle, &tail], &["3: echo ***", "3: ***", "3: *** done."]);
            }
        }
        // One character per line, as `fold -w 1` prints it.
        let chars: Vec<String> = secret.chars().map(String::from).collect();
        let input: Vec<&str> = chars.iter().map(String::as_str).collect();
        let n = input.len();
        let expected: Vec<String> = input.iter().map(|_| format!("{n}: ***")).collect();
        check(&[secret], &input, &expected.iter().map(String::as_str).collect::<Vec<_>>());
    }
    // Empty lines in between are lines the secret is split across.
    check(
        &["hunter2secret"],
        &["a hunt", "", "er2", "", "secret b."],
        &["5: a ***", "5: ", "5: ***", "5: ", "5: *** b."],
    );
    // Once it is clear that no secret goes on, the held lines come out as they are.
    check(&["hunter2secret"], &["a hunt", "er2", "nope."], &["3: a hunt", "3: er2", "3: nope."]);
}

#[test]
fn issue_9_f8_json_escaped_secret_is_masked() {
    let secret = r#"pä"ss\w/rd"#;
    let cases = [
        // serde_json and most JSON encoders.
        (r#"{"token":"pä\"ss\\w/rd"}"#, r#"{"token":"***"}"#),
        // Encoders that escape `/` and everything beyond ASCII (PHP's json_encode, Python's json.dumps).
        (r#"{"token":"p\u00e4\"ss\\w\/rd"}"#, r#"{"token":"***"}"#),
        (r#"{"token":"p\u00E4\u0022ss\u005Cw\/rd"}"#, r#"{"token":"***"}"#),
        // Python's repr of the UTF-8 bytes, Rust's `Debug` of a `char` escape.
        (r#"b'p\xc3\xa4"ss\\w/rd'"#, r#"b'***'"#),
        (r#"x "p\u{e4}\"ss\\w/rd" y"#, r#"x "***" y"#),
    ];
    for (line, masked) in cases {
        check(&[secret], &[line], &[&format!("1: {masked}")]);
    }
    // A character beyond the BMP is a surrogate pair in JSON.
    check(&["emoji😀key"], &[r#"{"k":"emoji\ud83d\ude00key"}"#], &[r#"1: {"k":"***"}"#]);
    // A value of several lines, printed on one line with its line breaks escaped.
    let key = "-----BEGIN KEY-----\nMIIEabc123\n-----END KEY-----";
    check(&[key], &[r#"{"key":"-----BEGIN KEY-----\nMIIEabc123\n-----END KEY-----"}"#], &[r#"1: {"key":"***"}"#]);
    // Base64 with its `/` escaped, as PHP prints it.
    check(&["hunter2>?secret~~"], &[r#"{"b64":"aHVudGVyMj4\/c2VjcmV0fn4="}"#], &[r#"1: {"b64":"***"}"#]);
}

#[test]
fn issue_9_f8_ansi_colored_secret_is_masked() {
    let secret = "hunter2secret";
    let cases = [
        // Colored as a whole: the codes around it stay, so the rest of the line keeps its color.
        ("pw: \x1b[1;31mhunter2secret\x1b[0m.", "pw: \x1b[1;31m***\x1b[0m."),
        // Codes between its characters, as a highlighter or a rainbow printer puts them.
        ("pw: \x1b[31mhun\x1b[32mter2\x1b[38;5;208msecret\x1b[0m.", "pw: \x1b[31m***\x1b[0m."),
        // A hyperlink and a charset switch in the middle.
        ("pw: hunter\x1b]8;;http://x/\x1b\\2sec\x1b(Bret.", "pw: ***."),
    ];
    for (line, masked) in cases {
        check(&[secret], &[line], &[&format!("1: {masked}")]);
    }
    // Split across lines, with a code cut in two.
    check(&[secret], &["pw: hun\x1b[3", "1mter2secret."], &["2: pw: ***", "2: ***."]);
}

#[test]
fn issue_9_f8_escaped_secret_split_inside_an_escape_is_masked() {
    let secret = "my pass&word";
    // The first line ends in `%2`, the second in `%`: each could be the start of an escape.
    check(&[secret], &["pw=my%2", "0pass%", "26word."], &["3: pw=***", "3: ***", "3: ***."]);
    // Even when nothing of the secret comes before the cut escape.
    check(&["hunter2secret"], &["pw=%", "68unter2secret."], &["2: pw=***", "2: ***."]);
    check(&["pässwörd"], &[r"pw=p\u00", r"e4ssw\u00f6rd."], &["2: pw=***", "2: ***."]);
    // A line that ends in an unfinished escape waits for the next line, which may finish it
    // without a secret.
    check(&["hunter2secret"], &["progress 100%", "done."], &["2: progress 100%", "2: done."]);
    check(&["hunter2secret"], &[r"C:\", "done."], &[r"2: C:\", "2: done."]);
}

#[test]
fn issue_9_f8_backslash_pair_cut_by_a_line_break_keeps_its_meaning() {
    // `\\` cut in two by the first line break: decoding the second line on its own would read
    // `\\u0068` as `\` and `u0068`, not as `\` and `h`, and miss the secret that starts there.
    check(&["hunter2secret"], &[r"path C:\", r"\\u0068unt", "er2secret."], &[r"3: path C:\", r"3: \***", "3: ***."]);
}

#[test]
fn issue_9_f8_stream_holds_a_bounded_number_of_lines() {
    // The longest form of `abcd` is the base64 of its hex, `NjE2MjYzNjQ=`: 12 bytes, so the
    // stream holds at most 16 * 12 lines.
    let limit = 16 * 12;
    let masker = Masker::new(["abcd"]);
    let mut stream = masker.stream();
    assert_eq!(stream.push("x ab"), Vec::<String>::new());
    for n_empty in 1..limit {
        assert_eq!(stream.push(""), Vec::<String>::new(), "after {n_empty} empty lines");
    }
    // One more line than the bound: the oldest goes out, as far as it is known to be masked.
    assert_eq!(stream.push(""), ["x ab"]);
    // The rest of the secret is no longer joined with its start.
    let rest = stream.push("cd.");
    assert_eq!(rest.len(), limit + 1);
    assert_eq!(rest.last().unwrap(), "cd.");
    assert!(stream.flush().is_empty());
}

#[test]
fn issue_9_f8_a_whole_text_is_masked_across_its_lines() {
    let masker = Masker::new(["hunter2-secret"]);
    let text = "AssertionError: got hunter2-\nsecret back\n\nand hunter2-secret again\n";
    assert_eq!(masker.mask_text(text), "AssertionError: got ***\n*** back\n\nand *** again\n");
    assert_eq!(Masker::new(Vec::<String>::new()).mask_text(text), text);
}
