//! Whether the kernel's OOM killer killed a process of a container, read from the container's
//! memory cgroup: `oom_kill N` in `memory.oom_control` on cgroup v1 (kernel 4.13 and later),
//! in `memory.events` on cgroup v2.
//!
//! The counter lives as long as the cgroup, and the runtimes remove a container's cgroup only
//! when the container is deleted ([`super::Runtime::delete`]), not when its init exits: read it
//! after the exit and before the delete. A restarted container gets a new cgroup, so the count
//! is that of the container's last run.

use std::path::{Path, PathBuf};

/// Whether any process of the container in `cgroups_path` ([`super::cgroups_path`]) was
/// OOM-killed. False when the cgroup is gone or its counter unreadable (a kernel before 4.13 on
/// cgroup v1 has no `oom_kill` line): devenv then says nothing rather than guess.
pub fn oom_killed(cgroups_path: &str) -> bool {
    oom_kills(cgroups_path).is_some_and(|n| n > 0)
}

/// The container's count of OOM kills, from whichever hierarchy holds its memory controller.
pub fn oom_kills(cgroups_path: &str) -> Option<u64> {
    oom_kills_under(Path::new("/sys/fs/cgroup"), cgroups_path)
}

fn oom_kills_under(root: &Path, cgroups_path: &str) -> Option<u64> {
    let relative = cgroups_path.trim_start_matches('/');
    // v1 (legacy and hybrid): the memory controller has a hierarchy of its own. v2 (unified): one
    // tree at the root. On a hybrid host the v2 tree (`unified/`) has no memory controller, so
    // the v1 file is the one that exists there.
    let candidates: [(PathBuf, &str); 2] = [
        (root.join("memory").join(relative).join("memory.oom_control"), "oom_kill"),
        (root.join(relative).join("memory.events"), "oom_kill"),
    ];
    candidates.iter().find_map(|(file, key)| counter(&std::fs::read_to_string(file).ok()?, key))
}

/// The value of `key` in a flat keyed cgroup file (`key value` lines).
fn counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v1_oom_control_and_v2_memory_events() {
        let root = tempfile::tempdir().unwrap();
        let v1 = root.path().join("memory/devenv/p/p-a");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(
            v1.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(oom_kills_under(root.path(), "/devenv/p/p-a"), Some(2));

        let v2 = root.path().join("devenv/p/p-b");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(
            v2.join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 0\noom_group_kill 0\n",
        )
        .unwrap();
        assert_eq!(oom_kills_under(root.path(), "/devenv/p/p-b"), Some(0));

        // Gone (deleted) or a kernel without the counter: unknown, not a kill.
        assert_eq!(oom_kills_under(root.path(), "/devenv/p/p-c"), None);
        std::fs::write(v1.join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\n").unwrap();
        assert_eq!(oom_kills_under(root.path(), "/devenv/p/p-a"), None);
    }
}
