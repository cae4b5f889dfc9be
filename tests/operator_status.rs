//! Status decisions: conditions per step outcome, observedGeneration, lastTransitionTime moving only on
//! change, Registered left to the endorser, and no patch when nothing changed.
use chaincode_operator::operator::crd::{
    Chaincode, ChaincodeStatus, Condition, ConditionStatus, Phase,
};
use chaincode_operator::operator::plan::{
    self, ImageOutcome, JobState, PodObservation, decide_status, status_differs,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

fn fixture(name: &str) -> Chaincode {
    let path = format!(
        "{}/tests/fixtures/operator/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_saphyr::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("parses")
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).expect("time")
}

fn cond<'a>(status: &'a ChaincodeStatus, type_: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"))
}

fn running_pod(created: i64) -> PodObservation {
    PodObservation {
        name: "asset-transfer-2-0123abcd".into(),
        phase: "Running".into(),
        created: Some(at(created)),
        waiting: None,
        terminated: None,
    }
}

const IMAGE: &str = "registry.example.com/cc@sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

fn ready_image() -> ImageOutcome {
    ImageOutcome::Ready {
        image: IMAGE.into(),
        built_by: Some("ccbuild-aaaa".into()),
    }
}

#[test]
fn building_sets_built_false_and_phase_building_with_generation() {
    let cc = fixture("node-configmap.yaml");
    let image = ImageOutcome::BuildStarted {
        job: "ccbuild-aaaa".into(),
    };
    let d = decide_status(&cc, &image, None, Some("sha256:aa"), at(0));
    assert_eq!(d.status.phase, Some(Phase::Building));
    let built = cond(&d.status, "Built");
    assert_eq!(built.status, ConditionStatus::False);
    assert_eq!(built.reason, "Building");
    assert_eq!(built.observed_generation, Some(3));
    assert_eq!(
        built.last_transition_time.as_deref(),
        Some("2023-11-14T22:13:20Z")
    );
    assert_eq!(cond(&d.status, "Launched").status, ConditionStatus::Unknown);
    assert_eq!(d.status.build_job_name.as_deref(), Some("ccbuild-aaaa"));
    assert_eq!(d.status.launch_attempt, Some(2));
    assert_eq!(d.status.observed_generation, Some(3));
    assert!(
        d.status.conditions.iter().all(|c| c.type_ != "Registered"),
        "the operator never writes Registered"
    );
}

#[test]
fn transition_time_moves_only_when_status_changes() {
    let mut cc = fixture("node-configmap.yaml");
    let building = ImageOutcome::Building {
        job: "ccbuild-aaaa".into(),
    };
    let first = decide_status(&cc, &building, None, None, at(0)).status;
    cc.status = Some(first.clone());
    // Same outcome later: nothing to write.
    let again = decide_status(&cc, &building, None, None, at(60)).status;
    assert_eq!(
        cond(&again, "Built").last_transition_time,
        cond(&first, "Built").last_transition_time
    );
    assert!(
        !status_differs(cc.status.as_ref(), &again),
        "no patch when nothing changed"
    );
    // Build done: Built flips, its time moves; Ready stays False so its time stays.
    let built = decide_status(&cc, &ready_image(), None, None, at(120)).status;
    assert_eq!(cond(&built, "Built").status, ConditionStatus::True);
    assert_eq!(
        cond(&built, "Built").last_transition_time.as_deref(),
        Some("2023-11-14T22:15:20Z")
    );
    assert_eq!(
        cond(&built, "Ready").last_transition_time,
        cond(&first, "Ready").last_transition_time
    );
    assert!(status_differs(cc.status.as_ref(), &built));
}

#[test]
fn a_new_generation_is_a_change_even_with_equal_conditions() {
    let mut cc = fixture("node-configmap.yaml");
    let building = ImageOutcome::Building { job: "j".into() };
    cc.status = Some(decide_status(&cc, &building, None, None, at(0)).status);
    cc.metadata.generation = Some(4);
    let next = decide_status(&cc, &building, None, None, at(1)).status;
    assert_eq!(cond(&next, "Built").observed_generation, Some(4));
    assert!(status_differs(cc.status.as_ref(), &next));
}

