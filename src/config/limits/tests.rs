//! Reading `ulimits`, `privileged` and `deploy`, and the checks between them.

use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::config::{load_str, ConfigError, Project, Severity};

fn load(text: &str) -> Result<Project, ConfigError> {
    let dir = Path::new("/nonexistent/shop");
    load_str(&dir.join("devenv.yaml"), text, dir, HashMap::new(), None)
}

fn warnings(p: &Project) -> Vec<String> {
    p.warnings.iter().filter(|w| w.severity == Severity::Warning).map(|w| w.headline()).collect()
}

#[test]
fn ulimits_take_both_compose_forms_and_print_the_long_one() {
    let p = load(
        "services:\n  web:\n    image: nginx\n    ulimits:\n      nproc: 65535\n      nofile: {soft: 20000, hard: \"40000\"}\n      core: unlimited\n      memlock: -1\n",
    )
    .unwrap();
    let svc = &p.model.services["web"];
    let u = &svc.ulimits.0;
    assert_eq!(u["nproc"], Ulimit { soft: 65535, hard: 65535 });
    assert_eq!(u["nofile"], Ulimit { soft: 20000, hard: 40000 });
    assert_eq!(u["core"], Ulimit { soft: UNLIMITED, hard: UNLIMITED });
    assert_eq!(u["memlock"], Ulimit { soft: UNLIMITED, hard: UNLIMITED });
    assert_eq!(u.keys().collect::<Vec<_>>(), ["nproc", "nofile", "core", "memlock"]);
    assert_eq!(
        serde_json::to_value(&svc.ulimits).unwrap()["nproc"],
        serde_json::json!({"soft": 65535, "hard": 65535})
    );
    assert!(p.warnings.is_empty(), "{:?}", warnings(&p));
}

#[test]
fn unlimited_soft_under_a_finite_hard_is_refused() {
    let text =
        "services:\n  web:\n    image: nginx\n    ulimits:\n      nofile: {soft: -1, hard: 10}\n";
    let Err(ConfigError::Invalid(d)) = load(text) else { panic!("accepted") };
    assert_eq!(
        d[0].message,
        "ulimit `nofile`: the soft limit (unlimited) is above the hard limit (10)"
    );
    let text = "services:\n  web:\n    image: nginx\n    ulimits:\n      nofile: {soft: 10, hard: unlimited}\n";
    assert!(load(text).is_ok());
}

#[test]
fn privileged_is_a_supported_key() {
    let p = load("services:\n  web:\n    image: nginx\n    privileged: yes\n").unwrap();
    assert!(p.model.services["web"].privileged);
    assert!(p.unsupported.is_empty() && p.warnings.is_empty());
}

#[test]
fn deploy_limits_are_the_services_limits() {
    let p = load(
        "services:\n  web:\n    image: nginx\n    deploy:\n      resources:\n        limits:\n          cpus: \"0.5\"\n          memory: 1.5G\n          pids: \"20\"\n",
    )
    .unwrap();
    let svc = &p.model.services["web"];
    assert_eq!(
        svc.limits(),
        Limits { memory: Some(ByteSize(3 << 29)), cpus: Some(0.5), pids: Some(20) }
    );
    assert!(p.unsupported.is_empty() && p.warnings.is_empty(), "{:?}", warnings(&p));

    // Both spellings, equal: accepted (Compose accepts it too).
    let p = load(
        "services:\n  web:\n    image: nginx\n    mem_limit: 64m\n    deploy:\n      resources:\n        limits:\n          memory: 67108864\n",
    )
    .unwrap();
    assert_eq!(p.model.services["web"].limits().memory, Some(ByteSize(64 << 20)));
    assert_eq!(p.model.services["web"].limits().cpus, None);
}

#[test]
fn reservations_are_ignored_with_a_warning_and_other_deploy_keys_are_unsupported() {
    let p = load(
        "services:\n  web:\n    image: nginx\n    deploy:\n      replicas: 2\n      placement: {constraints: []}\n      resources:\n        reservations:\n          memory: 32m\n          devices: [{capabilities: [gpu]}]\n",
    )
    .unwrap();
    let keys: Vec<(&str, &str)> =
        p.unsupported.iter().map(|u| (u.key.as_str(), u.path.as_str())).collect();
    assert_eq!(
        keys,
        [
            ("deploy.replicas", "services.web.deploy.replicas"),
            ("deploy.placement", "services.web.deploy.placement")
        ]
    );
    assert!(p.unsupported[0].message().starts_with(
        "`deploy.replicas` is not supported by devenv yet (line 5); service \"web\" cannot start"
    ));
    let w = warnings(&p);
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(
        w[2].ends_with("8:9: services.web.deploy.resources.reservations: `deploy.resources.reservations` is ignored: devenv reserves no resources for a container"),
        "{w:?}"
    );
    // Only reservations: a warning, and the service can start.
    let p = load(
        "services:\n  web:\n    image: nginx\n    deploy:\n      resources:\n        reservations:\n          cpus: 0.25\n",
    )
    .unwrap();
    assert!(p.unsupported.is_empty());
    assert_eq!(warnings(&p).len(), 1);
}

#[test]
fn every_conflict_and_bad_deploy_cpus_is_reported() {
    let text = "services:\n  web:\n    image: nginx\n    mem_limit: 64m\n    pids_limit: 10\n    deploy:\n      resources:\n        limits:\n          memory: 65m\n          cpus: 0\n          pids: 11\n";
    let Err(ConfigError::Invalid(d)) = load(text) else { panic!("accepted") };
    let got: Vec<(&str, &str)> = d.iter().map(|d| (d.path.as_str(), d.message.as_str())).collect();
    assert_eq!(
        got,
        [
            (
                "services.web.deploy.resources.limits.memory",
                "mem_limit and deploy.resources.limits.memory must be equal if both set"
            ),
            (
                "services.web.deploy.resources.limits.cpus",
                "cpus must be a positive number of cores, like 0.5, not 0"
            ),
            (
                "services.web.deploy.resources.limits.pids",
                "pids_limit and deploy.resources.limits.pids must be equal if both set"
            ),
        ]
    );
}
