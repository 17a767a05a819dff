use super::*;

#[test]
fn clean_paths() {
    let c = |s: &str| {
        clean(s.as_bytes(), s)
            .map(|v| v.iter().map(|c| String::from_utf8(c.clone()).unwrap()).collect::<Vec<_>>())
    };
    assert_eq!(c("/etc//passwd").unwrap(), ["etc", "passwd"]);
    assert_eq!(c("./a/./b/").unwrap(), ["a", "b"]);
    assert!(c("./").unwrap().is_empty());
    assert!(c("a/../../b").unwrap_err().to_string().contains(".."));
}

/// The fallback walk (kernels without openat2) refuses the same hostile layers as openat2.
#[test]
fn hostile_layers_are_refused_with_either_resolver() {
    if !std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
    {
        eprintln!("skipping: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"secret").unwrap();
    let out = outside.to_str().unwrap();
    let cases: &[&[(&str, EntryType, &str)]] = &[
        &[("evil", EntryType::Symlink, out), ("evil/pwned", EntryType::Regular, "")],
        &[("evil", EntryType::Symlink, out), ("evil/a/b/c", EntryType::Regular, "")],
        &[("up", EntryType::Symlink, ".."), ("up/pwned", EntryType::Regular, "")],
        &[("o", EntryType::Symlink, out), ("x", EntryType::Link, "o/secret")],
        &[("w", EntryType::Symlink, out), ("w/.wh.secret", EntryType::Regular, "")],
        &[("a/../../pwned", EntryType::Regular, "")],
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, link) in case.iter() {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_entry_type(*kind);
            h.set_size(if *kind == EntryType::Regular { 1 } else { 0 });
            h.set_mode(0o644);
            h.set_cksum();
            let data: &[u8] = if *kind == EntryType::Regular { b"x" } else { b"" };
            b.append(&h, data).unwrap();
        }
        let layer = b.into_inner().unwrap();
        for openat2 in [true, false] {
            let dest = tmp.path().join(format!("l{i}-{openat2}"));
            std::fs::create_dir(&dest).unwrap();
            let err = unpack_with(&layer[..], &dest, openat2).unwrap_err();
            assert!(
                matches!(err, ImageError::UnsafeEntry { .. }),
                "case {i} openat2={openat2}: {err}"
            );
        }
    }
    let names: Vec<_> =
        std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["secret"]);
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"secret");
}

#[test]
fn sniffing() {
    assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
    assert_eq!(Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
    assert_eq!(Compression::sniff(b"etc/"), Compression::None);
    assert_eq!(Compression::sniff(b""), Compression::None);
}
