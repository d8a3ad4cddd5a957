//! Opening a data directory: its identity, its lock, and paths that are not a usable
//! directory.

use std::fs;
use std::io;

use crate::common::{ID, Op, Ops, entries, open};
use zeroraft_storage::{FileStorage, Identity, Recovered, Storage, StorageError, WalOptions};

fn no_create() -> WalOptions {
    WalOptions {
        create: false,
        ..WalOptions::default()
    }
}

#[test]
fn a_missing_directory_is_an_error_unless_created() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    match FileStorage::open(&dir, ID, no_create()).unwrap_err() {
        StorageError::Missing { path } => assert_eq!(path, dir),
        other => panic!("{other}"),
    }
    assert!(!dir.exists());

    let mut storage = FileStorage::open(&dir, ID, crate::common::options(1 << 20)).unwrap();
    assert_eq!(storage.dir(), dir);
    assert_eq!(storage.recover().unwrap(), Recovered::default());
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["00000000000000000001.wal", "IDENTITY", "LOCK"]);
    let identity = fs::read_to_string(dir.join("IDENTITY")).unwrap();
    assert!(
        identity.starts_with(
            "zeroraft data directory\nformat 2\ncluster 7\nnode 2\nmembers 0\ncrc32c "
        ),
        "{identity}"
    );
    drop(storage);
    // Once created, it opens without `create`.
    FileStorage::open(&dir, ID, no_create()).unwrap();
}

#[test]
fn an_empty_directory_is_uninitialized_unless_created_and_records_its_members() {
    // An empty directory (a mount point whose volume did not mount, a wiped disk) is not a new
    // node's: without `create` it is refused, and nothing is written into it.
    let dir = tempfile::tempdir().unwrap();
    match FileStorage::open(dir.path(), ID, no_create()).unwrap_err() {
        StorageError::Uninitialized { path } => assert_eq!(path, dir.path()),
        other => panic!("{other}"),
    }
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
    match FileStorage::read_identity(dir.path()).unwrap_err() {
        StorageError::Uninitialized { path } => assert_eq!(path, dir.path()),
        other => panic!("{other}"),
    }

    // Initialized on purpose, with the cluster's members.
    let members = vec!["10.0.0.1:7000".to_owned(), "10.0.0.2:7000".to_owned()];
    let options = WalOptions {
        create: true,
        members: Some(members.clone()),
        ..WalOptions::default()
    };
    let storage = FileStorage::open(dir.path(), ID, options).unwrap();
    assert_eq!(storage.members(), Some(&members[..]));
    drop(storage);
    let storage = FileStorage::open(dir.path(), ID, no_create()).unwrap();
    assert_eq!(storage.members(), Some(&members[..]), "read back on open");
    drop(storage);
    assert_eq!(
        FileStorage::read_identity(dir.path()).unwrap(),
        (ID, Some(members))
    );

    // Members that cannot be recorded are refused before anything is written.
    let other = tempfile::tempdir().unwrap();
    let options = WalOptions {
        create: true,
        members: Some(vec!["a b".to_owned()]),
        ..WalOptions::default()
    };
    assert!(matches!(
        FileStorage::open(other.path(), ID, options).unwrap_err(),
        StorageError::Unreadable { .. }
    ));
    assert_eq!(fs::read_dir(other.path()).unwrap().count(), 0);
}

#[test]
fn create_makes_the_directory_but_not_its_parents() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("a").join("data");
    let err = FileStorage::open(&dir, ID, crate::common::options(1 << 20)).unwrap_err();
    match &err {
        StorageError::Io { source, path, .. } => {
            assert_eq!(source.kind(), io::ErrorKind::NotFound, "{err}");
            assert_eq!(*path, dir);
        }
        other => panic!("{other}"),
    }
    assert!(!parent.path().join("a").exists());
}

