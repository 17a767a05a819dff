//! IPAM: one /24 per project out of a pool, and container addresses inside it.
//!
//! Leases live in `leases.json` under a directory the caller owns (one per DEVENV_HOME), read and
//! rewritten under an exclusive `flock` on a sibling lock file and replaced by an atomic rename, so
//! concurrent `devenv` processes of one home never hand out the same subnet or address. The host
//! side (addresses and routes already on the machine) is passed in by the caller, read from the
//! kernel with [`super::netlink::Netlink::host_networks`]: the kernel, not this file, says what is
//! taken outside devenv, which is also what keeps two homes apart.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::{NetworkError, Result};

/// The pool subnets come from unless the caller configures another.
pub const DEFAULT_POOL: &str = "10.89.0.0/16";

/// Where [`HostLock`] lives: one file for the whole host, not per DEVENV_HOME.
pub const HOST_LOCK: &str = "/run/devenv/network.lock";

/// Serializes the choice of subnets across DEVENV_HOMEs on one host. Leases keep one home's
/// projects apart; between homes only the kernel knows, so hold this from reading the host's
/// networks until the new bridge carries its gateway address, and the next reader sees it.
pub struct HostLock(#[allow(dead_code)] File);

impl HostLock {
    /// Blocks until the lock at `path` (normally [`HOST_LOCK`]) is ours; released on drop.
    pub fn acquire(path: &Path) -> Result<HostLock> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)
                .map_err(|e| NetworkError::io(format!("creating {}", dir.display()), e))?;
        }
        lock_file(path).map(HostLock)
    }
}

pub(crate) fn lock_file(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| NetworkError::io(format!("opening {}", path.display()), e))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| NetworkError::io(format!("locking {}", path.display()), e.into()))?;
    Ok(file)
}

/// A network already in use on the host, with a description used in overlap errors
/// (e.g. `route 10.0.0.0/8 dev eth1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNet {
    pub net: Ipv4Net,
    pub what: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Leases {
    #[serde(default)]
    projects: BTreeMap<String, ProjectLease>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ProjectLease {
    subnet: Ipv4Net,
    /// container name -> address
    #[serde(default)]
    addresses: BTreeMap<String, Ipv4Addr>,
}

/// The lease store of one DEVENV_HOME.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
    pool: Ipv4Net,
}

