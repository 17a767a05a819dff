//! Unit tests for the service graph, kept apart so `graph.rs` stays readable.

use super::{GraphError, ServiceGraph};

fn graph(services: &[(&'static str, &[&'static str])]) -> Result<ServiceGraph, GraphError> {
    ServiceGraph::new(services.iter().map(|&(name, deps)| (name, deps.iter().copied())))
}

fn cycle(services: &[(&'static str, &[&'static str])]) -> String {
    match graph(services) {
        Err(error @ GraphError::Cycle { .. }) => error.to_string(),
        other => panic!("expected a cycle, got {other:?}"),
    }
}

#[test]
fn linear_chain() {
    let g = graph(&[("web", &["api"]), ("api", &["db"]), ("db", &[])]).unwrap();
    assert_eq!(g.start_layers(), [["db"], ["api"], ["web"]]);
    assert_eq!(g.stop_layers(), [["web"], ["api"], ["db"]]);
    assert_eq!(g.dependencies("web"), ["api"]);
    assert_eq!(g.dependents("db"), ["api", "web"]);
}

#[test]
fn diamond() {
    let g = graph(&[
        ("top", &["left", "right"]),
        ("right", &["base"]),
        ("left", &["base", "base"]),
        ("base", &[]),
    ])
    .unwrap();
    assert_eq!(g.start_layers(), vec![vec!["base"], vec!["right", "left"], vec!["top"]]);
    assert_eq!(g.dependencies("left"), ["base"], "duplicate edges collapse");
    assert_eq!(g.dependents("base"), ["right", "left", "top"]);
    assert_eq!(g.with_dependencies(&["left"]).unwrap(), ["base", "left"]);
}

#[test]
fn independent_services_share_a_layer_in_file_order() {
    let g = graph(&[("c", &[]), ("a", &[]), ("b", &[])]).unwrap();
    assert_eq!(g.start_layers(), [["c", "a", "b"]]);
    assert_eq!(g.stop_layers(), [["c", "a", "b"]]);
    let empty = graph(&[]).unwrap();
    assert!(empty.start_layers().is_empty());
}

#[test]
fn layer_is_set_by_the_deepest_dependency() {
    let g = graph(&[("app", &["cache", "api"]), ("api", &["db"]), ("db", &[]), ("cache", &[])])
        .unwrap();
    assert_eq!(g.start_layers(), vec![vec!["db", "cache"], vec!["api"], vec!["app"]]);
}

#[test]
fn self_dependency_is_a_cycle() {
    assert_eq!(cycle(&[("a", &[]), ("b", &["a", "b"])]), "dependency cycle: b -> b");
}

#[test]
fn long_cycle_path() {
    let message = cycle(&[
        ("a", &["b"]),
        ("b", &["c"]),
        ("c", &["d"]),
        ("d", &["e"]),
        ("e", &["a"]),
        ("f", &["a"]),
    ]);
    assert_eq!(message, "dependency cycle: a -> b -> c -> d -> e -> a");
}

#[test]
fn reported_cycle_starts_at_the_earliest_service_on_one() {
    // `x` only leads into a cycle; `p` is the first service that is on one (m <-> n is a
    // second, later cycle), and of p's two cycles the shorter is reported.
    let services: &[(&str, &[&str])] = &[
        ("x", &["q"]),
        ("p", &["q", "s"]),
        ("q", &["r"]),
        ("r", &["p"]),
        ("s", &["p"]),
        ("m", &["n"]),
        ("n", &["m"]),
    ];
    for _ in 0..3 {
        assert_eq!(cycle(services), "dependency cycle: p -> s -> p");
    }
    // Equally short: the dependency listed first wins.
    let tie: &[(&str, &[&str])] = &[("a", &["c", "b"]), ("b", &["a"]), ("c", &["a"])];
    assert_eq!(cycle(tie), "dependency cycle: a -> c -> a");
}

#[test]
fn cycle_path_stays_on_the_cycle() {
    // From `a`, following the first dependency leads into the sub-cycle b <-> c; the
    // reported path must still return to `a`.
    let message = cycle(&[("a", &["b"]), ("b", &["c"]), ("c", &["b", "a"])]);
    assert_eq!(message, "dependency cycle: a -> b -> c -> a");
}

#[test]
fn unknown_dependency_with_suggestion() {
    let error = graph(&[("web", &["dbb"]), ("db", &[])]).unwrap_err();
    assert_eq!(
        error,
        GraphError::UnknownDependency {
            service: "web".into(),
            dependency: "dbb".into(),
            suggestion: Some("db".into()),
        }
    );
    assert_eq!(
        error.to_string(),
        r#"service "web" depends on "dbb", which is not a service in this project (did you mean "db"?)"#
    );
}