#[test]
fn a_regular_file_is_not_a_data_directory() {
    let parent = tempfile::tempdir().unwrap();
    let file = parent.path().join("data");
    fs::write(&file, "not a directory").unwrap();
    for create in [false, true] {
        let options = WalOptions {
            create,
            ..WalOptions::default()
        };
        let err = FileStorage::open(&file, ID, options).unwrap_err();
        match &err {
            StorageError::Io { source, path, .. } => {
                assert_eq!(source.kind(), io::ErrorKind::NotADirectory, "{err}");
                assert_eq!(*path, file);
            }
            other => panic!("create {create}: {other}"),
        }
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), "not a directory");
}

#[test]
fn a_directory_is_locked_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), 1 << 20).unwrap();
    match open(dir.path(), 1 << 20).unwrap_err() {
        StorageError::Locked { path } => assert_eq!(path, dir.path().join("LOCK")),
        other => panic!("{other}"),
    }
    drop(first);
    let _second = open(dir.path(), 1 << 20).unwrap();
}

#[test]
fn another_identity_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = open(dir.path(), 1 << 20).unwrap();
    storage
        .persist(&Op::append(0, entries(1, 1, 1, 8)).update())
        .unwrap();
    drop(storage);
    let others = [
        Identity {
            cluster: 7,
            node: 3,
        },
        Identity {
            cluster: 8,
            node: 2,
        },
    ];
    for other in others {
        match FileStorage::open(dir.path(), other, no_create()).unwrap_err() {
            StorageError::WrongIdentity {
                path,
                expected,
                found,
            } => {
                assert_eq!(path, dir.path());
                assert_eq!(expected, other);
                assert_eq!(found, ID);
            }
            e => panic!("{other}: {e}"),
        }
    }
    // The right one still opens, with its entry.
    let mut storage = FileStorage::open(dir.path(), ID, no_create()).unwrap();
    assert_eq!(storage.recover().unwrap().entries.len(), 1);
}

#[test]
fn a_malformed_identity_is_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), 1 << 20).unwrap());
    let path = dir.path().join("IDENTITY");
    let good = fs::read_to_string(&path).unwrap();
    let cases = [
        ("garbage", "hello\n".to_owned()),
        (
            "another node, checksum not updated",
            good.replace("node 2", "node 3"),
        ),
        ("a future format", good.replace("format 2", "format 9")),
        ("empty", String::new()),
    ];
    for (case, text) in cases {
        fs::write(&path, text).unwrap();
        match open(dir.path(), 1 << 20).unwrap_err() {
            StorageError::Unreadable { path: p, reason } => {
                assert_eq!(p, path, "{case}: {reason}");
            }
            other => panic!("{case}: {other}"),
        }
    }
    // Without an identity, a directory that holds segments is not adopted.
    fs::remove_file(&path).unwrap();
    match open(dir.path(), 1 << 20).unwrap_err() {
        StorageError::Unreadable { reason, .. } => assert!(reason.contains("no identity")),
        other => panic!("{other}"),
    }
    assert!(!path.exists());
}

#[test]
fn a_ballast_file_is_made_when_initialized() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    let options = WalOptions {
        create: true,
        ..WalOptions::default()
    };
    let storage = FileStorage::open(&dir, ID, options).unwrap();
    assert!(!storage.disk_full());
    let ballast = dir.join("BALLAST");
    assert_eq!(
        fs::metadata(&ballast).unwrap().len(),
        4 << 20,
        "4 MiB by default"
    );
    let bytes = fs::read(&ballast).unwrap();
    assert!(
        bytes.iter().filter(|&&b| b == 0).count() < bytes.len() / 64,
        "not zeros, which a compressing file system would store in no room"
    );
    drop(storage);
    // Cut short (a crash while it was written): made whole again.
    fs::write(&ballast, b"short").unwrap();
    drop(FileStorage::open(&dir, ID, no_create()).unwrap());
    assert_eq!(fs::metadata(&ballast).unwrap().len(), 4 << 20);
}
