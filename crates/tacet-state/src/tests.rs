//! The same checks on both backends: a local directory and an object store (in memory here; the e2e
//! tests run the S3 client against moto).

use std::sync::Arc;

use super::*;

fn objects() -> Arc<Objects> {
    let memory = Arc::new(object_store::memory::InMemory::new());
    Arc::new(Objects::new(memory, "_tacet/state", "mem://bucket").unwrap())
}

/// Runs `check` on a directory, an object store, and an object store whose objects are sealed.
fn both(check: impl Fn(Dir)) {
    let tmp = tempfile::tempdir().unwrap();
    check(Dir::from(tmp.path()));
    check(Dir::new(objects()));
    check(Dir::new(Arc::new(Sealed::new(objects(), &[7; 32]))));
}

#[test]
fn create_writes_once_and_replace_only_over_what_was_read() {
    both(|root| {
        let keys = root.sub("keys").sub("salts/t");
        assert!(keys.read("d.key").unwrap().is_none());
        assert!(keys.create("d.key", b"one").unwrap());
        assert!(!keys.create("d.key", b"two").unwrap(), "{keys:?}");
        let got = keys.get("d.key").unwrap().unwrap();
        assert_eq!(got.bytes, b"one");
        assert!(keys.replace("d.key", b"three", &got.version).unwrap());
        assert!(
            !keys.replace("d.key", b"four", &got.version).unwrap(),
            "a stale version must lose"
        );
        assert_eq!(keys.read("d.key").unwrap().unwrap(), b"three");
        assert!(!keys.replace("gone", b"x", &got.version).unwrap());
        keys.put("d.key", b"five").unwrap();
        assert_eq!(keys.read("d.key").unwrap().unwrap(), b"five");
        assert!(keys.delete("d.key").unwrap());
        assert!(!keys.delete("d.key").unwrap());
        assert!(!keys.exists("d.key").unwrap());
    });
}

#[test]
fn lists_names_and_directories_and_deletes_a_tree() {
    both(|root| {
        let keys = root.sub("keys");
        keys.create("a.key", b"a").unwrap();
        keys.create("salts/t/1.key", b"1").unwrap();
        keys.create("salts/u/2.key", b"2").unwrap();
        let mut names: Vec<_> = keys
            .list()
            .unwrap()
            .into_iter()
            .map(|l| (l.name, l.is_dir))
            .collect();
        names.sort();
        assert_eq!(names, [("a.key".into(), false), ("salts".into(), true)]);
        assert!(keys.sub("nothing").list().unwrap().is_empty());
        assert_eq!(keys.sub("salts").delete_all().unwrap(), 2);
        assert!(keys.sub("salts").list().unwrap().is_empty());
        assert_eq!(keys.read("a.key").unwrap().unwrap(), b"a");
        assert_eq!(keys.sub("nothing").delete_all().unwrap(), 0);
    });
}

#[test]
fn appends_see_the_last_line_and_update_retries() {
    both(|root| {
        let log = root.sub("audit");
        for i in 0..3 {
            log.append_with("log.jsonl", &mut |last| {
                assert_eq!(
                    last.map(str::to_owned),
                    (i > 0).then(|| format!("{}", i - 1))
                );
                Ok(i.to_string())
            })
            .unwrap();
        }
        assert_eq!(log.read("log.jsonl").unwrap().unwrap(), b"0\n1\n2\n");
        let out = log
            .update("n", &mut |old| {
                let n: u32 = old.map_or(0, |b| std::str::from_utf8(b).unwrap().parse().unwrap());
                Ok(Some((n + 1).to_string().into_bytes()))
            })
            .unwrap();
        assert_eq!(out.unwrap(), b"1");
        let kept = log.update("n", &mut |_| Ok(None)).unwrap();
        assert_eq!(kept.unwrap(), b"1");
    });
}