#[test]
fn unknown_dependency_without_suggestion() {
    let error = graph(&[("web", &["db", "elasticsearch"]), ("db", &[])]).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"service "web" depends on "elasticsearch", which is not a service in this project"#
    );
    // The service itself is no suggestion, however close.
    let error = graph(&[("web", &["wbe"]), ("db", &[])]).unwrap_err();
    assert!(matches!(error, GraphError::UnknownDependency { suggestion: None, .. }), "{error:?}");
}

#[test]
fn unknown_dependency_is_reported_before_a_cycle() {
    let error = graph(&[("a", &["a"]), ("b", &["nope"])]).unwrap_err();
    assert!(matches!(error, GraphError::UnknownDependency { .. }), "{error:?}");
}

#[test]
fn with_dependencies_closure() {
    let g = graph(&[
        ("web", &["api", "assets"]),
        ("api", &["db", "cache"]),
        ("worker", &["db"]),
        ("assets", &[]),
        ("db", &[]),
        ("cache", &[]),
        ("docs", &[]),
    ])
    .unwrap();
    assert_eq!(g.with_dependencies(&["api"]).unwrap(), ["db", "cache", "api"]);
    assert_eq!(
        g.with_dependencies(&["worker", "web", "db"]).unwrap(),
        ["assets", "db", "cache", "api", "worker", "web"]
    );
    assert_eq!(g.with_dependencies(&["docs"]).unwrap(), ["docs"]);
    assert!(g.with_dependencies(&[]).unwrap().is_empty());
    let error = g.with_dependencies(&["web", "wroker"]).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#""wroker" is not a service in this project (did you mean "worker"?)"#
    );
}

#[test]
fn dependents_and_dependencies() {
    let g =
        graph(&[("web", &["api"]), ("api", &["db"]), ("worker", &["db"]), ("db", &[])]).unwrap();
    assert_eq!(g.dependents("db"), ["api", "worker", "web"]);
    assert_eq!(g.dependents("api"), ["web"]);
    assert!(g.dependents("web").is_empty());
    assert!(g.dependents("missing").is_empty());
    assert_eq!(g.dependencies("api"), ["db"]);
    assert!(g.dependencies("db").is_empty());
}

#[test]
fn duplicate_service_names_merge() {
    let g =
        graph(&[("a", &["b"]), ("b", &[]), ("d", &["b"]), ("a", &["c", "b"]), ("c", &[])]).unwrap();
    // `d` listing `b` between the two listings of `a` must not defeat the de-duplication.
    assert_eq!(g.dependencies("a"), ["b", "c"]);
    assert_eq!(g.start_layers(), vec![vec!["b", "c"], vec!["a", "d"]]);
}

#[test]
fn generated_500_services_layer_correctly() {
    // Service i depends on i-1, i-7 and i-31 where they exist (listed newest first, and
    // the file lists services in reverse so dependencies come later in the file).
    let names: Vec<String> = (0..500).map(|i| format!("svc{i}")).collect();
    let deps_of =
        |i: usize| -> Vec<usize> { [1, 7, 31].iter().filter_map(|&k| i.checked_sub(k)).collect() };
    let g = ServiceGraph::new(
        (0..500)
            .rev()
            .map(|i| (names[i].as_str(), deps_of(i).into_iter().map(|d| names[d].as_str()))),
    )
    .unwrap();
    let layers = g.start_layers();
    // The chain through i-1 forces one service per layer.
    assert_eq!(layers.len(), 500);
    let mut position = std::collections::HashMap::new();
    for (depth, layer) in layers.iter().enumerate() {
        for name in layer {
            position.insert(name.clone(), depth);
        }
    }
    for i in 0..500 {
        let depth = position[&names[i]];
        for d in deps_of(i) {
            assert!(position[&names[d]] < depth, "svc{d} must start before svc{i}");
        }
    }
    assert_eq!(g.dependents("svc0").len(), 499);
    assert_eq!(g.with_dependencies(&["svc499"]).unwrap().len(), 500);

    // Wide variant: 500 services over 10 tiers, each depending on a few in the tier below.
    let wide = ServiceGraph::new((0..500).map(|i| {
        let tier = i / 50;
        let deps: Vec<&str> = if tier == 0 {
            Vec::new()
        } else {
            (0..3).map(|k| names[(tier - 1) * 50 + (i + k * 17) % 50].as_str()).collect()
        };
        (names[i].as_str(), deps)
    }))
    .unwrap();
    let layers = wide.start_layers();
    assert_eq!(layers.len(), 10);
    for (tier, layer) in layers.iter().enumerate() {
        assert_eq!(layer, &names[tier * 50..(tier + 1) * 50]);
    }
}
