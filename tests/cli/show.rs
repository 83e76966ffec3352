//! Tests of `show`.

use std::fs;

use serde_json::{Value, json};

use crate::common::{
    DataDir, SESSIONS, TAKEOVERS, code, real_fixtures, sample_data, stderr, stdout,
};

const LEGACY: &str = "session_history_20260301_000000.json";

/// Resets `dir` at `now` with `sessions` as the active sessions file.
fn reset_at(dir: &DataDir, now: &str, sessions: &[u8], extra_args: &[&str]) {
    dir.write(SESSIONS, sessions);
    let mut args = vec!["reset"];
    args.extend_from_slice(extra_args);
    let output = dir
        .command(&args)
        .env("ORDER_RESET_NOW", now)
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
}

/// Returns a data directory reset at 2026-03-03 00:00 UTC from the sample data.
fn sample_reset() -> DataDir {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(TAKEOVERS), TAKEOVERS);
    let sessions = fs::read(sample_data().join(SESSIONS)).unwrap();
    reset_at(&dir, "2026-03-03T00:00:00+00:00", &sessions, &[]);
    dir
}

fn size_of(path: &std::path::Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

fn row(
    id: &str,
    order: &str,
    invoice: &str,
    status: &str,
    user: &str,
    started: &str,
    modified: &str,
) -> Value {
    json!({
        "session_id": id,
        "order_number": order,
        "invoice_id": invoice,
        "status": status,
        "user": user,
        "started_at": started,
        "last_modified_at": modified,
    })
}

/// Returns the sessions of `examples/data/scan_sessions.json` as `show` prints them, in file order.
fn sample_rows() -> Value {
    json!([
        row(
            "0f6c1f0e-2b8a-4c43-9d51-4b0c1d7e8a01",
            "3000500101",
            "2000100101",
            "draft",
            "admin",
            "2026-03-02T08:14:03.120311",
            "2026-03-02T08:14:03.121004"
        ),
        row(
            "1a7d2e4f-5c6b-4d8e-8f90-2b3c4d5e6f02",
            "3000500102",
            "2000100102",
            "approved",
            "admin",
            "2026-03-02T08:20:44.500120",
            "2026-03-02T08:21:10.002215"
        ),
        row(
            "2b8e3f50-6d7c-4e9f-a0b1-3c4d5e6f7a03",
            "3000500103",
            "2000100103",
            "in_progress",
            "picker02",
            "2026-03-02T09:02:17.333901",
            "2026-03-02T09:05:40.118900"
        ),
        row(
            "3c9f4061-7e8d-4fa0-b1c2-4d5e6f7a8b04",
            "3000500104",
            "2000100104",
            "completed",
            "packer01",
            "2026-03-02T10:11:52.018273",
            "2026-03-02T10:30:05.771120"
        ),
        row(
            "4da05172-8f9e-40b1-c2d3-5e6f7a8b9c05",
            "3000500105",
            "2000100105",
            "cancelled",
            "picker01",
            "2026-03-02T11:40:09.900001",
            "2026-03-02T11:42:30.004400"
        ),
    ])
}

#[test]
fn show_journaled_reset() {
    let dir = sample_reset();
    let (exit, report) = dir.run_json(&["history", "show", "20260303_000000"]);
    assert_eq!(exit, 0);

    assert_eq!(report["schema_version"], json!(1));
    assert_eq!(report["run_id"], json!("20260303_000000"));
    assert_eq!(
        report["reset_at"],
        json!("2026-03-03T00:00:00.000000+00:00")
    );
    assert_eq!(report["origin"], json!("journal"));
    assert_eq!(report["total_sessions"], json!(5));
    assert_eq!(
        report["sessions_by_status"],
        json!({"approved": 1, "cancelled": 1, "completed": 1, "draft": 1, "in_progress": 1})
    );
    assert_eq!(report["takeover_requests"], json!(1));

    assert_eq!(
        report["archives"],
        json!([
            {
                "file": "session_history_20260303_000000.json",
                "bytes": size_of(&sample_data().join(SESSIONS)),
            },
            {
                "file": "takeover_history_20260303_000000.json",
                "bytes": size_of(&sample_data().join(TAKEOVERS)),
            },
        ])
    );
    assert_eq!(report["sessions"], sample_rows());
}

#[test]
fn show_journaled_reset_human() {
    let dir = sample_reset();
    let output = dir.run(&["history", "show", "20260303_000000"]);
    assert_eq!(code(&output), 0, "stderr: {}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "\
Reset 20260303_000000 at 2026-03-03T00:00:00.000000+00:00
5 sessions (approved 1, cancelled 1, completed 1, draft 1, in_progress 1), 1 takeover request
    session_history_20260303_000000.json  5.2 KiB
    takeover_history_20260303_000000.json  332 B

SESSION ID                            ORDER       STATUS       USER      STARTED      MODIFIED
0f6c1f0e-2b8a-4c43-9d51-4b0c1d7e8a01  3000500101  draft        admin     03-02 08:14  03-02 08:14
1a7d2e4f-5c6b-4d8e-8f90-2b3c4d5e6f02  3000500102  approved     admin     03-02 08:20  03-02 08:21
2b8e3f50-6d7c-4e9f-a0b1-3c4d5e6f7a03  3000500103  in_progress  picker02  03-02 09:02  03-02 09:05
3c9f4061-7e8d-4fa0-b1c2-4d5e6f7a8b04  3000500104  completed    packer01  03-02 10:11  03-02 10:30
4da05172-8f9e-40b1-c2d3-5e6f7a8b9c05  3000500105  cancelled    picker01  03-02 11:40  03-02 11:42
"
    );
    let widest = stdout(&output)
        .lines()
        .map(|line| line.chars().count())
        .max();
    assert!(widest <= Some(100), "widest line: {widest:?}");
}

#[test]
fn show_archive_name_as_id() {
    let dir = sample_reset();
    let (_, by_run_id) = dir.run_json(&["history", "show", "20260303_000000"]);
    for id in [
        "session_history_20260303_000000.json",
        "takeover_history_20260303_000000.json",
    ] {
        let (exit, report) = dir.run_json(&["history", "show", id]);
        assert_eq!(exit, 0, "{id}");
        assert_eq!(report, by_run_id, "{id}");
    }
}

#[test]
fn show_legacy_archive() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(LEGACY), LEGACY);
    let (exit, report) = dir.run_json(&["history", "show", "20260301_000000"]);
    assert_eq!(exit, 0);
    assert_eq!(report["run_id"], json!("20260301_000000"));
    assert_eq!(report["origin"], json!("archive"));
    assert_eq!(report["reset_at"], json!("2026-03-01T00:00:00+00:00"));
    assert_eq!(report["total_sessions"], json!(1));
    assert_eq!(report["sessions_by_status"], json!({"approved": 1}));
    assert_eq!(report["takeover_requests"], json!(null));
    assert_eq!(
        report["archives"],
        json!([{"file": LEGACY, "bytes": size_of(&sample_data().join(LEGACY))}])
    );
    assert_eq!(
        report["sessions"],
        json!([row(
            "5eb16283-9a0f-41c2-93e4-6f7a8b9c0d06",
            "3000500099",
            "2000100099",
            "approved",
            "admin",
            "2026-03-02T08:20:44.500120",
            "2026-03-02T08:21:10.002215"
        )])
    );

    let (exit, by_name) = dir.run_json(&["history", "show", LEGACY]);
    assert_eq!(exit, 0);
    assert_eq!(by_name, report);

    let output = dir.run(&["history", "show", LEGACY]);
    assert_eq!(
        stdout(&output),
        "\
Reset 20260301_000000 at 2026-03-01T00:00:00+00:00 [not in the journal]
1 session (approved 1), takeover requests not counted
    session_history_20260301_000000.json  1.2 KiB

SESSION ID                            ORDER       STATUS    USER   STARTED      MODIFIED
5eb16283-9a0f-41c2-93e4-6f7a8b9c0d06  3000500099  approved  admin  03-02 08:20  03-02 08:21
"
    );
}

