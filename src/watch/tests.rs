//! WatchSet: compiling rules, the roots to watch, and planning batches, on real temporary
//! directories (whether a path exists or is a directory is part of the answer).

use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use tempfile::TempDir;

use super::set::dedup_roots;
use super::*;
use crate::config::model::WatchAction;
use crate::config::{load_str, LoadOptions, Project};

fn load(dir: &Path, text: &str) -> Project {
    load_str(&dir.join("devenv.yaml"), text, dir, Default::default(), None).unwrap()
}

/// A project in a fresh temporary directory, and its watch set for all its services.
fn setup(text: &str, files: &[&str]) -> (TempDir, Project, WatchSet) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    for f in files {
        let p = dir.join(f);
        if f.ends_with('/') {
            fs::create_dir_all(&p).unwrap();
        } else {
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, "A=1\n").unwrap();
        }
    }
    let p = load(&dir, text);
    let all: Vec<String> = p.model.services.keys().cloned().collect();
    let set = WatchSet::new(&p, &all, config_inputs(&p, &LoadOptions::default())).unwrap();
    (tmp, p, set)
}

fn op(host: &Path, container: &str) -> SyncOp {
    SyncOp { host: host.to_path_buf(), container: container.into() }
}

fn new_err(p: &Project) -> String {
    let all: Vec<String> = p.model.services.keys().cloned().collect();
    match WatchSet::new(p, &all, vec![]) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

const SRC_SYNC: &str = "services:\n  web:\n    image: x\n    watch:\n      - {path: ./src, action: sync, target: /app}\n";

#[test]
fn bad_rules_are_refused_naming_service_and_rule() {
    let (_t, mut p, _) = setup(SRC_SYNC, &["src/"]);
    fn rule(p: &mut Project) -> &mut crate::config::model::WatchRule {
        &mut p.model.services["web"].watch[0]
    }
    rule(&mut p).ignore.0 = vec!["ok".into(), "[z-a]".into()];
    let e = new_err(&p);
    assert!(e.starts_with("services.web.watch[0]: invalid pattern \"[z-a]\": "), "{e}");
    rule(&mut p).ignore.0.clear();
    rule(&mut p).include.0 = vec!["{unclosed".into()];
    assert!(new_err(&p).contains("invalid pattern \"{unclosed\""));
    rule(&mut p).include.0.clear();

    // The loader refuses these already; WatchSet does not rely on it.
    rule(&mut p).action = WatchAction::Rebuild;
    assert!(new_err(&p).contains("`rebuild` needs `build`, which devenv does not support"));
    rule(&mut p).action = WatchAction::SyncRestart;
    rule(&mut p).target = None;
    assert!(new_err(&p).contains("watch[0]: a sync rule needs `target`"));
    rule(&mut p).target = Some("/app".into());
    rule(&mut p).action = WatchAction::SyncExec;
    assert!(new_err(&p).contains("needs `exec: {command: ...}`"));

    rule(&mut p).action = WatchAction::Signal;
    rule(&mut p).signal = Some("SIGNOPE".into());
    assert!(new_err(&p).contains("unknown signal \"SIGNOPE\""), "{}", new_err(&p));
    let signal_of = |p: &Project| {
        let set = WatchSet::new(p, &["web".into()], vec![]).unwrap();
        set.plan(&[p.dir.join("src/a")]).services["web"].signals.clone()
    };
    for (written, want) in [
        (Some("SIGUSR1"), Signal::SIGUSR1),
        (Some("HUP"), Signal::SIGHUP),
        (Some("usr2"), Signal::SIGUSR2),
        (Some("15"), Signal::SIGTERM),
        (None, Signal::SIGHUP),
    ] {
        rule(&mut p).signal = written.map(String::from);
        assert_eq!(signal_of(&p), [want], "{written:?}");
    }
}

#[test]
fn rules_of_other_services_are_left_out() {
    let text = "services:\n  web:\n    image: x\n    watch:\n      - {path: ./a, action: restart}\n  db:\n    image: x\n    watch:\n      - {path: ./b, action: restart}\n";
    let (_t, p, _) = setup(text, &["a/", "b/"]);
    let set = WatchSet::new(&p, &["db".into(), "nope".into()], vec![]).unwrap();
    let d = set.describe();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].service.as_str(), d[0].path.clone()), ("db", p.dir.join("b")));
    assert!(set.plan(&[p.dir.join("a/x")]).services.is_empty());
}

