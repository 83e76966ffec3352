//! A full disk and a read-only filesystem, on small tmpfs mounts. These
//! tests need root and a kernel that lets them mount; elsewhere they print
//! why they did not run.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{SESSIONS, TAKEOVERS, bare_command, code, generated_sessions, is_root, stderr};

/// A tmpfs mounted on a fresh directory, unmounted when dropped.
struct Mount {
    point: PathBuf,
    _parent: tempfile::TempDir,
}

impl Mount {
    fn new(size: &str) -> Option<Mount> {
        if !is_root() {
            eprintln!("skipping: mounting a tmpfs needs root");
            return None;
        }
        let parent = tempfile::tempdir().unwrap();
        let point = parent.path().join("mnt");
        fs::create_dir(&point).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&point)
            .status();
        if !status.is_ok_and(|status| status.success()) {
            eprintln!("skipping: cannot mount a tmpfs here");
            return None;
        }
        Some(Mount {
            point,
            _parent: parent,
        })
    }

    fn remount_read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.point)
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn path(&self) -> &Path {
        &self.point
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.point).status();
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn full_disk_exits_74_and_keeps_files() {
    let Some(mount) = Mount::new("1m") else {
        return;
    };
    let sessions = generated_sessions(450, "full");
    assert!(sessions.len() > 600 * 1024, "{} bytes", sessions.len());
    fs::write(mount.path().join(SESSIONS), &sessions).unwrap();
    fs::write(mount.path().join(TAKEOVERS), "{}").unwrap();
    let earlier = mount.path().join("session_history_20261203_000000.json");
    fs::write(&earlier, br#"{"old": {"status": "draft"}}"#).unwrap();

    // Where the archive is a hard link it takes no space (see the next test),
    // so this one makes the reset copy.
    let output = bare_command()
        .arg("--data-dir")
        .arg(mount.path())
        .args(["reset", "--copy"])
        .output()
        .unwrap();
    assert_eq!(code(&output), 74, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("No space left on device"),
        "{}",
        stderr(&output)
    );
    assert_eq!(fs::read(mount.path().join(SESSIONS)).unwrap(), sessions);
    assert_eq!(
        fs::read(&earlier).unwrap(),
        br#"{"old": {"status": "draft"}}"#
    );
    let left: Vec<String> = names(mount.path())
        .into_iter()
        .filter(|name| {
            name.starts_with('.')
                || (name.starts_with("session_history_") && !name.contains("20261203"))
        })
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn full_disk_resets_with_linked_archive() {
    let Some(mount) = Mount::new("1m") else {
        return;
    };
    let sessions = generated_sessions(450, "full");
    fs::write(mount.path().join(SESSIONS), &sessions).unwrap();
    fs::write(mount.path().join(TAKEOVERS), "{}").unwrap();
    let inode = fs::metadata(mount.path().join(SESSIONS)).unwrap().ino();

    let output = bare_command()
        .arg("--data-dir")
        .arg(mount.path())
        .args(["-v", "reset"])
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("linked") && stderr(&output).contains("under a read lease"),
        "{}",
        stderr(&output)
    );
    let archives: Vec<String> = names(mount.path())
        .into_iter()
        .filter(|name| name.starts_with("session_history_"))
        .collect();
    assert_eq!(archives.len(), 1, "{archives:?}");
    let archive = mount.path().join(&archives[0]);
    assert_eq!(fs::read(&archive).unwrap(), sessions);
    assert_eq!(fs::metadata(&archive).unwrap().ino(), inode);
    assert_eq!(fs::metadata(&archive).unwrap().nlink(), 1);
    assert_eq!(fs::read(mount.path().join(SESSIONS)).unwrap(), b"{}");
}

#[test]
fn read_only_directory_exits_74_and_keeps_files() {
    let Some(mount) = Mount::new("1m") else {
        return;
    };
    let sessions = br#"{"a": {"status": "draft"}}"#;
    fs::write(mount.path().join(SESSIONS), sessions).unwrap();
    mount.remount_read_only();

    for args in [&["reset"][..], &["reset", "--dry-run"]] {
        let output = bare_command()
            .arg("--data-dir")
            .arg(mount.path())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(code(&output), 74, "{args:?}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("Read-only file system"),
            "{}",
            stderr(&output)
        );
    }
    assert_eq!(fs::read(mount.path().join(SESSIONS)).unwrap(), sessions);

    let output = bare_command()
        .arg("--data-dir")
        .arg(mount.path())
        .args(["--json", "status"])
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "status on a read-only directory");
}
