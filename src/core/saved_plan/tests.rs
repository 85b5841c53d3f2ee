use super::*;
use crate::core::plan::{Target, Write};
use crate::core::value::SecretValue;

fn owner() -> Owner {
    Owner::new("prod", "shop", "api")
}

fn loc(rel: &str) -> KvLocation {
    KvLocation {
        mount: "secret/".into(),
        rel: rel.into(),
        version: KvVersion::V2,
    }
}

/// A plan of one create whose payload holds a value, saved.
fn saved() -> SavedPlan {
    let location = loc("clusters/prod/api/db");
    let plan = Plan {
        changes: vec![Change {
            target: Target::Located(location.clone()),
            owner: owner(),
            action: Action::Create {
                keys: ["password".into()].into(),
            },
            write: Some(Box::new(Write {
                data: Some(BTreeMap::from([(
                    "password".into(),
                    SecretValue::new("hunter2-value".into()),
                )])),
                cas: Some(0),
                metadata: None,
                claims: true,
            })),
            write_released: false,
            preserve_on_delete: false,
        }],
        notes: Vec::new(),
    };
    let mut pins = Pins::default();
    pins.writes.insert(
        (location, owner()),
        WritePin {
            sources: vec![SourcePin {
                namespace: "shop".into(),
                name: "db".into(),
                uid: "u-1".into(),
                resource_version: "42".into(),
            }],
            select: None,
            vault: VaultPin::Absent,
        },
    );
    build(header(SystemTime::now()), &plan, &pins).expect("pinned")
}

fn header(created_at: SystemTime) -> Header {
    Header {
        tool_version: "test".into(),
        created_at,
        cluster: "prod".into(),
        scope: ScopeRecord {
            namespaces: vec!["shop".into()],
            selector: None,
        },
        vault_address: "https://vault:8200".into(),
        vault_namespace: None,
        index_mount: "secret".into(),
        options: OptionsRecord {
            adopt: false,
            prune: true,
            destroy: false,
            max_deletes: 10,
        },
    }
}

fn expect(namespaces: &[String]) -> Expect<'_> {
    Expect {
        cluster: "prod",
        cluster_prefix: Some("prod"),
        vault_address: "https://vault:8200/",
        vault_namespace: None,
        index_mount: "secret",
        namespaces,
        selector: None,
        now: SystemTime::now(),
        max_age: Some(Duration::from_secs(3600)),
    }
}

fn shop() -> Vec<String> {
    vec!["shop".to_owned()]
}

#[test]
fn the_document_holds_no_value_and_reads_back() {
    let plan = saved();
    let text = serde_json::to_string_pretty(&plan).expect("encodes");
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(parse(&text), Ok(plan.clone()));
    let checked = check(&plan, &expect(&shop())).expect("accepted");
    assert_eq!(checked.len(), 1);
    assert_eq!(
        checked[0].action,
        Action::Create {
            keys: ["password".into()].into()
        }
    );
}

#[test]
fn another_format_version_is_refused_as_such() {
    let mut v: serde_json::Value = serde_json::to_value(saved()).expect("value");
    v["format_version"] = 2.into();
    v["a_field_of_version_2"] = true.into();
    assert!(matches!(
        parse(&v.to_string()),
        Err(Refusal::UnknownFormat { found: 2, .. })
    ));
    v["kind"] = "something".into();
    assert!(matches!(parse(&v.to_string()), Err(Refusal::Unreadable(_))));
    assert!(matches!(parse("{}"), Err(Refusal::Unreadable(_))));
}

#[test]
fn a_plan_for_other_flags_is_refused() {
    let plan = saved();
    let ns = shop();
    let cases: Vec<Expect<'_>> = vec![
        Expect {
            cluster: "staging",
            cluster_prefix: Some("staging"),
            ..expect(&ns)
        },
        Expect {
            vault_address: "https://other:8200",
            ..expect(&ns)
        },
        Expect {
            vault_namespace: Some("team"),
            ..expect(&ns)
        },
        Expect {
            namespaces: &[],
            ..expect(&ns)
        },
        Expect {
            selector: Some("team=a"),
            ..expect(&ns)
        },
        Expect {
            index_mount: "kv",
            ..expect(&ns)
        },
    ];
    for e in cases {
        assert!(
            matches!(check(&plan, &e), Err(Refusal::Mismatch { .. })),
            "{e:?}"
        );
    }
}