#[test]
fn roots_watch_dirs_recursively_and_parents_of_files_and_missing_paths() {
    let text = "services:\n  web:\n    image: x\n    env_file: conf/web.env\n    watch:\n      - {path: ./src, action: sync, target: /app}\n      - {path: ./conf/app.json, action: restart}\n      - {path: ./later/deep/dir, action: restart}\n      - {path: ./src/lib, action: restart}\n";
    let (_t, p, set) = setup(text, &["src/lib/", "conf/app.json", "conf/web.env", "later/"]);
    let d = &p.dir;
    assert_eq!(
        set.roots(),
        [
            (d.clone(), false),
            (d.join("conf"), false),
            (d.join("later"), false),
            (d.join("src"), true)
        ]
    );
    // Once the missing directory appears, it is watched itself.
    fs::create_dir_all(d.join("later/deep/dir")).unwrap();
    assert!(set.roots().contains(&(d.join("later/deep/dir"), true)));
    assert!(!set.roots().contains(&(d.join("later"), false)));
}

#[test]
fn roots_are_deduplicated() {
    let r = |p: &str, rec| (PathBuf::from(p), rec);
    let roots = vec![
        r("/c/d", false),
        r("/a", false),
        r("/a/b", true),
        r("/a", true),
        r("/c", false),
        r("/c/d", false),
        r("/a/b/c", false),
    ];
    assert_eq!(dedup_roots(roots), [r("/a", true), r("/c", false), r("/c/d", false)]);
}

#[test]
fn a_directory_rule_syncs_what_is_under_it_to_the_target() {
    let (_t, p, set) = setup(SRC_SYNC, &["src/a.py", "src/sub/b.py", "src/newdir/"]);
    let src = p.dir.join("src");
    let batch = [src.clone(), src.join("a.py"), src.join("sub/b.py"), src.join("newdir")];
    let plan = set.plan(&batch);
    assert!(!plan.reconcile);
    let web = &plan.services["web"];
    assert_eq!(
        web.sync,
        [
            op(&src.join("a.py"), "/app/a.py"),
            op(&src.join("sub/b.py"), "/app/sub/b.py"),
            op(&src.join("newdir"), "/app/newdir"),
        ]
    );
    assert_eq!((web.rules.clone(), web.restart), (vec![0], false));
    // The directory itself changing (its mtime) is nothing to do.
    assert!(set.plan(std::slice::from_ref(&src)).services.is_empty());
    // Outside the rule, or merely sharing a prefix, is not under it.
    assert!(set.plan(&[p.dir.join("srcx/a.py"), p.dir.join("a.py")]).services.is_empty());
}

#[test]
fn deletions_and_new_trees_are_planned_once() {
    let (_t, p, set) = setup(SRC_SYNC, &["src/new/f.py", "src/keep/"]);
    let src = p.dir.join("src");
    let batch = [
        src.join("new/f.py"),
        src.join("new"),
        src.join("gone/x.py"),
        src.join("gone"),
        src.join("keep/deleted.py"),
        src.join("keep"),
        src.join("keep/deleted.py"),
        src.join("old.py"),
    ];
    let web = &set.plan(&batch).services["web"];
    // `new` is copied whole and `gone` removed whole; a deletion in a directory that stays
    // (`keep`, whose own change copies it, merging) is its own op, once.
    assert_eq!(
        web.sync,
        [
            op(&src.join("new"), "/app/new"),
            op(&src.join("gone"), "/app/gone"),
            op(&src.join("keep/deleted.py"), "/app/keep/deleted.py"),
            op(&src.join("keep"), "/app/keep"),
            op(&src.join("old.py"), "/app/old.py"),
        ]
    );
}

