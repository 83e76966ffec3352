//! `kill -9` at random moments during resets of a large file: after each
//! kill every byte is still in the active file or an archive, and the next
//! reset completes the run without a second archive.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{
    DataDir, SESSIONS, TAKEOVERS, code, count_from_env, generated_sessions, stderr,
};

/// Small deterministic generator, so that a failing delay can be replayed
/// from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn kill_at_random_moments_loses_nothing() {
    let runs = count_from_env("ORDER_RESET_KILL_RUNS", 200);
    let budget = Duration::from_secs(count_from_env("ORDER_RESET_KILL_SECONDS", 120) as u64);
    let sessions = generated_sessions(6000, "kill");
    let takeovers = br#"{"t1": {"request_id": "t1", "status": "pending"}}"#.to_vec();

    // Calibrate: the kill delays spread over one whole reset.
    let dir = DataDir::new();
    dir.write(SESSIONS, &sessions);
    let started = Instant::now();
    assert_eq!(code(&dir.run(&["-q", "reset"])), 0);
    let span = started.elapsed().as_micros() as u64 + 1;

    let seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rng = Rng(seed);
    let started = Instant::now();
    let (mut done, mut killed, mut finished_first) = (0, 0, 0);
    while done < runs && started.elapsed() < budget {
        let dir = DataDir::new();
        dir.write(SESSIONS, &sessions);
        dir.write(TAKEOVERS, &takeovers);
        let delay = Duration::from_micros(rng.next() % span);

        let mut child = dir
            .command(&["-q", "reset"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        match child.try_wait().unwrap() {
            Some(status) => {
                assert!(status.success(), "run {done}: reset failed before the kill");
                finished_first += 1;
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                killed += 1;
            }
        }
        let context = format!("run {done}, seed {seed:#x}, delay {delay:?}");

        for (name, prefix, original) in [
            (SESSIONS, "session_history_", &sessions),
            (TAKEOVERS, "takeover_history_", &takeovers),
        ] {
            let active = dir.read(name);
            assert!(
                &active == original || active == b"{}",
                "{context}: {name} partially written"
            );
            let archived = dir
                .names_with(prefix)
                .iter()
                .filter(|archive| &dir.read(archive) == original)
                .count();
            assert!(
                &active == original || archived == 1,
                "{context}: {name} lost"
            );
        }

        let output = dir.run(&["-q", "reset"]);
        assert_eq!(code(&output), 0, "{context}: {}", stderr(&output));
        for (name, prefix, original) in [
            (SESSIONS, "session_history_", &sessions),
            (TAKEOVERS, "takeover_history_", &takeovers),
        ] {
            assert_eq!(dir.read(name), b"{}", "{context}");
            let archives = dir.names_with(prefix);
            assert_eq!(
                archives.len(),
                1,
                "{context}: duplicate archives {archives:?}"
            );
            assert_eq!(&dir.read(&archives[0]), original, "{context}");
        }
        assert!(
            dir.names_with(".").is_empty(),
            "{context}: {:?}",
            dir.names()
        );
        assert!(!dir.file("order-reset.pending").exists(), "{context}");
        done += 1;
    }
    eprintln!(
        "kill test: {done} runs, {killed} killed mid-run, {finished_first} finished first, {} sessions each, 0 lost",
        6000
    );
    assert!(
        done >= runs.min(20),
        "only {done} runs fitted in the time budget"
    );
    assert!(killed > 0, "no run was killed");
}