#[test]
fn endorser_registered_condition_is_ignored_when_comparing() {
    let mut cc = fixture("node-configmap.yaml");
    let mut status = decide_status(&cc, &ready_image(), Some(&running_pod(0)), None, at(1)).status;
    status.conditions.insert(
        0,
        Condition {
            type_: "Registered".into(),
            status: ConditionStatus::False,
            reason: "NotYet".into(),
            message: String::new(),
            observed_generation: Some(3),
            last_transition_time: Some("2023-01-01T00:00:00Z".into()),
        },
    );
    cc.status = Some(status);
    let again = decide_status(&cc, &ready_image(), Some(&running_pod(0)), None, at(2)).status;
    assert!(!status_differs(cc.status.as_ref(), &again));
}

fn registered(cc: &mut Chaincode, generation: i64) {
    let status = cc.status.get_or_insert_with(Default::default);
    status.conditions.push(Condition {
        type_: "Registered".into(),
        status: ConditionStatus::True,
        reason: "Registered".into(),
        message: String::new(),
        observed_generation: Some(generation),
        last_transition_time: Some("2023-11-14T22:13:30Z".into()),
    });
}

#[test]
fn ready_needs_a_running_pod_and_registration_for_this_generation() {
    let mut cc = fixture("node-configmap.yaml");
    let not_yet = decide_status(&cc, &ready_image(), Some(&running_pod(0)), None, at(10));
    assert_eq!(not_yet.status.phase, Some(Phase::Running));
    assert_eq!(
        cond(&not_yet.status, "Launched").status,
        ConditionStatus::True
    );
    assert_eq!(cond(&not_yet.status, "Ready").reason, "NotRegistered");
    // Re-check at the startup deadline (120 s from creation) even without events.
    let recheck = not_yet.recheck_after.expect("deadline");
    assert_eq!(recheck.as_secs(), 110);

    registered(&mut cc, 2);
    let stale = decide_status(&cc, &ready_image(), Some(&running_pod(0)), None, at(10));
    assert_eq!(
        cond(&stale.status, "Ready").status,
        ConditionStatus::False,
        "a registration of an older generation does not count"
    );

    let mut cc = fixture("node-configmap.yaml");
    registered(&mut cc, 3);
    let ready = decide_status(&cc, &ready_image(), Some(&running_pod(0)), None, at(10));
    assert_eq!(ready.status.phase, Some(Phase::Ready));
    assert_eq!(cond(&ready.status, "Ready").status, ConditionStatus::True);
}

#[test]
fn running_but_unregistered_past_the_startup_timeout_fails() {
    let cc = fixture("node-configmap.yaml");
    let d = decide_status(&cc, &ready_image(), Some(&running_pod(0)), None, at(121));
    assert_eq!(d.status.phase, Some(Phase::Failed));
    let ready = cond(&d.status, "Ready");
    assert_eq!(ready.reason, "StartupTimeout");
    assert!(ready.message.contains("120s"), "{}", ready.message);
}

/// A stock peer's external builder cannot see registration and says so (`Registered=Unknown,
/// StockPeer`): the Pod keeps running past the startup timeout, and Ready says why it is not known.
#[test]
fn a_stock_peers_launch_is_not_timed_out_for_a_registration_nobody_can_see() {
    let mut cc = fixture("node-configmap.yaml");
    let status = cc.status.get_or_insert_with(Default::default);
    status.conditions.push(Condition {
        type_: "Registered".into(),
        status: ConditionStatus::Unknown,
        reason: "StockPeer".into(),
        message: "not observed".into(),
        observed_generation: Some(3),
        last_transition_time: Some("2023-11-14T22:13:30Z".into()),
    });
    let d = decide_status(&cc, &ready_image(), Some(&running_pod(0)), None, at(3600));
    assert_eq!(d.status.phase, Some(Phase::Running));
    let ready = cond(&d.status, "Ready");
    assert_eq!(ready.status, ConditionStatus::Unknown);
    assert_eq!(ready.reason, "StockPeer");
    // Any other reason for Unknown still times out.
    let mut other = fixture("node-configmap.yaml");
    other
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .push(Condition {
            type_: "Registered".into(),
            status: ConditionStatus::Unknown,
            reason: "Something".into(),
            message: String::new(),
            observed_generation: Some(3),
            last_transition_time: None,
        });
    let d = decide_status(
        &other,
        &ready_image(),
        Some(&running_pod(0)),
        None,
        at(3600),
    );
    assert_eq!(d.status.phase, Some(Phase::Failed));
}

