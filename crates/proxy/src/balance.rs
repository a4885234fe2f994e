//! Choosing a backend: round-robin or least connections, over the eligible ones.
//!
//! The choice is a pure function of the rotation start, which backends are eligible (routed,
//! healthy, not yet tried for this request) and their in-flight counts, so it is tested without
//! sockets. Both policies start scanning at a rotating offset: for round-robin that is the
//! rotation itself, for least connections it spreads ties instead of piling onto the first.

use model::Balance;

/// Picks an index in `0..n`, or `None` if no index is eligible.
pub(crate) fn pick(
    balance: Balance,
    start: usize,
    n: usize,
    eligible: impl Fn(usize) -> bool,
    load: impl Fn(usize) -> u64,
) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let candidates = (0..n).map(|offset| (start + offset) % n).filter(|&idx| eligible(idx));
    match balance {
        Balance::RoundRobin => candidates.into_iter().next(),
        // `min_by_key` keeps the first of equal minimums, i.e. the one nearest the rotation.
        Balance::LeastConnections => candidates.min_by_key(|&idx| load(idx)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `picks` consecutive picks with a rotation counter like the proxy's, over backends
    /// described as `"+3 -0 +1"`: eligible or not, and in-flight count. A picked backend's load
    /// grows by one when `sticky` (requests that have not finished yet).
    fn check(balance: Balance, backends: &str, picks: usize, sticky: bool, expected: &str) {
        let mut loads: Vec<u64> = Vec::new();
        let mut eligible: Vec<bool> = Vec::new();
        for b in backends.split_whitespace() {
            let (flag, load) = b.split_at(1);
            eligible.push(flag == "+");
            loads.push(load.parse().unwrap());
        }
        let mut rendered = Vec::new();
        for start in 0..picks {
            let choice = pick(balance, start, loads.len(), |i| eligible[i], |i| loads[i]);
            rendered.push(choice.map_or("-".to_owned(), |i| i.to_string()));
            if let (Some(i), true) = (choice, sticky) {
                loads[i] += 1;
            }
        }
        assert_eq!(rendered.join(" "), expected, "{balance:?} over {backends}");
    }

    #[test]
    fn round_robin_rotates_over_eligible() {
        check(Balance::RoundRobin, "+0 +0 +0", 6, false, "0 1 2 0 1 2");
        check(Balance::RoundRobin, "+0 -0 +0", 4, false, "0 2 2 0");
        check(Balance::RoundRobin, "-0 -0", 2, false, "- -");
        check(Balance::RoundRobin, "", 1, false, "-");
    }

    #[test]
    fn least_connections_prefers_idle_and_spreads_ties() {
        check(Balance::LeastConnections, "+5 +0 +9", 3, false, "1 1 1");
        check(Balance::LeastConnections, "+0 +0 +0", 3, false, "0 1 2");
        check(Balance::LeastConnections, "+2 +0 +0", 4, true, "1 2 2 1");
        check(Balance::LeastConnections, "+0 -0 +3", 2, false, "0 0");
        check(Balance::LeastConnections, "-0 -0", 1, false, "-");
    }
}