#[test]
fn editor_temporaries_and_git_are_always_ignored() {
    let (_t, p, set) = setup(SRC_SYNC, &["src/"]);
    let src = p.dir.join("src");
    for name in [
        ".git/index",
        ".git",
        "sub/.git/HEAD",
        ".a.py.swp",
        ".a.py.swx",
        ".a.py.swo",
        "a.py~",
        "4913",
        ".#a.py",
        "#a.py#",
        "x.tmp",
        ".DS_Store",
        "a.py___jb_tmp___",
        "a.py___jb_old___",
    ] {
        assert!(set.plan(&[src.join(name)]).services.is_empty(), "{name}");
    }
    for name in [".gitignore", "a.swp", "#a.py", "git/x", "4913.txt"] {
        assert!(!set.plan(&[src.join(name)]).services.is_empty(), "{name}");
    }
}

#[test]
fn ignore_and_include_patterns_are_gitignore_relative_to_the_rule_path() {
    let text = "services:\n  web:\n    image: x\n    watch:\n      - path: ./src\n        action: sync\n        target: /app\n        ignore: [node_modules/, \"*.log\", \"!keep.log\", /top.txt]\n      - path: ./py\n        action: sync\n        target: /py\n        include: [\"*.py\", static/]\n";
    let (_t, p, set) = setup(text, &["src/", "py/pkg/", "py/static/"]);
    let fires = |rel: &str| !set.plan(&[p.dir.join(rel)]).services.is_empty();
    assert!(!fires("src/node_modules/x/y.js"));
    assert!(!fires("src/a/debug.log"));
    assert!(fires("src/keep.log"));
    assert!(!fires("src/top.txt"));
    assert!(fires("src/sub/top.txt"));
    assert!(fires("src/a.js"));

    assert!(fires("py/a.py"));
    assert!(fires("py/pkg/m.py"));
    assert!(!fires("py/README.md"));
    // A directory is not a `*.py`; `static/` includes the directory and what is in it.
    assert!(!fires("py/pkg"));
    assert!(fires("py/static"));
    assert!(fires("py/static/site.css"));
}

#[test]
fn a_file_rule_fires_for_its_file_only() {
    let text = "services:\n  web:\n    image: x\n    watch:\n      - {path: ./app.json, action: sync+restart, target: /etc/app/config.json}\n";
    let (_t, p, set) = setup(text, &["app.json", "other.json"]);
    let plan = set.plan(&[p.dir.join("app.json"), p.dir.join("other.json")]);
    let web = &plan.services["web"];
    assert_eq!(web.sync, [op(&p.dir.join("app.json"), "/etc/app/config.json")]);
    assert!(web.restart);
    assert!(set.plan(&[p.dir.join("other.json")]).services.is_empty());
    // Deleted (or mid-rename): still the rule's own path, a deletion in the container.
    fs::remove_file(p.dir.join("app.json")).unwrap();
    assert_eq!(set.plan(&[p.dir.join("app.json")]).services["web"].sync.len(), 1);
}

#[test]
fn each_service_appears_once_with_all_that_fired() {
    let text = "services:\n  web:\n    image: x\n    watch:\n      - {path: ./src, action: sync+exec, target: /app, exec: {command: make}}\n      - {path: ./lib, action: sync+exec, target: /lib, exec: {command: make}}\n      - {path: ./conf, action: signal, signal: SIGHUP}\n      - {path: ./conf2, action: signal, signal: HUP}\n      - {path: ./conf3, action: signal, signal: SIGUSR1}\n  db:\n    image: x\n    watch:\n      - {path: ./sql, action: restart}\n";
    let (_t, p, set) = setup(text, &["src/", "lib/", "conf/", "conf2/", "conf3/", "sql/"]);
    let d = &p.dir;
    let batch: Vec<PathBuf> = ["src/a", "src/b", "lib/c", "conf/x", "conf2/y", "conf3/z", "sql/q"]
        .map(|f| d.join(f))
        .into();
    let plan = set.plan(&batch);
    assert_eq!(plan.services.keys().collect::<Vec<_>>(), ["db", "web"]);
    let web = &plan.services["web"];
    assert_eq!(web.rules, [0, 1, 2, 3, 4]);
    assert_eq!(web.sync.len(), 3);
    assert_eq!(web.exec.len(), 1, "the same command runs once");
    assert_eq!(web.signals, [Signal::SIGHUP, Signal::SIGUSR1]);
    assert!(!web.restart);
    assert!(plan.services["db"].restart);
}