#[test]
fn image_pull_failure_is_named() {
    let cc = fixture("node-configmap.yaml");
    let pod = PodObservation {
        phase: "Pending".into(),
        waiting: Some((
            "ImagePullBackOff".into(),
            "Back-off pulling image \"registry.example.com/cc\"".into(),
        )),
        ..running_pod(0)
    };
    let d = decide_status(&cc, &ready_image(), Some(&pod), None, at(5));
    assert_eq!(d.status.phase, Some(Phase::Launching));
    let launched = cond(&d.status, "Launched");
    assert_eq!(launched.reason, "ImagePullFailed");
    assert!(launched.message.contains("Back-off pulling image"));
}

#[test]
fn failed_pod_reports_exit_code_and_log_tail() {
    let cc = fixture("node-configmap.yaml");
    let pod = PodObservation {
        phase: "Failed".into(),
        terminated: Some((
            "Error".into(),
            1,
            "Error: Cannot find module 'fabric-shim'".into(),
        )),
        ..running_pod(0)
    };
    let d = decide_status(&cc, &ready_image(), Some(&pod), None, at(5));
    assert_eq!(d.status.phase, Some(Phase::Failed));
    let launched = cond(&d.status, "Launched");
    assert_eq!(launched.reason, "PodFailed");
    assert!(
        launched.message.contains("exit code 1"),
        "{}",
        launched.message
    );
    assert!(
        launched
            .message
            .contains("Cannot find module 'fabric-shim'")
    );
}

#[test]
fn long_build_logs_keep_their_tail() {
    let cc = fixture("node-configmap.yaml");
    let log = format!(
        "{}\nnpm ERR! 404 Not Found - GET https://npm.example.com/nope",
        "x".repeat(5000)
    );
    let image = ImageOutcome::Failed {
        job: "ccbuild-aaaa".into(),
        message: log,
    };
    let d = decide_status(&cc, &image, None, None, at(0));
    let built = cond(&d.status, "Built");
    assert_eq!(built.reason, "BuildFailed");
    assert!(
        built
            .message
            .ends_with("npm ERR! 404 Not Found - GET https://npm.example.com/nope")
    );
    assert!(built.message.chars().count() <= 1_503);
    assert_eq!(d.status.phase, Some(Phase::Failed));
}

fn job(json: serde_json::Value) -> Job {
    serde_json::from_value(json).expect("job json")
}

fn pod(json: serde_json::Value) -> Pod {
    serde_json::from_value(json).expect("pod json")
}

#[test]
fn job_digest_is_read_from_the_build_containers_termination_message() {
    let j = job(serde_json::json!({"metadata": {"name": "ccbuild-a"}, "status": {"succeeded": 1}}));
    let digest = format!("sha256:{}", "f".repeat(64));
    let p = pod(serde_json::json!({
        "metadata": {"name": "ccbuild-a-xyz"},
        "status": {"containerStatuses": [{
            "name": "build", "image": "buildkit", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "message": format!("{digest}\n")}}
        }]}
    }));
    assert_eq!(
        plan::observe_job(&j, &[p]),
        JobState::Succeeded {
            digest: Some(digest)
        }
    );
    assert_eq!(
        plan::observe_job(&j, &[]),
        JobState::Succeeded { digest: None }
    );
}

#[test]
fn job_failure_names_the_failing_container_with_its_log_tail() {
    let j = job(serde_json::json!({"metadata": {"name": "ccbuild-a"}, "status": {"failed": 1}}));
    let p = pod(serde_json::json!({
        "metadata": {"name": "ccbuild-a-xyz"},
        "status": {"initContainerStatuses": [{
            "name": "fetch-context", "image": "curl", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "reason": "Error",
                      "message": "/scratch/context.tar.gz: FAILED\nsha256sum: WARNING: 1 computed checksum did NOT match"}}
        }]}
    }));
    let JobState::Failed { message } = plan::observe_job(&j, &[p]) else {
        panic!("expected failure");
    };
    assert!(message.contains("fetch-context exited 1"), "{message}");
    assert!(message.contains("checksum did NOT match"), "{message}");
    let running =
        job(serde_json::json!({"metadata": {"name": "ccbuild-a"}, "status": {"active": 1}}));
    assert_eq!(plan::observe_job(&running, &[]), JobState::Running);
}

