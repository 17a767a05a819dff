//! Giving the exec'd command the container's capabilities rather than the caller's (host root's).
//!
//! The container's init shows them in `/proc/<pid>/status`; its bounding set (`CapBnd`) is what
//! the runtime left it, Docker's default set unless the service adds or drops some. The command
//! process drops every capability outside that set from its own bounding set. On `execve`, a
//! root process gets `inheritable | bounding` as its permitted and effective sets
//! (capabilities(7), "Capabilities and execution of programs by root"), so with the inheritable
//! set made the container's too (kept within the bounding set) and the ambient set cleared, a
//! root command ends up with the container's capabilities, and a non-root one with none, as in
//! the container. No-new-privileges is copied as well.
//!
//! Not copied: the container's seccomp filter and LSM profile (a filter cannot be read back from
//! another process without ptrace); the runtime does not install either yet.

use std::io;

/// `struct __user_cap_header_struct` and `__user_cap_data_struct` of `<linux/capability.h>`;
/// version 3 uses two data structs (capabilities 0-31 and 32-63).
#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const VERSION_3: u32 = 0x2008_0522;

/// Restricts the calling process (about to exec) to the bounding set `bounding`, with inheritable
/// set `inheritable & bounding`, no ambient capabilities, and no-new-privileges if `nnp`.
pub(super) fn restrict(bounding: u64, inheritable: u64, nnp: bool) -> io::Result<()> {
    for cap in 0..64u32 {
        if bounding & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            match io::Error::last_os_error().raw_os_error() {
                // Past the last capability this kernel knows (/proc/sys/kernel/cap_last_cap).
                Some(libc::EINVAL) => break,
                _ => return Err(io::Error::last_os_error()),
            }
        }
    }

    let mut header = Header { version: VERSION_3, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: header and a two-element data array, as version 3 requires.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut Header, data.as_mut_ptr()) }
        != 0
    {
        return Err(io::Error::last_os_error());
    }
    let inh = inheritable & bounding;
    data[0].inheritable = inh as u32;
    data[1].inheritable = (inh >> 32) as u32;
    // SAFETY: as above.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }

    // SAFETY: prctl with integer arguments. EINVAL: a kernel before 4.3, without ambient sets.
    let r = unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0)
    };
    if r != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
        return Err(io::Error::last_os_error());
    }

    if nnp {
        nix::sys::prctl::set_no_new_privs().map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    }
    Ok(())
}
