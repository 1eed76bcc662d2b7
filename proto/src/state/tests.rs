use super::*;

const DOC: &str = r#"
[frontends.f]
bind = "127.0.0.1:1"
default_backend = "web"
[backends.web]
servers = [ { name = "s1", address = "127.0.0.1:2" }, { name = "s2", address = "127.0.0.1:3" } ]
"#;
const ONLY_S1: &str = r#"
[frontends.f]
bind = "127.0.0.1:1"
default_backend = "web"
[backends.web]
servers = [ { name = "s1", address = "127.0.0.1:2" } ]
"#;

fn apply_doc(doc: &str, expected: Option<u64>) -> Command {
    Command::ApplyConfig {
        doc: doc.into(),
        format: Format::Toml,
        expected_version: expected,
    }
}

fn s(name: &str) -> ServerKey {
    ServerKey::new("web", name)
}

#[test]
fn config_versions_grow_and_stale_applies_are_refused() {
    let mut st = ReplicatedState::default();
    assert_eq!(
        st.apply(&apply_doc(DOC, Some(0))),
        Outcome::ConfigCommitted { version: 1 }
    );
    assert_eq!(
        st.apply(&apply_doc(ONLY_S1, Some(0))),
        Outcome::Stale {
            expected: 0,
            current: 1
        }
    );
    assert_eq!(
        st.apply(&apply_doc(ONLY_S1, None)),
        Outcome::ConfigCommitted { version: 2 }
    );
    assert_eq!(
        st.apply(&apply_doc(DOC, Some(2))),
        Outcome::ConfigCommitted { version: 3 }
    );
    assert_eq!(st.config_version(), 3);
}

#[test]
fn the_committed_document_again_is_a_no_op_so_a_retry_is_safe() {
    let mut st = ReplicatedState::default();
    st.apply(&apply_doc(DOC, None));
    st.apply(&apply_doc(ONLY_S1, Some(1)));
    let before = st.clone();
    // A retry of the write that made version 2, with or without its
    // expected version, answers version 2 and changes nothing.
    for retry in [
        apply_doc(ONLY_S1, None),
        apply_doc(ONLY_S1, Some(1)),
        apply_doc(ONLY_S1, Some(2)),
    ] {
        assert_eq!(st.apply(&retry), Outcome::ConfigCommitted { version: 2 });
        assert_eq!(st, before);
    }
    // Older expectations are still stale.
    assert_eq!(
        st.apply(&apply_doc(ONLY_S1, Some(0))),
        Outcome::Stale {
            expected: 0,
            current: 2
        }
    );
}

#[test]
fn an_invalid_document_is_refused_and_changes_nothing() {
    let mut st = ReplicatedState::default();
    st.apply(&apply_doc(DOC, None));
    let before = st.clone();
    let out = st.apply(&apply_doc("[frontends.f]\nbnd = 1\n", None));
    assert!(
        matches!(out, Outcome::Refused(ref m) if m.contains("bnd")),
        "{out:?}"
    );
    assert_eq!(st, before);
}

#[test]
fn server_commands_need_a_known_server() {
    let mut st = ReplicatedState::default();
    let drain = Command::SetServerState {
        server: s("s1"),
        state: OperatorState::Drain,
    };
    assert!(matches!(st.apply(&drain), Outcome::Refused(_)));
    st.apply(&apply_doc(DOC, None));
    assert_eq!(st.apply(&drain), Outcome::Done);
    let unknown = Command::SetWeight {
        server: s("nope"),
        weight: 1,
    };
    assert!(matches!(st.apply(&unknown), Outcome::Refused(ref m) if m.contains("web/nope")));
    let heavy = Command::SetWeight {
        server: s("s1"),
        weight: 257,
    };
    assert!(matches!(st.apply(&heavy), Outcome::Refused(_)));
    assert_eq!(
        st.operator_view(&s("s1")),
        OperatorView {
            state: OperatorState::Drain,
            weight: None
        }
    );
}

#[test]
fn applying_twice_is_the_same_as_once() {
    let cmds = [
        Command::SetServerState {
            server: s("s1"),
            state: OperatorState::Maint,
        },
        Command::SetWeight {
            server: s("s2"),
            weight: 7,
        },
        Command::ReportHealth {
            node: 2,
            server: s("s1"),
            up: false,
            reason: "L4CON".into(),
        },
        Command::SetServerState {
            server: s("s1"),
            state: OperatorState::Ready,
        },
    ];
    for cmd in &cmds {
        let mut once = ReplicatedState::default();
        once.apply(&apply_doc(DOC, None));
        let mut twice = once.clone();
        once.apply(cmd);
        twice.apply(cmd);
        twice.apply(cmd);
        assert_eq!(once, twice, "{cmd:?}");
    }
}

#[test]
fn ready_with_no_weight_leaves_no_entry() {
    let mut st = ReplicatedState::default();
    st.apply(&apply_doc(DOC, None));
    st.apply(&Command::SetServerState {
        server: s("s1"),
        state: OperatorState::Drain,
    });
    st.apply(&Command::SetServerState {
        server: s("s1"),
        state: OperatorState::Ready,
    });
    assert!(st.operator.is_empty());
}

#[test]
fn removing_a_server_from_the_config_forgets_its_state() {
    let mut st = ReplicatedState::default();
    st.apply(&apply_doc(DOC, None));
    st.apply(&Command::SetWeight {
        server: s("s2"),
        weight: 3,
    });
    st.apply(&Command::ReportHealth {
        node: 1,
        server: s("s2"),
        up: true,
        reason: "L4OK".into(),
    });
    st.apply(&Command::ReportHealth {
        node: 1,
        server: s("s1"),
        up: true,
        reason: "L4OK".into(),
    });
    st.apply(&apply_doc(ONLY_S1, None));
    assert!(!st.operator.contains_key(&s("s2")));
    assert!(!st.health.contains_key(&s("s2")));
    assert!(st.health.contains_key(&s("s1")));
    st.forget_node(1);
    assert!(st.health.is_empty());
}

#[test]
fn server_keys_parse_backend_slash_server() {
    assert_eq!(ServerKey::parse("web/s1"), Some(s("s1")));
    for bad in ["web", "/s1", "web/", "a/b/c", ""] {
        assert_eq!(ServerKey::parse(bad), None, "{bad}");
    }
}

#[test]
fn node_reports_replace_the_last_and_go_with_the_node() {
    let mut s = ReplicatedState::default();
    let view = |priority, unfit: Option<&str>| NodeView {
        priority,
        preempt: true,
        unfit: unfit.map(str::to_string),
    };
    let report = |node, view| Command::ReportNode { node, view };
    assert_eq!(s.apply(&report(1, view(150, None))), Outcome::Done);
    assert_eq!(
        s.apply(&report(2, view(100, Some("eth0 is down")))),
        Outcome::Done
    );
    assert_eq!(s.apply(&report(1, view(200, None))), Outcome::Done);
    let again = s.clone();
    assert_eq!(s.apply(&report(1, view(200, None))), Outcome::Done);
    assert_eq!(s, again, "a repeated report changes nothing");
    assert_eq!(s.nodes[&1].priority, 200);
    assert_eq!(s.nodes[&2].unfit.as_deref(), Some("eth0 is down"));
    s.forget_node(2);
    assert!(!s.nodes.contains_key(&2));
    assert!(s.nodes.contains_key(&1));
}