#[test]
fn launch_plan_keeps_current_creates_missing_and_removes_stale() {
    let plan = plan::plan_launch(
        "cc-2-new",
        true,
        &["cc-1-old".into()],
        &["cc-1-old-tls".into(), "unrelated-but-labelled".into()],
    );
    assert!(plan.create_pod && plan.create_secret);
    assert_eq!(plan.delete_pods, vec!["cc-1-old".to_string()]);
    assert_eq!(
        plan.delete_secrets,
        vec![
            "cc-1-old-tls".to_string(),
            "unrelated-but-labelled".to_string()
        ]
    );
    let steady = plan::plan_launch(
        "cc-2-new",
        true,
        &["cc-2-new".into()],
        &["cc-2-new-tls".into()],
    );
    assert!(!steady.create_pod && !steady.create_secret);
    assert!(steady.delete_pods.is_empty() && steady.delete_secrets.is_empty());
}

#[test]
fn known_image_reuses_a_sibling_build_of_the_same_content() {
    let sibling = ChaincodeStatus {
        content_digest: Some("sha256:aa".into()),
        image_digest: Some(IMAGE.into()),
        ..Default::default()
    };
    let other = ChaincodeStatus {
        content_digest: Some("sha256:bb".into()),
        image_digest: Some("other".into()),
        ..Default::default()
    };
    assert_eq!(
        plan::known_image(&[&other, &sibling], "sha256:aa").as_deref(),
        Some(IMAGE)
    );
    assert_eq!(plan::known_image(&[&other], "sha256:aa"), None);
}

mod properties {
    use chaincode_operator::operator::conditions::{WantedCondition, merge};
    use chaincode_operator::operator::crd::ConditionStatus;
    use proptest::prelude::*;

    fn status() -> impl Strategy<Value = ConditionStatus> {
        prop_oneof![
            Just(ConditionStatus::True),
            Just(ConditionStatus::False),
            Just(ConditionStatus::Unknown)
        ]
    }

    proptest! {
        /// Over any sequence of reconciles, lastTransitionTime is the time of the last status change.
        #[test]
        fn transition_time_is_the_time_of_the_last_change(
            steps in proptest::collection::vec((status(), "[A-Z][a-z]{0,6}"), 1..30)
        ) {
            let mut current = Vec::new();
            let mut last_change = 0usize;
            let mut previous: Option<ConditionStatus> = None;
            for (i, (s, reason)) in steps.iter().enumerate() {
                if previous != Some(*s) {
                    last_change = i;
                }
                previous = Some(*s);
                let wanted = [WantedCondition::new("Built", *s, reason.as_str(), "")];
                current = merge(&current, &wanted, Some(1), &format!("t{i}"));
                let expected = format!("t{last_change}");
                prop_assert_eq!(current[0].last_transition_time.as_deref(), Some(expected.as_str()));
                prop_assert_eq!(&current[0].reason, reason);
            }
        }
    }
}

