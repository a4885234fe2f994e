//! "Did you mean ...?" for misspelled field names and values.

/// The candidate closest to `typed`, if it is close enough to be a plausible typo.
///
/// Uses optimal string alignment distance, so a swapped pair of letters (`deplyo`) counts as one
/// edit, and ignores case. About one edit in three characters is accepted, at least one.
pub(crate) fn closest<'a>(typed: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let typed = typed.to_lowercase();
    candidates
        .iter()
        .map(|candidate| (strsim::osa_distance(&typed, &candidate.to_lowercase()), *candidate))
        .filter(|(distance, candidate)| *distance <= (typed.len().max(candidate.len()) / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// `, did you mean `x`?` or nothing, to append to a message.
pub(crate) fn did_you_mean(typed: &str, candidates: &[&str]) -> String {
    match closest(typed, candidates) {
        Some(candidate) => format!(", did you mean `{candidate}`?"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let fields = ["app", "processes", "build", "env", "scale", "health", "deploy", "pipeline"];
        let table = [
            ("helth", Some("health")),
            ("Health", Some("health")),
            ("deplyo", Some("deploy")),
            ("proceses", Some("processes")),
            ("apps", Some("app")),
            ("envs", Some("env")),
            ("x", None),
            ("name", None),
            ("healthcheck", None),
        ];
        for (typed, expected) in table {
            assert_eq!(closest(typed, &fields), expected, "{typed:?}");
        }
        assert_eq!(closest("bluegreen", &["rolling", "blue-green"]), Some("blue-green"));
        assert_eq!(closest("start-period", &["start_period", "interval"]), Some("start_period"));
    }
}