#[test]
fn show_real_legacy_archives() {
    let Some(fixtures) = real_fixtures() else {
        return;
    };
    let dir = DataDir::new();
    for name in [
        "session_history_20251205_120337.json",
        "session_history_20251205_120402.json",
    ] {
        fs::copy(fixtures.join(name), dir.file(name)).unwrap();
    }

    let (exit, report) = dir.run_json(&["history", "show", "20251205_120337"]);
    assert_eq!(exit, 0);
    assert_eq!(report["origin"], json!("archive"));
    assert_eq!(report["reset_at"], json!("2025-12-05T12:03:37+00:00"));
    assert_eq!(report["total_sessions"], json!(4));
    assert_eq!(
        report["sessions_by_status"],
        json!({"approved": 2, "draft": 2})
    );
    assert_eq!(
        report["sessions"],
        json!([
            row(
                "7b863f9f-df77-4d7b-aa63-13042105889d",
                "1045327745",
                "1003210333",
                "approved",
                "superadmin",
                "2025-12-04T12:35:14.125529",
                "2025-12-04T12:35:14.126823"
            ),
            row(
                "d5a042cf-d802-4e36-acbe-690e82febd6f",
                "1045327744",
                "1003210332",
                "approved",
                "superadmin",
                "2025-12-04T12:36:01.188112",
                "2025-12-04T12:36:01.188830"
            ),
            row(
                "4c320675-0319-44fb-b50d-2b6ee19659fa",
                "1045327745",
                "1003210333",
                "draft",
                "superadmin",
                "2025-12-04T12:56:52.357046",
                "2025-12-04T15:07:39.994621"
            ),
            row(
                "18494f47-5046-43a2-be70-154abe0512e5",
                "1045325789",
                "1003209239",
                "draft",
                "superadmin",
                "2025-12-04T13:26:33.646360",
                "2025-12-04T13:26:39.671710"
            ),
        ])
    );

    let (exit, report) = dir.run_json(&["history", "show", "session_history_20251205_120402.json"]);
    assert_eq!(exit, 0);
    assert_eq!(
        report["sessions"],
        json!([row(
            "33ace247-2564-418d-8688-37693d2cda93",
            "1045327853",
            "1003210413",
            "approved",
            "superadmin",
            "2025-12-05T12:03:56.502806",
            "2025-12-05T12:03:56.503791"
        )])
    );
}