/// The gateway of a project subnet: its first host address, set on the bridge.
pub fn gateway(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl Ipam {
    /// A store under `dir` (created on first write) handing out /24s from `pool`.
    pub fn new(dir: impl Into<PathBuf>, pool: Ipv4Net) -> Self {
        Ipam { dir: dir.into(), pool: pool.trunc() }
    }

    pub fn pool(&self) -> Ipv4Net {
        self.pool
    }

    fn path(&self) -> PathBuf {
        self.dir.join("leases.json")
    }

    /// The subnet leased to `project`, if any.
    pub fn subnet_of(&self, project: &str) -> Result<Option<Ipv4Net>> {
        self.with_leases(|l| Ok(l.projects.get(project).map(|p| p.subnet)))
    }

    /// Leases a subnet to `project`, or returns the one it already has. `requested` is a subnet
    /// from the project file: it must not overlap the host or another project. Otherwise the first
    /// /24 of the pool that overlaps neither is chosen. Default routes in `host` are ignored: they
    /// overlap everything by definition.
    pub fn lease_subnet(
        &self,
        project: &str,
        requested: Option<Ipv4Net>,
        host: &[HostNet],
    ) -> Result<Ipv4Net> {
        let host: Vec<&HostNet> = host.iter().filter(|h| h.net.prefix_len() > 0).collect();
        let conflict = |leases: &Leases, subnet: Ipv4Net| -> Option<NetworkError> {
            if let Some(h) = host.iter().find(|h| overlaps(h.net, subnet)) {
                return Some(NetworkError::Overlap { subnet, what: format!("host {}", h.what) });
            }
            leases
                .projects
                .iter()
                .find(|(name, p)| name.as_str() != project && overlaps(p.subnet, subnet))
                .map(|(name, p)| NetworkError::Overlap {
                    subnet,
                    what: format!("subnet {} leased by project {name:?}", p.subnet),
                })
        };
        self.with_leases_mut(|leases| {
            if let Some(existing) = leases.projects.get(project) {
                if requested.is_none_or(|r| r.trunc() == existing.subnet) {
                    return Ok(existing.subnet);
                }
                // The project file changed its subnet: the old lease is dropped if the new
                // one is free, the caller recreates the network.
            }
            let subnet = match requested {
                Some(r) => {
                    let r = r.trunc();
                    if r.prefix_len() > 30 {
                        return Err(NetworkError::SubnetFull { subnet: r });
                    }
                    if let Some(e) = conflict(leases, r) {
                        return Err(e);
                    }
                    r
                }
                None => self
                    .pool
                    .subnets(24.max(self.pool.prefix_len()))
                    .map_err(|_| NetworkError::PoolExhausted { pool: self.pool })?
                    .find(|s| conflict(leases, *s).is_none())
                    .ok_or(NetworkError::PoolExhausted { pool: self.pool })?,
            };
            leases
                .projects
                .insert(project.to_string(), ProjectLease { subnet, addresses: BTreeMap::new() });
            Ok(subnet)
        })
    }

    /// An address for `container` in the project's subnet: the one it has, or the lowest free one
    /// from .2 upward (.1 is the gateway, the last is broadcast).
    pub fn allocate(&self, project: &str, container: &str) -> Result<Ipv4Addr> {
        self.with_leases_mut(|leases| {
            let lease = leases
                .projects
                .get_mut(project)
                .ok_or_else(|| NetworkError::NoLease { project: project.to_string() })?;
            if let Some(a) = lease.addresses.get(container) {
                return Ok(*a);
            }
            let gw = gateway(lease.subnet);
            let free = lease
                .subnet
                .hosts()
                .filter(|a| *a != gw)
                .find(|a| !lease.addresses.values().any(|b| b == a))
                .ok_or(NetworkError::SubnetFull { subnet: lease.subnet })?;
            lease.addresses.insert(container.to_string(), free);
            Ok(free)
        })
    }

    /// Every address leased in the project's subnet, by container (service) name.
    pub fn addresses(&self, project: &str) -> Result<BTreeMap<String, Ipv4Addr>> {
        self.with_leases(|l| {
            Ok(l.projects.get(project).map(|p| p.addresses.clone()).unwrap_or_default())
        })
    }

    /// Frees the address of `container`; releasing what is not leased is not an error
    /// (teardown after a crash may repeat it).
    pub fn release(&self, project: &str, container: &str) -> Result<()> {
        self.with_leases_mut(|leases| {
            if let Some(lease) = leases.projects.get_mut(project) {
                lease.addresses.remove(container);
            }
            Ok(())
        })
    }

    /// Frees the project's subnet and every address in it.
    pub fn release_project(&self, project: &str) -> Result<()> {
        self.with_leases_mut(|leases| {
            leases.projects.remove(project);
            Ok(())
        })
    }

    fn lock(&self) -> Result<File> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| NetworkError::io(format!("creating {}", self.dir.display()), e))?;
        lock_file(&self.dir.join("leases.lock"))
    }

    fn read(&self) -> Result<Leases> {
        let path = self.path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| NetworkError::LeaseFile { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Leases::default()),
            Err(e) => Err(NetworkError::io(format!("reading {}", path.display()), e)),
        }
    }

    fn with_leases<T>(&self, f: impl FnOnce(&Leases) -> Result<T>) -> Result<T> {
        let _lock = self.lock()?;
        f(&self.read()?)
    }

    fn with_leases_mut<T>(&self, f: impl FnOnce(&mut Leases) -> Result<T>) -> Result<T> {
        let _lock = self.lock()?;
        let mut leases = self.read()?;
        let out = f(&mut leases)?;
        write_atomic(&self.path(), &leases)?;
        Ok(out)
    }
}

