//! Property tests over the whole binary: whatever bytes the active files
//! hold, a forced reset keeps them exactly in an archive, and a plain reset
//! either does the same or changes nothing.

use proptest::prelude::*;

use crate::common::{DataDir, SESSIONS, TAKEOVERS, code, stderr};

const NOW: &str = "2026-12-04T00:00:01+01:00";

/// Sessions files: a valid object of sessions, then cut or altered.
fn sessions_bytes() -> impl Strategy<Value = Vec<u8>> {
    let status = prop_oneof![
        Just("\"draft\"".to_string()),
        Just("\"approved\"".to_string()),
        Just("\"in\\u005fprogress\"".to_string()),
        Just("null".to_string()),
        Just("NaN".to_string()),
        "\"[a-z_]{0,12}\"",
    ];
    let session = (
        "[a-f0-9-]{1,12}",
        status,
        prop::collection::vec(any::<u8>(), 0..8),
    );
    (
        prop::collection::vec(session, 0..12),
        any::<bool>(),
        prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
        prop::option::of(any::<prop::sample::Index>()),
    )
        .prop_map(|(sessions, pretty, flip, cut)| {
            let separator = if pretty { ",\n  " } else { "," };
            let body: Vec<String> = sessions
                .iter()
                .map(|(id, status, noise)| {
                    format!("\"{id}\": {{\"status\": {status}, \"n\": {:?}}}", noise)
                })
                .collect();
            let mut bytes = format!("{{{}}}", body.join(separator)).into_bytes();
            if let Some((index, byte)) = flip {
                let at = index.index(bytes.len());
                bytes[at] = byte;
            }
            if let Some(index) = cut {
                let at = index.index(bytes.len() + 1);
                bytes.truncate(at);
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: crate::common::count_from_env("ORDER_RESET_PROPTEST_CASES", 200) as u32,
        ..ProptestConfig::default()
    })]

    #[test]
    fn reset_keeps_any_bytes(sessions in sessions_bytes(), takeovers in sessions_bytes()) {
        let dir = DataDir::new();
        dir.write(SESSIONS, &sessions);
        dir.write(TAKEOVERS, &takeovers);

        let plain = dir.command(&["--json", "reset"]).env("ORDER_RESET_NOW", NOW).output().unwrap();
        let exit = code(&plain);
        prop_assert!(exit == 0 || exit == 65, "exit {}: {}", exit, stderr(&plain));
        prop_assert!(!stderr(&plain).contains("panicked"));
        if exit == 65 {
            prop_assert_eq!(dir.read(SESSIONS), sessions.clone());
            prop_assert_eq!(dir.read(TAKEOVERS), takeovers.clone());
            let forced = dir
                .command(&["--json", "reset", "--force"])
                .env("ORDER_RESET_NOW", NOW)
                .output()
                .unwrap();
            prop_assert_eq!(code(&forced), 0, "{}", stderr(&forced));
        }

        for (name, original, prefix) in [
            (SESSIONS, &sessions, "session_history_"),
            (TAKEOVERS, &takeovers, "takeover_history_"),
        ] {
            let active = dir.read(name);
            let archives = dir.names_with(prefix);
            if archives.is_empty() {
                // Only a file with no entries is left alone.
                prop_assert_eq!(&active, original);
                let value: serde_json::Value = serde_json::from_slice(original).unwrap();
                prop_assert!(value.as_object().is_some_and(|map| map.is_empty()));
            } else {
                prop_assert_eq!(archives.len(), 1);
                prop_assert_eq!(&dir.read(&archives[0]), original);
                prop_assert_eq!(active, b"{}".to_vec());
            }
        }
    }
}