#[test]
fn show_real_fixture_after_reset() {
    let Some(fixtures) = real_fixtures() else {
        return;
    };
    let dir = DataDir::new();
    let sessions = fs::read(fixtures.join("scan_sessions.cancelled-draft.json")).unwrap();
    reset_at(&dir, "2025-12-01T00:00:00+00:00", &sessions, &[]);
    let (exit, report) = dir.run_json(&["history", "show", "20251201_000000"]);
    assert_eq!(exit, 0);
    assert_eq!(report["total_sessions"], json!(3));
    let rows = report["sessions"].as_array().unwrap();
    let summary: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|row| {
            (
                row["session_id"].as_str().unwrap(),
                row["status"].as_str().unwrap(),
                row["user"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "56ec176d-35ac-431c-9f8a-af4198cf44ab",
                "draft",
                "superadminuser"
            ),
            (
                "9b45d450-46b0-4e2d-9a8e-47abe33dd871",
                "cancelled",
                "superadminuser"
            ),
            (
                "4bf29053-8cf2-412b-a7b1-c73cf1b7eba6",
                "cancelled",
                "superadminuser"
            ),
        ]
    );
}

#[test]
fn show_rejects_paths() {
    let dir = sample_reset();
    fs::write(dir.path().join("x"), "{}").unwrap();
    for id in [
        "../x",
        "/etc/passwd",
        "session_history_../x.json",
        "./session_history_20260303_000000.json",
        "x",
    ] {
        let (exit, report) = dir.run_json(&["history", "show", id]);
        assert_eq!(exit, 2, "{id}");
        assert_eq!(report["error_kind"], json!("usage"), "{id}");
        assert_eq!(report["exit_code"], json!(2), "{id}");
    }
}

#[test]
fn show_unknown_id() {
    let dir = sample_reset();
    for id in ["20200101_000000", "session_history_20260303_000000_2.json"] {
        let (exit, report) = dir.run_json(&["history", "show", id]);
        assert_eq!(exit, 66, "{id}");
        assert_eq!(report["error_kind"], json!("not_found"), "{id}");
    }
}

#[test]
fn show_invalid_archive() {
    let dir = DataDir::new();
    let name = "session_history_20260101_000000.json";
    dir.write(name, "{\n  \"a\": {\"status\": }\n}\n");
    let (exit, report) = dir.run_json(&["history", "show", "20260101_000000"]);
    assert_eq!(exit, 65);
    assert_eq!(report["error_kind"], json!("invalid_data"));
    let error = report["error"].as_str().unwrap();
    assert!(error.contains(name), "{error}");
    assert!(error.contains("is not valid JSON"), "{error}");
    assert!(error.contains("line 2, column 19"), "{error}");

    dir.write(name, "{\"a\": {\"status\": \"draft\"}, \"b\": 7}");
    let (exit, report) = dir.run_json(&["history", "show", name]);
    assert_eq!(exit, 65);
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("is not an object of sessions"), "{error}");
    assert!(error.contains("line 1, column 33"), "{error}");

    dir.write(name, "");
    let (exit, report) = dir.run_json(&["history", "show", name]);
    assert_eq!(exit, 65);
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("is empty (0 bytes)"), "{error}");
}

