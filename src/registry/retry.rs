//! Which failures are worth another try, and how long to wait before it.

use std::time::Duration;

/// Tries per request (the first one included).
pub const ATTEMPTS: u32 = 4;
/// Wait before the second try; it doubles for each further one (200, 400, 800 ms).
pub const FIRST_DELAY: Duration = Duration::from_millis(200);
/// A `Retry-After` longer than this is not waited for in full.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// What to do after a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Transient: server errors, throttling, a connection that broke or stalled.
    Retry,
    /// Could not connect: the registry is down or not there. Not retried, so a dead mirror
    /// costs no waiting and a mistyped registry fails at once.
    Unreachable,
    /// An answer that another try will not change (404, 401, 400...).
    Fatal,
}

/// The wait before try number `attempt + 1` (`attempt` counts from 1).
pub fn delay(attempt: u32) -> Duration {
    FIRST_DELAY * 2u32.saturating_pow(attempt.saturating_sub(1).min(10))
}

/// The wait before the next try, honouring a (short) `Retry-After` in seconds.
pub fn delay_with(attempt: u32, retry_after: Option<&str>) -> Duration {
    let base = delay(attempt);
    match retry_after.and_then(|s| s.trim().parse::<u64>().ok()) {
        Some(secs) => Duration::from_secs(secs).min(MAX_RETRY_AFTER).max(base),
        None => base,
    }
}

/// An HTTP status: 5xx (but 501, which will not change) and 429 are retried.
pub fn classify_status(status: u16) -> Class {
    match status {
        429 | 408 => Class::Retry,
        501 | 505 => Class::Fatal,
        500..=599 => Class::Retry,
        _ => Class::Fatal,
    }
}

/// A transport error, from what reqwest says it was.
pub fn classify_transport(connect: bool, timeout: bool) -> Class {
    match (connect, timeout) {
        // A connect timeout is as good as down.
        (true, _) => Class::Unreachable,
        _ => Class::Retry,
    }
}

pub fn classify_error(e: &reqwest::Error) -> Class {
    if let Some(status) = e.status() {
        return classify_status(status.as_u16());
    }
    if e.is_builder() || e.is_redirect() {
        return Class::Fatal;
    }
    classify_transport(e.is_connect(), e.is_timeout())
}

/// The innermost cause of an error, which for connection failures is the useful part
/// ("Connection refused (os error 111)").
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    let mut text = e.to_string();
    while let Some(next) = cur.source() {
        cur = next;
        text = next.to_string();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        for s in [500, 502, 503, 504, 429, 408] {
            assert_eq!(classify_status(s), Class::Retry, "{s}");
        }
        for s in [400, 401, 403, 404, 405, 416, 501] {
            assert_eq!(classify_status(s), Class::Fatal, "{s}");
        }
    }

    #[test]
    fn transport() {
        assert_eq!(classify_transport(true, false), Class::Unreachable);
        assert_eq!(classify_transport(true, true), Class::Unreachable);
        assert_eq!(classify_transport(false, true), Class::Retry);
        assert_eq!(classify_transport(false, false), Class::Retry);
    }

    #[test]
    fn backoff_doubles() {
        let ms: Vec<u128> = (1..ATTEMPTS).map(|a| delay(a).as_millis()).collect();
        assert_eq!(ms, [200, 400, 800]);
        assert_eq!(delay_with(1, Some("2")).as_millis(), 2000);
        assert_eq!(delay_with(1, Some("3600")), MAX_RETRY_AFTER);
        assert_eq!(delay_with(2, Some("soon")).as_millis(), 400);
    }
}
