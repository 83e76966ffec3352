//! Archives made as copy-on-write clones, on an XFS filesystem with reflink
//! in a loop device. These tests need root, `mkfs.xfs` and a kernel that
//! lets them mount; elsewhere they print why they did not run.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{DataDir, SESSIONS, TAKEOVERS, code, generated_sessions, is_root, stderr};
use crate::late_writes::{LATE, ORIGINAL, check_kept, reset_with_write_in_window};

/// An XFS filesystem with reflink, in a sparse image file mounted through a
/// loop device, unmounted when dropped.
struct XfsMount {
    point: PathBuf,
    _parent: tempfile::TempDir,
}

impl XfsMount {
    fn new() -> Option<XfsMount> {
        if !is_root() {
            eprintln!("skipping: mounting a loop device needs root");
            return None;
        }
        let parent = tempfile::tempdir().unwrap();
        let image = parent.path().join("xfs.img");
        // xfsprogs rejects filesystems smaller than 300 MB; the file is sparse.
        fs::File::create(&image)
            .unwrap()
            .set_len(512 << 20)
            .unwrap();

        let formatted = Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(&image)
            .status();
        if !formatted.is_ok_and(|status| status.success()) {
            eprintln!("skipping: mkfs.xfs is missing or failed");
            return None;
        }

        let point = parent.path().join("mnt");
        fs::create_dir(&point).unwrap();
        let mounted = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&point)
            .status();
        if !mounted.is_ok_and(|status| status.success()) {
            eprintln!("skipping: cannot mount an XFS image here");
            return None;
        }
        Some(XfsMount {
            point,
            _parent: parent,
        })
    }

    /// Returns a data directory on this filesystem, which must be dropped first.
    fn data_dir(&self) -> DataDir {
        DataDir {
            temp: tempfile::Builder::new()
                .prefix("order-reset-test")
                .tempdir_in(self.path())
                .unwrap(),
        }
    }

    fn path(&self) -> &Path {
        &self.point
    }
}

impl Drop for XfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.point).status();
    }
}

#[test]
fn reset_clones_archives_on_xfs() {
    let Some(mount) = XfsMount::new() else {
        return;
    };
    let dir = mount.data_dir();
    let sessions = generated_sessions(3_000, "clone");
    dir.write(SESSIONS, &sessions);
    dir.write(TAKEOVERS, br#"{"t1": {"status": "pending"}}"#);

    let output = dir.run(&["-v", "reset"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let log = stderr(&output);
    assert!(
        log.contains("scan_sessions.json into its archive copy") && log.contains("cloned"),
        "{log}"
    );
    assert_eq!(dir.read(SESSIONS), b"{}");
    let archives = dir.names_with("session_history_");
    assert_eq!(archives.len(), 1, "{:?}", dir.names());
    assert_eq!(dir.read(&archives[0]), sessions);
    let journal = dir.journal();
    let record = &journal[0]["archives"][0];
    assert_eq!(record["file"], serde_json::json!(archives[0]));
    assert_eq!(record["entries"], serde_json::json!(3_000));
    assert_eq!(
        record["sha256"],
        serde_json::json!(crate::common::sha256_file(&dir.file(&archives[0])))
    );
    let verify = dir.run(&["history", "verify"]);
    assert_eq!(code(&verify), 0, "{}", stderr(&verify));
}

#[test]
fn clone_keeps_archive_when_written_in_place_late() {
    let Some(mount) = XfsMount::new() else {
        return;
    };
    let dir = mount.data_dir();
    dir.write(SESSIONS, ORIGINAL);
    // The reset clones on this filesystem, as the test above checks in its
    // log. The clone shares its extents with the active file until the writer
    // rewrites that file in place, which must leave the archive as it was.
    let report =
        reset_with_write_in_window(&dir, |dir| fs::write(dir.file(SESSIONS), LATE).unwrap());
    check_kept(&dir, &report);
}

#[test]
fn invalid_file_leaves_no_clone_on_xfs() {
    let Some(mount) = XfsMount::new() else {
        return;
    };
    let dir = mount.data_dir();
    let invalid = br#"{"a": {"status": "draft"},"#;
    dir.write(SESSIONS, invalid);

    let output = dir.run(&["reset"]);
    assert_eq!(code(&output), 65, "{}", stderr(&output));
    assert_eq!(dir.read(SESSIONS), invalid);
    assert_eq!(dir.names_with("session_history_"), Vec::<String>::new());
    assert!(dir.names_with(".").is_empty(), "{:?}", dir.names());
}