/// Specs that would fail forever (stored before the schema caught them) are named, not acted on.
#[test]
fn specs_that_cannot_work_are_rejected_with_the_field_named() {
    use plan::{SpecError, validate};
    let ok = fixture("prebuilt.yaml");
    assert!(validate(&ok).is_ok());

    let mut long = ok.clone();
    long.metadata.name = Some("a".repeat(64));
    assert_eq!(validate(&long), Err(SpecError::NameTooLong(64)));
    long.metadata.name = Some("a".repeat(63));
    assert!(validate(&long).is_ok(), "63 characters fit a label");

    let mut both = fixture("node-configmap.yaml");
    both.spec.image = ok.spec.image.clone();
    assert_eq!(validate(&both), Err(SpecError::SourceAndImage));

    for address in [
        "",
        "peer0",
        "peer0:",
        ":7052",
        "peer 0:7052",
        "peer0:123456",
    ] {
        let mut bad = ok.clone();
        bad.spec.peer.address = address.into();
        assert_eq!(
            validate(&bad),
            Err(SpecError::BadPeerAddress(address.into())),
            "{address:?}"
        );
    }
    for address in ["peer0.org1.example.com:7052", "10.0.0.1:7052", "[::1]:7052"] {
        let mut good = ok.clone();
        good.spec.peer.address = address.into();
        assert!(validate(&good).is_ok(), "{address:?}");
    }

    let mut no_msp = ok.clone();
    no_msp.spec.peer.msp_id = " ".into();
    assert_eq!(validate(&no_msp), Err(SpecError::EmptyMspId));
    let status = plan::invalid_spec_status(&no_msp, &SpecError::EmptyMspId, at(0));
    assert_eq!(cond(&status, "Ready").reason, "InvalidSpec");
    assert!(cond(&status, "Ready").message.contains("mspId"));
}

#[test]
fn an_object_that_does_not_deserialize_still_gets_an_invalid_spec_status() {
    let status = plan::malformed_status(
        "spec.launchAttempt: invalid value: integer `4294967296`, expected u32",
        Some(3),
        at(0),
    );
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(status.observed_generation, Some(3));
    let ready = cond(&status, "Ready");
    assert_eq!(ready.status, ConditionStatus::False);
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(ready.message.contains("launchAttempt"), "{}", ready.message);
}

fn event(kind: &str, name: &str, reason: &str, note: &str, at_secs: i64) -> serde_json::Value {
    serde_json::json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "type": "Warning",
        "metadata": {"name": format!("{name}.{at_secs}"), "namespace": "fabric"},
        "eventTime": format!("2023-11-14T22:13:{:02}.000000Z", 20 + at_secs),
        "regarding": {"kind": kind, "name": name}, "reason": reason, "note": note,
        "reportingController": "x", "reportingInstance": "y", "action": "a"})
}

fn events(items: Vec<serde_json::Value>) -> Vec<k8s_openapi::api::events::v1::Event> {
    items
        .into_iter()
        .map(|e| serde_json::from_value(e).expect("event"))
        .collect()
}

/// A build that cannot start says why instead of "is running" until the Job's deadline.
#[test]
fn a_stuck_build_names_the_pull_error_or_the_warning_event() {
    let fetcher_cannot_pull = pod(serde_json::json!({"metadata": {"name": "ccbuild-aaaa-x1"},
        "status": {"phase": "Pending", "initContainerStatuses": [{"name": "fetch-context", "image": "f",
            "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff",
            "message": "Back-off pulling image \"docker.io/curlimages/curl:8.14.1\""}}}]}}));
    let (reason, message) =
        plan::stuck_build("ccbuild-aaaa", &[fetcher_cannot_pull], &[]).expect("stuck");
    assert_eq!(reason, "ImagePullBackOff");
    assert!(
        message.contains("fetch-context") && message.contains("curl"),
        "{message}"
    );

    // Pod Security refused the pod: only the Job's FailedCreate Event tells.
    let refused = events(vec![
        event("Job", "ccbuild-aaaa", "FailedCreate", "old", 0),
        event(
            "Job",
            "ccbuild-aaaa",
            "FailedCreate",
            "Error creating: pods \"ccbuild-aaaa-x\" is forbidden: violates PodSecurity \"restricted:latest\"",
            5,
        ),
        event("Job", "ccbuild-other", "FailedCreate", "someone else's", 9),
    ]);
    let (reason, message) = plan::stuck_build("ccbuild-aaaa", &[], &refused).expect("stuck");
    assert_eq!(reason, "FailedCreate");
    assert!(message.contains("violates PodSecurity"), "{message}");

    // The context ConfigMap does not exist: FailedMount on the Job's pod.
    let missing_context = events(vec![event(
        "Pod",
        "ccbuild-aaaa-x1",
        "FailedMount",
        "MountVolume.SetUp failed for volume \"context\" : configmap \"ctx\" not found",
        1,
    )]);
    let (reason, _) = plan::stuck_build("ccbuild-aaaa", &[], &missing_context).expect("stuck");
    assert_eq!(reason, "FailedMount");
    assert_eq!(plan::stuck_build("ccbuild-aaaa", &[], &[]), None);

    let cc = fixture("node-configmap.yaml");
    let image = ImageOutcome::Stuck {
        job: "ccbuild-aaaa".into(),
        reason: reason.clone(),
        message: "configmap \"ctx\" not found".into(),
    };
    let d = decide_status(&cc, &image, None, Some("sha256:aa"), at(0));
    let built = cond(&d.status, "Built");
    assert_eq!(built.status, ConditionStatus::False);
    assert_eq!(built.reason, "FailedMount");
    assert!(
        built.message.contains("configmap \"ctx\" not found"),
        "{}",
        built.message
    );
    assert_eq!(cond(&d.status, "Ready").reason, "FailedMount");
    // Events trigger no watch: the operator looks again within seconds.
    assert!(d.recheck_after.is_some_and(|r| r.as_secs() <= 10));
}

