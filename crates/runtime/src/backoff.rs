//! The restart delay policy of the shim: exponential backoff that forgives a crash after a
//! while of healthy running. Pure, so it is tested without a clock.

use std::time::Duration;

/// The first delay after a crash.
pub(crate) const INITIAL: Duration = Duration::from_millis(100);
/// The longest delay between restarts.
pub(crate) const MAX: Duration = Duration::from_secs(10);
/// An app that ran at least this long before exiting starts over at [`INITIAL`].
pub(crate) const RESET_AFTER: Duration = Duration::from_secs(10);

/// Restart delays: 100 ms, 200 ms, 400 ms, ... capped at 10 s, back to 100 ms after an app ran
/// for 10 s.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self { next: INITIAL }
    }

    /// The delay before restarting an app that ran for `uptime`.
    pub(crate) fn delay_after(&mut self, uptime: Duration) -> Duration {
        if uptime >= RESET_AFTER {
            self.next = INITIAL;
        }
        let delay = self.next;
        self.next = (delay * 2).min(MAX);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_cap_and_reset() {
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        // (uptime of the run that just ended, expected delay)
        let table = [
            (ms(5), ms(100)),
            (ms(5), ms(200)),
            (ms(5), ms(400)),
            (secs(9), ms(800)),
            (ms(0), ms(1600)),
            (ms(0), ms(3200)),
            (ms(0), ms(6400)),
            (ms(0), secs(10)),
            (ms(0), secs(10)),
            (secs(10), ms(100)),
            (ms(1), ms(200)),
            (secs(3600), ms(100)),
        ];
        let mut backoff = Backoff::new();
        for (step, (uptime, expected)) in table.into_iter().enumerate() {
            assert_eq!(backoff.delay_after(uptime), expected, "step {step}");
        }
    }
}