/// Writes beside the target and renames over it, so a reader (or a crash) sees the old file or
/// the new one, never half of one.
fn write_atomic(path: &Path, leases: &Leases) -> Result<()> {
    let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
    let json = serde_json::to_vec_pretty(leases)
        .map_err(|source| NetworkError::LeaseFile { path: path.to_path_buf(), source })?;
    let ctx = |e| NetworkError::io(format!("writing {}", tmp.display()), e);
    let mut f = File::create(&tmp).map_err(ctx)?;
    f.write_all(&json).map_err(ctx)?;
    f.sync_all().map_err(ctx)?;
    fs::rename(&tmp, path).map_err(|e| {
        NetworkError::io(format!("renaming {} over {}", tmp.display(), path.display()), e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn host(s: &str) -> HostNet {
        HostNet { net: net(s), what: format!("route {s}") }
    }

    fn ipam(dir: &tempfile::TempDir) -> Ipam {
        Ipam::new(dir.path().join("net"), net(DEFAULT_POOL))
    }

    #[test]
    fn skips_host_networks_and_other_projects() {
        let d = tempfile::tempdir().unwrap();
        let ipam = ipam(&d);
        let hosts = [host("0.0.0.0/0"), host("10.89.0.0/23"), host("10.89.2.7/32")];
        assert_eq!(ipam.lease_subnet("a", None, &hosts).unwrap(), net("10.89.3.0/24"));
        assert_eq!(ipam.lease_subnet("b", None, &hosts).unwrap(), net("10.89.4.0/24"));
        // Idempotent: the same project gets its lease back.
        assert_eq!(ipam.lease_subnet("a", None, &hosts).unwrap(), net("10.89.3.0/24"));
        // Another Ipam on the same directory (another process) sees the leases.
        let again = Ipam::new(d.path().join("net"), net(DEFAULT_POOL));
        assert_eq!(again.subnet_of("b").unwrap(), Some(net("10.89.4.0/24")));
        ipam.release_project("a").unwrap();
        assert_eq!(ipam.lease_subnet("c", None, &hosts).unwrap(), net("10.89.3.0/24"));
    }

    #[test]
    fn requested_subnet_checked_against_host_and_projects() {
        let d = tempfile::tempdir().unwrap();
        let ipam = ipam(&d);
        let hosts = [host("192.168.1.0/24")];
        let err = ipam.lease_subnet("a", Some(net("192.168.0.0/16")), &hosts).unwrap_err();
        assert_eq!(err.to_string(), "subnet 192.168.0.0/16 overlaps host route 192.168.1.0/24");
        assert_eq!(
            ipam.lease_subnet("a", Some(net("172.30.5.9/24")), &hosts).unwrap(),
            net("172.30.5.0/24")
        );
        let err = ipam.lease_subnet("b", Some(net("172.30.0.0/16")), &hosts).unwrap_err();
        assert!(err.to_string().contains("leased by project \"a\""), "{err}");
    }

    #[test]
    fn pool_exhausted() {
        let d = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(d.path(), net("10.90.0.0/23"));
        ipam.lease_subnet("a", None, &[]).unwrap();
        ipam.lease_subnet("b", None, &[]).unwrap();
        let err = ipam.lease_subnet("c", None, &[]).unwrap_err();
        assert!(matches!(err, NetworkError::PoolExhausted { .. }), "{err}");
        assert!(err.to_string().contains("10.90.0.0/23"));
    }

    #[test]
    fn addresses_from_two_up_released_and_reused() {
        let d = tempfile::tempdir().unwrap();
        let ipam = ipam(&d);
        assert!(matches!(ipam.allocate("p", "web"), Err(NetworkError::NoLease { .. })));
        let subnet = ipam.lease_subnet("p", None, &[]).unwrap();
        assert_eq!(gateway(subnet), Ipv4Addr::new(10, 89, 0, 1));
        assert_eq!(ipam.allocate("p", "web").unwrap(), Ipv4Addr::new(10, 89, 0, 2));
        assert_eq!(ipam.allocate("p", "db").unwrap(), Ipv4Addr::new(10, 89, 0, 3));
        assert_eq!(ipam.allocate("p", "web").unwrap(), Ipv4Addr::new(10, 89, 0, 2));
        ipam.release("p", "web").unwrap();
        ipam.release("p", "web").unwrap();
        assert_eq!(ipam.allocate("p", "cache").unwrap(), Ipv4Addr::new(10, 89, 0, 2));
    }

    #[test]
    fn small_subnet_fills_up() {
        let d = tempfile::tempdir().unwrap();
        let ipam = ipam(&d);
        ipam.lease_subnet("p", Some(net("172.31.9.0/30")), &[]).unwrap();
        assert_eq!(ipam.allocate("p", "a").unwrap(), Ipv4Addr::new(172, 31, 9, 2));
        assert!(matches!(ipam.allocate("p", "b"), Err(NetworkError::SubnetFull { .. })));
    }

    #[test]
    fn concurrent_leases_are_distinct() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let ipam = Ipam::new(dir.clone(), net(DEFAULT_POOL));
                std::thread::spawn(move || ipam.lease_subnet(&format!("p{i}"), None, &[]).unwrap())
            })
            .collect();
        let mut got: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 8);
    }
}