#[test]
fn show_missing_sessions_archive() {
    let dir = sample_reset();
    fs::remove_file(dir.file("session_history_20260303_000000.json")).unwrap();
    let (exit, report) = dir.run_json(&["history", "show", "20260303_000000"]);
    assert_eq!(exit, 0);
    assert_eq!(report["origin"], json!("journal"));
    assert_eq!(report["total_sessions"], json!(5));
    assert_eq!(report["sessions"], json!(null));
    assert_eq!(
        report["archives"][0],
        json!({"file": "session_history_20260303_000000.json", "bytes": null})
    );
    let output = dir.run(&["history", "show", "20260303_000000"]);
    assert_eq!(code(&output), 0);
    assert!(
        stdout(&output).ends_with(
            "Sessions cannot be listed: session_history_20260303_000000.json is missing: \
             it was deleted or moved after the reset.\n"
        ),
        "{}",
        stdout(&output)
    );
}

#[test]
fn show_forced_invalid_archive() {
    let dir = DataDir::new();
    reset_at(
        &dir,
        "2026-03-03T00:00:00+00:00",
        b"{\"a\": {\"status\": \"draft\"},",
        &["--force"],
    );
    let (exit, report) = dir.run_json(&["history", "show", "20260303_000000"]);
    assert_eq!(exit, 0);
    assert_eq!(report["total_sessions"], json!(null));
    assert_eq!(report["sessions"], json!(null));
    assert_eq!(
        report["archives"],
        json!([{"file": "session_history_20260303_000000.invalid", "bytes": 26}])
    );
}

#[test]
fn show_takeovers_only_reset() {
    let dir = DataDir::new();
    dir.copy_in(&sample_data().join(TAKEOVERS), TAKEOVERS);
    reset_at(&dir, "2026-03-03T00:00:00+00:00", b"{}", &[]);
    let (exit, report) = dir.run_json(&["history", "show", "20260303_000000"]);
    assert_eq!(exit, 0);
    assert_eq!(report["total_sessions"], json!(0));
    assert_eq!(report["takeover_requests"], json!(1));
    assert_eq!(report["sessions"], json!([]));
    let output = dir.run(&["history", "show", "20260303_000000"]);
    assert!(
        stdout(&output).ends_with("\nNo sessions archived.\n"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn show_decodes_like_python() {
    // A repeated key keeps its first position with its last value, escapes
    // are decoded, NaN is accepted, and a missing or null user_id falls back
    // to last_modified_by.
    let dir = DataDir::new();
    let sessions = br#"{
  "a": {"status": "draft", "order_number": "1", "user_id": null, "last_modified_by": "admin"},
  "b\u00e9": {"status": "approved", "order_number": "ORD-Cr\u00e8me-\ud83d\ude00",
             "invoice_id": 2000100199, "items_expected": [{"price": NaN, "status": "x"}],
             "started_at": "2026-03-02T08:14:03", "last_modified_at": null},
  "a": {"status": "completed", "order_number": "2", "user_id": "picker01"}
}"#;
    reset_at(&dir, "2026-03-03T00:00:00+00:00", sessions, &[]);
    let (exit, report) = dir.run_json(&["history", "show", "20260303_000000"]);
    assert_eq!(exit, 0);
    assert_eq!(report["total_sessions"], json!(2));
    assert_eq!(
        report["sessions"],
        json!([
            {
                "session_id": "a",
                "order_number": "2",
                "invoice_id": null,
                "status": "completed",
                "user": "picker01",
                "started_at": null,
                "last_modified_at": null,
            },
            {
                "session_id": "bé",
                "order_number": "ORD-Crème-😀",
                "invoice_id": "2000100199",
                "status": "approved",
                "user": null,
                "started_at": "2026-03-02T08:14:03",
                "last_modified_at": null,
            },
        ])
    );
}

#[test]
fn show_large_generated_archive() {
    let dir = DataDir::new();
    let sessions = crate::common::generated_sessions(20_000, "gen");
    dir.write("session_history_20260310_000000.json", &sessions);
    let (exit, report) = dir.run_json(&["history", "show", "20260310_000000"]);
    assert_eq!(exit, 0);
    let rows = report["sessions"].as_array().unwrap();
    assert_eq!(rows.len(), 20_000);
    assert_eq!(report["total_sessions"], json!(20_000));
    assert_eq!(rows[19_999]["session_id"], json!("gen-00019999"));
    assert_eq!(rows[19_999]["order_number"], json!("3000019999"));
    assert_eq!(rows[19_999]["invoice_id"], json!("2000019999"));
    assert_eq!(rows[19_999]["status"], json!("approved"));
    assert_eq!(rows[19_999]["user"], json!("picker01"));
}
