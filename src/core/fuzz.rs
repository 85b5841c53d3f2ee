//! Property tests (a bounded fuzz run in the normal test suite) for the
//! parsers that take user input: annotations and Vault paths. Properties:
//! never panic; accepted input satisfies the documented invariants.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::annotations::{self, Mode};
use super::vault_path::{self, KvVersion, Mount};

fn fuzz_cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn kv2() -> Mount {
    Mount {
        path: "secret/".into(),
        engine: "kv".into(),
        kv_version: Some(KvVersion::V2),
    }
}

/// Strings biased towards the characters that matter to paths and JSON.
fn tricky() -> impl Strategy<Value = String> {
    prop_oneof![
        ".*",
        "[a-z/._ \\-]{0,40}",
        "(secret|sys|auth|\\.\\.|\\.|data|/|//|\u{0}|\u{202e}|ä){0,8}",
    ]
}

proptest! {
    // 2,000 cases per property in every test run; tests/run.sh adds a
    // longer bounded run with PROPTEST_CASES.
    #![proptest_config(ProptestConfig { cases: fuzz_cases(), ..ProptestConfig::default() })]

    #[test]
    fn path_validation_never_panics_and_accepts_only_clean_paths(raw in tricky()) {
        if let Ok(path) = vault_path::validate(&raw) {
            prop_assert!(!path.is_empty());
            prop_assert!(!path.starts_with('/') && !path.ends_with('/'));
            prop_assert!(!path.contains("//"));
            prop_assert!(path.split('/').all(|s| s != "." && s != ".."));
            prop_assert!(!path.chars().any(|c| c.is_control() || c.is_whitespace()));
            prop_assert!(!["sys", "auth", "identity", "cubbyhole"].contains(&path.split('/').next().unwrap_or("")));
            // Located paths stay inside their mount.
            if let Ok(loc) = vault_path::locate(&path, &kv2(), Some("c1")) {
                prop_assert!(loc.data_path().starts_with("secret/data/clusters/c1/"));
                prop_assert!(loc.metadata_path().starts_with("secret/metadata/clusters/c1/"));
            }
        }
    }

    #[test]
    fn secrets_annotation_never_panics(json in prop_oneof![
        ".*",
        "\\[\\{\"name\":\"[a-z\\-]{0,5}\",\"keys\":\\[(\"[A-Za-z_.\\-]{0,4}\",?){0,4}\\](,\"prefix\":\"[A-Z_/]{0,3}\")?\\}\\]",
    ]) {
        let ann = BTreeMap::from([
            (annotations::PATH.to_owned(), "secret/app".to_owned()),
            (annotations::SECRETS.to_owned(), json),
        ]);
        if let Ok(Some(spec)) = annotations::parse(&ann) {
            let Mode::Custom(sel) = spec.mode else {
                return Err(TestCaseError::fail("custom mode expected"));
            };
            // Accepted: no empty names or key lists, and no two sources
            // write the same Vault key.
            let mut targets = std::collections::BTreeSet::new();
            for s in &sel {
                prop_assert!(!s.name.is_empty() && !s.keys.is_empty());
                for k in &s.keys {
                    targets.insert(s.target_key(k));
                }
            }
            let distinct: usize = sel.iter().map(|s| s.keys.iter().collect::<std::collections::BTreeSet<_>>().len()).sum();
            prop_assert_eq!(targets.len(), distinct);
        }
    }

    #[test]
    fn other_annotations_never_panic(preserve in ".*", reconcile in ".*") {
        let ann = BTreeMap::from([
            (annotations::PATH.to_owned(), "secret/app".to_owned()),
            (annotations::PRESERVE_ON_DELETE.to_owned(), preserve),
            (annotations::RECONCILE.to_owned(), reconcile),
        ]);
        if let Ok(Some(spec)) = annotations::parse(&ann)
            && let annotations::Reconcile::Every(d) = spec.reconcile
        {
            prop_assert!(d >= annotations::MIN_RECONCILE);
        }
    }
}