#[test]
fn racing_writers_agree_on_one_value_and_one_chain() {
    both(|root| {
        let threads = 4;
        let rounds = 50;
        std::thread::scope(|s| {
            for t in 0..threads {
                let root = root.clone();
                s.spawn(move || {
                    for r in 0..rounds {
                        root.create(&format!("salt/{r}"), format!("{t}").as_bytes())
                            .unwrap();
                        root.append_with("chain", &mut |last| {
                            let n: u64 = last.map_or(0, |l| l.parse().unwrap());
                            Ok((n + 1).to_string())
                        })
                        .unwrap();
                        root.update("counter", &mut |old| {
                            let n: u64 =
                                old.map_or(0, |b| std::str::from_utf8(b).unwrap().parse().unwrap());
                            Ok(Some((n + 1).to_string().into_bytes()))
                        })
                        .unwrap();
                    }
                });
            }
        });
        let chain = String::from_utf8(root.read("chain").unwrap().unwrap()).unwrap();
        let expected: Vec<String> = (1..=threads * rounds).map(|n| n.to_string()).collect();
        assert_eq!(chain.lines().collect::<Vec<_>>(), expected, "{root:?}");
        assert_eq!(
            root.read("counter").unwrap().unwrap(),
            (threads * rounds).to_string().into_bytes()
        );
        assert_eq!(root.sub("salt").list().unwrap().len(), rounds);
    });
}

#[test]
fn local_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = Dir::from(tmp.path());
    dir.create("keys/salts/t/d.key", b"k").unwrap();
    dir.append("keys/log.jsonl", "x").unwrap();
    for (path, mode) in [
        ("keys/salts/t/d.key", 0o600),
        ("keys/log.jsonl", 0o600),
        ("keys/salts/t", 0o700),
    ] {
        let m = std::fs::metadata(tmp.path().join(path)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, mode, "{path}");
    }
    assert_eq!(
        dir.sub("keys").place("x"),
        tmp.path().join("keys/x").display().to_string()
    );
}

#[test]
fn errors_name_the_place() {
    let memory = Arc::new(object_store::memory::InMemory::new());
    let dir = Dir::new(Arc::new(
        Objects::new(memory, "_tacet/state", "s3://bucket/p").unwrap(),
    ));
    assert_eq!(
        dir.sub("keys").place("a.key"),
        "s3://bucket/p/_tacet/state/keys/a.key"
    );
    dir.put("text", &[0xff, 0xfe]).unwrap();
    let e = dir.append("text", "x").unwrap_err();
    assert!(
        e.to_string()
            .contains("s3://bucket/p/_tacet/state/text: not UTF-8"),
        "{e}"
    );
}

#[test]
fn sealed_objects_hold_no_plain_bytes_and_open_only_with_their_key_and_name() {
    let inner = objects();
    let sealed = Dir::new(Arc::new(Sealed::new(inner.clone(), &[7; 32])));
    let secret = b"a subject key of thirty-two byte";
    sealed.create("keys/subject/t.v1.key", secret).unwrap();
    sealed
        .append("keys/lifecycle.jsonl", "{\"action\":\"created\"}")
        .unwrap();
    let raw = Dir::new(inner.clone());
    let stored = raw.read("keys/subject/t.v1.key").unwrap().unwrap();
    assert!(stored.starts_with(b"TSS1"));
    assert!(!stored.windows(8).any(|w| w == &secret[..8]));
    let log = raw.read("keys/lifecycle.jsonl").unwrap().unwrap();
    assert!(!log.windows(6).any(|w| w == b"action"));
    assert_eq!(
        sealed.read("keys/subject/t.v1.key").unwrap().unwrap(),
        secret
    );
    // Another key: refused, saying what to do.
    let other = Dir::new(Arc::new(Sealed::new(inner.clone(), &[8; 32])));
    let e = other.read("keys/subject/t.v1.key").unwrap_err().to_string();
    assert!(
        e.contains("mem://bucket/_tacet/state/keys/subject/t.v1.key"),
        "{e}"
    );
    assert!(e.contains("every node must have the same one"), "{e}");
    // Moved to another name (another tenant's key): refused.
    raw.put("keys/subject/u.v1.key", &stored).unwrap();
    assert!(sealed.read("keys/subject/u.v1.key").is_err());
    // Written in plain by something else: refused.
    raw.put("keys/plain", b"x").unwrap();
    let e = sealed.read("keys/plain").unwrap_err().to_string();
    assert!(e.contains("not sealed with the state key"), "{e}");
}