#[test]
fn an_old_plan_is_refused_unless_the_check_is_off() {
    let mut plan = saved();
    plan.created_at =
        humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(7200))
            .to_string();
    let ns = shop();
    let refusal = check(&plan, &expect(&ns)).expect_err("too old");
    assert!(matches!(refusal, Refusal::TooOld { .. }));
    assert!(
        refusal.to_string().contains("--max-plan-age 1h"),
        "{refusal}"
    );
    assert!(
        check(
            &plan,
            &Expect {
                max_age: None,
                ..expect(&ns)
            }
        )
        .is_ok()
    );
    // A date in the future would dodge the age check.
    plan.created_at =
        humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(86_400))
            .to_string();
    assert!(matches!(
        check(&plan, &expect(&ns)),
        Err(Refusal::BadTime(_))
    ));
}

#[test]
fn an_edited_change_refuses_the_whole_file() {
    let ns = shop();
    type Edit = Box<dyn Fn(&mut SavedChange)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "outside clusters/prod/",
            Box::new(|c| c.path = "secret/other-team/db".into()),
        ),
        (
            "not among the plan's mounts",
            Box::new(|c| {
                c.mount = "team/".into();
                c.path = "team/clusters/prod/api/db".into();
            }),
        ),
        (
            "outside its owner's namespace",
            Box::new(|c| c.sources[0].namespace = "kube-system".into()),
        ),
        (
            "outside the plan's namespaces",
            Box::new(|c| c.owner.namespace = "other".into()),
        ),
        (
            "of the plan's cluster",
            Box::new(|c| c.owner.cluster = "x".into()),
        ),
        (
            "preserve-on-delete",
            Box::new(|c| {
                c.action = SavedAction::Delete;
                c.keys = None;
                c.sources.clear();
                c.reason = Some("gone".into());
                c.destroy = Some(false);
                c.owner_state = Some(OwnerStateRecord::Gone);
                c.preserve_on_delete = true;
            }),
        ),
    ];
    for (why, edit) in edits {
        let mut plan = saved();
        edit(&mut plan.changes[0]);
        match check(&plan, &expect(&ns)) {
            Err(Refusal::Change { number: 1, .. }) => {}
            other => panic!("{why}: {other:?}"),
        }
    }
    let mut plan = saved();
    plan.changes[0].path = "secret/vault-sync/index/prod".into();
    assert!(check(&plan, &expect(&ns)).is_err());
    // Two changes on one path.
    let mut plan = saved();
    plan.changes.push(plan.changes[0].clone());
    assert!(matches!(
        check(&plan, &expect(&ns)),
        Err(Refusal::Change { number: 2, .. })
    ));
}

#[test]
fn pins_move_when_the_revision_version_or_marker_does() {
    let pin = SourcePin {
        namespace: "shop".into(),
        name: "db".into(),
        uid: "u-1".into(),
        resource_version: "42".into(),
    };
    let fetch = |uid: &str, rv: &str| {
        SecretFetch::found(BTreeMap::new()).with_meta(Some(crate::core::desired::SecretMeta {
            uid: uid.into(),
            resource_version: rv.into(),
        }))
    };
    assert_eq!(secret_moved(&pin, &fetch("u-1", "42")), Ok(None));
    assert!(
        matches!(secret_moved(&pin, &fetch("u-1", "43")), Ok(Some(r)) if r.contains("42 → 43"))
    );
    assert!(
        matches!(secret_moved(&pin, &fetch("u-2", "42")), Ok(Some(r)) if r.contains("recreated"))
    );
    assert!(matches!(
        secret_moved(&pin, &SecretFetch::NotFound),
        Ok(Some(_))
    ));
    assert!(secret_moved(&pin, &SecretFetch::found(BTreeMap::new())).is_err());

    let ours = BTreeMap::from([(OWNER_KEY.to_owned(), owner().to_string())]);
    let present = |version, ownership: &BTreeMap<String, String>| VaultPin::Present {
        version,
        ownership: ownership.clone(),
    };
    assert_eq!(vault_moved(&present(3, &ours), &present(3, &ours)), None);
    assert!(vault_moved(&present(3, &ours), &present(4, &ours)).is_some());
    assert!(vault_moved(&present(3, &ours), &present(3, &BTreeMap::new())).is_some());
    assert!(vault_moved(&VaultPin::Absent, &present(1, &BTreeMap::new())).is_some());
    // A user's own metadata keys are not part of the pin.
    let mut md = ours.clone();
    md.insert("team".into(), "a".into());
    let md = PathMetadata {
        custom_metadata: md,
        current_version: 3,
        current_deleted: false,
    };
    assert_eq!(VaultPin::from_metadata(Some(&md)), present(3, &ours));
}
