//! "Did you mean …?" suggestions for misspelt names (services, configuration keys).
//!
//! One rule for the whole crate, so every typo message behaves the same way.

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
///
/// Closeness is the Damerau-Levenshtein distance (a swap of two adjacent characters counts
/// as one edit, which catches the common `wbe` for `web`), compared case-insensitively.
/// The allowed distance grows with the length of `word`: one edit up to 5 characters, two
/// up to 8, three up to 11 and so on, so short names do not match everything. A candidate
/// must also keep at least one character in common with `word` beyond the edits (`a` never
/// suggests `b`). Ties go to the earliest candidate, which keeps messages deterministic.
///
/// An exact match is returned too; callers ask only once a lookup has failed.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word_lower = word.to_lowercase();
    let word_len = word_lower.chars().count();
    let max_distance = word_len.max(3) / 3;

    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let candidate_lower = candidate.to_lowercase();
        let candidate_len = candidate_lower.chars().count();
        // The distance is at least the length difference: skip the O(n*m) computation for
        // candidates that cannot qualify (most of them, in a large project).
        if word_len.abs_diff(candidate_len) > max_distance {
            continue;
        }
        let distance = strsim::damerau_levenshtein(&word_lower, &candidate_lower);
        let plausible = distance <= max_distance && distance < word_len.min(candidate_len);
        if plausible && best.is_none_or(|(best_distance, _)| distance < best_distance) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::nearest;

    const SERVICES: [&str; 5] = ["web", "db", "redis", "worker", "postgres"];

    #[test]
    fn typos_are_matched() {
        assert_eq!(nearest("dbb", SERVICES), Some("db"));
        assert_eq!(nearest("wbe", SERVICES), Some("web"));
        assert_eq!(nearest("Redis", SERVICES), Some("redis"));
        assert_eq!(nearest("postgre", SERVICES), Some("postgres"));
        assert_eq!(nearest("wrokers", SERVICES), Some("worker"));
        assert_eq!(nearest("enviroment", ["image", "environment", "ports"]), Some("environment"));
        assert_eq!(nearest("depend_on", ["depends_on", "develop"]), Some("depends_on"));
    }

    #[test]
    fn wild_names_get_no_suggestion() {
        assert_eq!(nearest("cache", SERVICES), None);
        assert_eq!(nearest("x", SERVICES), None);
        assert_eq!(nearest("frontend", SERVICES), None);
        assert_eq!(nearest("a", ["b"]), None);
        assert_eq!(nearest("web", std::iter::empty()), None);
    }

    #[test]
    fn closest_then_earliest_wins() {
        assert_eq!(nearest("apps", ["api", "app", "apps2"]), Some("app"));
        assert_eq!(nearest("ab", ["ac", "ad"]), Some("ac"));
    }
}