#[test]
fn a_restart_makes_signals_moot() {
    let text = "services:\n  web:\n    image: x\n    watch:\n      - {path: ./conf, action: signal}\n      - {path: ./bin, action: restart}\n";
    let (_t, p, set) = setup(text, &["conf/", "bin/"]);
    let both = set.plan(&[p.dir.join("conf/a"), p.dir.join("bin/b")]);
    let web = &both.services["web"];
    assert!(web.restart && web.signals.is_empty());
    assert_eq!(web.rules, [0, 1]);
    let conf = &set.plan(&[p.dir.join("conf/a")]).services["web"];
    assert_eq!((conf.restart, conf.signals.clone()), (false, vec![Signal::SIGHUP]));
}

#[test]
fn a_path_bind_mounted_at_the_target_is_not_synced() {
    let text = "services:\n  web:\n    image: x\n    volumes: [\"./src:/app\"]\n    watch:\n      - {path: ./src, action: sync+restart, target: /app/}\n      - {path: ./src/static, action: sync+exec, target: /app/static, exec: {command: reload}}\n      - {path: ./src, action: sync, target: /srv}\n";
    let (_t, p, set) = setup(text, &["src/static/"]);
    let plan = set.plan(&[p.dir.join("src/static/site.css")]);
    let web = &plan.services["web"];
    assert_eq!(web.sync_skipped, [0, 1]);
    assert_eq!(web.sync, [op(&p.dir.join("src/static/site.css"), "/srv/static/site.css")]);
    assert!(web.restart, "the restart part still applies");
    assert_eq!(web.exec.len(), 1, "the exec part still applies");
}

#[test]
fn config_inputs_are_matched_by_exact_path() {
    let text = "services:\n  web:\n    image: x\n    env_file: [web.env]\n  db:\n    image: x\n    env_file: [{path: conf/db.env, required: false}]\n";
    let (_t, p, set) = setup(text, &["web.env"]);
    let d = &p.dir;
    let want = [d.join("devenv.yaml"), d.join(".env"), d.join("web.env"), d.join("conf/db.env")];
    assert_eq!(set.config_inputs(), want);
    for f in &want {
        let plan = set.plan(&[d.join("unrelated.txt"), f.clone()]);
        assert!(plan.reconcile && plan.services.is_empty(), "{f:?}");
    }
    assert!(!set.plan(&[d.join("devenv.yaml.swp"), d.join(".env.local")]).reconcile);
    assert_eq!(set.roots(), [(d.clone(), false)]);

    let opts = LoadOptions {
        env_file: Some("custom.env".into()),
        cwd: "/else".into(),
        ..Default::default()
    };
    assert_eq!(config_inputs(&p, &opts)[1], Path::new("/else/custom.env"));
}

#[test]
fn paused_rules_do_not_fire_until_resumed() {
    let text = "services:\n  web:\n    image: x\n    watch:\n      - {path: ./src, action: sync+restart, target: /app}\n      - {path: ./src, action: signal}\n";
    let (_t, p, mut set) = setup(text, &["src/"]);
    let batch = [p.dir.join("src/a")];
    set.pause("web", 0);
    set.pause("nope", 3);
    let web = &set.plan(&batch).services["web"];
    assert_eq!((web.rules.clone(), web.restart, web.sync.len()), (vec![1], false, 0));
    let d = set.describe();
    let shown: Vec<(&str, bool)> = d.iter().map(|r| (r.action, r.paused)).collect();
    assert_eq!(shown, [("sync+restart", true), ("signal", false)]);
    assert_eq!(d[0].target.as_deref(), Some("/app"));
    set.pause("web", 1);
    assert!(set.plan(&batch).services.is_empty());
    set.resume_all();
    assert_eq!(set.plan(&batch).services["web"].rules, [0, 1]);
}