#[test]
fn a_lease_is_held_by_one_until_released_or_expired() {
    both(|root| {
        let leases = root.sub("leases");
        let ttl = std::time::Duration::from_secs(60);
        let one = leases.acquire("retention", "node-1", ttl).unwrap().unwrap();
        let held = leases
            .acquire("retention", "node-2", ttl)
            .unwrap()
            .unwrap_err();
        assert_eq!(held.holder, "node-1");
        assert!(one.renew().unwrap());
        one.release().unwrap();
        let two = leases.acquire("retention", "node-2", ttl).unwrap().unwrap();
        // Expired: taken over.
        let short = std::time::Duration::from_millis(1);
        two.release().unwrap();
        let _lapsed = leases
            .acquire("retention", "node-3", short)
            .unwrap()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let four = leases.acquire("retention", "node-4", ttl).unwrap().unwrap();
        assert_eq!(four.holder(), "node-4");
        assert!(
            !_lapsed.renew().unwrap(),
            "a lapsed lease taken by another is lost"
        );
    });
}

#[test]
fn a_log_in_an_object_store_grows_in_segments_and_reads_whole() {
    both(|root| {
        std::thread::scope(|s| {
            for _ in 0..4 {
                let root = root.clone();
                s.spawn(move || {
                    for _ in 0..25 {
                        root.log_append_in("chain", 7, &mut |last| {
                            let n: u64 = last.map_or(0, |l| l.parse().unwrap());
                            Ok((n + 1).to_string())
                        })
                        .unwrap();
                    }
                });
            }
        });
        let text = String::from_utf8(root.log_read("chain").unwrap().unwrap()).unwrap();
        let expected: Vec<String> = (1..=100).map(|n| n.to_string()).collect();
        assert_eq!(text.lines().collect::<Vec<_>>(), expected, "{root:?}");
        let segments = root.sub("chain.d").list().unwrap().len();
        if root.local_path().is_some() {
            assert_eq!(segments, 0, "one file on local disk");
        } else {
            assert_eq!(segments, 15, "100 lines, 7 per segment");
        }
        assert!(root.log_head("chain").unwrap().is_some());
        assert!(root.log_delete("chain").unwrap());
        assert!(root.log_read("chain").unwrap().is_none());
    });
}

#[test]
fn a_directory_copies_into_an_object_store_once_and_again_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let from = Dir::from(tmp.path());
    from.create("keys/salts/t/d.key", b"salt").unwrap();
    for i in 0..2500 {
        from.log_push("audit/audit.jsonl", &i.to_string()).unwrap();
    }
    let to = Dir::new(Arc::new(Sealed::new(objects(), &[3; 32])));
    let mut seen = Vec::new();
    let copied = copy_tree(&from, &to, &mut |n| seen.push(n.to_owned())).unwrap();
    assert_eq!(seen, ["audit/audit.jsonl", "keys/salts/t/d.key"]);
    assert_eq!((copied.objects, copied.logs, copied.unchanged), (2, 1, 0));
    assert_eq!(to.read("keys/salts/t/d.key").unwrap().unwrap(), b"salt");
    assert_eq!(
        to.log_read("audit/audit.jsonl").unwrap(),
        from.read("audit/audit.jsonl").unwrap()
    );
    assert_eq!(to.sub("audit/audit.jsonl.d").list().unwrap().len(), 3);
    // The log goes on where the copy ended.
    to.log_append("audit/audit.jsonl", &mut |last| {
        assert_eq!(last, Some("2499"));
        Ok("2500".into())
    })
    .unwrap();
    // Again: the same keys are left; a different one is refused by name.
    let again = copy_tree(&from, &to, &mut |_| {}).unwrap();
    assert_eq!(again.objects, 0);
    from.put("keys/salts/t/d.key", b"other").unwrap();
    let e = copy_tree(&from, &to, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("keys/salts/t/d.key holds something else"), "{e}");
}