#[test]
fn pod_security_that_forbids_rootless_buildkit_is_named_up_front() {
    use std::collections::BTreeMap;
    let labels = |level: &str| {
        BTreeMap::from([(
            "pod-security.kubernetes.io/enforce".to_string(),
            level.to_string(),
        )])
    };
    for level in ["restricted", "baseline"] {
        let message = plan::pod_security_blocks_build("fabric", &labels(level)).expect("blocked");
        assert!(
            message.contains("Unconfined") && message.contains(level),
            "{message}"
        );
    }
    assert_eq!(
        plan::pod_security_blocks_build("fabric", &labels("privileged")),
        None
    );
    assert_eq!(
        plan::pod_security_blocks_build("fabric", &BTreeMap::new()),
        None
    );
}

#[test]
fn a_chaincode_pod_that_cannot_start_says_why() {
    let cc = fixture("node-configmap.yaml");
    // Unschedulable: the PodScheduled condition has the scheduler's reason.
    let unschedulable = plan::observe_pod(&pod(serde_json::json!({"metadata": {"name": "p"},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."}]}})));
    let d = decide_status(&cc, &ready_image(), Some(&unschedulable), None, at(5));
    let launched = cond(&d.status, "Launched");
    assert_eq!(launched.reason, "PodNotStarting");
    assert!(
        launched.message.contains("node affinity/selector"),
        "{}",
        launched.message
    );
    // A pending pod with nothing reported yet is re-checked soon (FailedMount comes as an Event).
    let pending = plan::observe_pod(&pod(serde_json::json!({"metadata": {"name": "p"},
        "status": {"phase": "Pending", "containerStatuses": [{"name": "chaincode", "image": "i",
            "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}})));
    assert!(pending.needs_events());
    let d = decide_status(&cc, &ready_image(), Some(&pending), None, at(5));
    assert!(d.recheck_after.is_some_and(|r| r.as_secs() <= 10));
    let mount = events(vec![event(
        "Pod",
        "p",
        "FailedMount",
        "secret \"x\" not found",
        0,
    )]);
    assert_eq!(
        plan::latest_warning(&mount, |n| n == "p"),
        Some(("FailedMount".into(), "secret \"x\" not found".into()))
    );
}

#[test]
fn an_exit_without_termination_message_takes_the_log_tail() {
    let cc = fixture("node-configmap.yaml");
    let mut pod = PodObservation {
        phase: "Succeeded".into(),
        terminated: Some(("Completed".into(), 0, String::new())),
        ..running_pod(0)
    };
    assert!(pod.needs_log_tail());
    if let Some(t) = pod.terminated.as_mut() {
        t.2 = plan::log_tail_message("connecting\nError: connect ECONNREFUSED 10.0.0.1:7052\n");
    }
    let d = decide_status(&cc, &ready_image(), Some(&pod), None, at(5));
    let launched = cond(&d.status, "Launched");
    assert_eq!(launched.reason, "PodFailed");
    assert!(
        launched.message.contains("exit code 0"),
        "{}",
        launched.message
    );
    assert!(
        launched.message.contains("ECONNREFUSED 10.0.0.1:7052"),
        "{}",
        launched.message
    );
    assert_eq!(plan::log_tail_message("  "), "(the container wrote no log)");
}
