//! Static checks of the Helm chart (helm itself is not needed): the chart's CRD is the generated one,
//! RBAC grants exactly what the controller uses with a reason on every rule, values.yaml parses, and the
//! operator pod is hardened.
use std::collections::BTreeSet;
use std::path::PathBuf;

use chaincode_operator::operator::crd::crd_yaml;
use chaincode_operator::operator::rbac::{CLUSTER_PERMISSIONS, LEASE_PERMISSIONS, Permission};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Drops template-only lines and replaces inline `{{ ... }}` with a placeholder, leaving plain YAML.
fn strip_template(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("{{") && trimmed.ends_with("}}") {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            match rest[start..].find("}}") {
                Some(end) => {
                    out.push_str("TEMPLATED");
                    rest = &rest[start + end + 2..];
                }
                None => {
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("YAML: {e}\n{text}"))
}

type Rule = (String, String, BTreeSet<String>);

fn rules_of(doc: &Value) -> BTreeSet<Rule> {
    let mut set = BTreeSet::new();
    for rule in doc["rules"].as_array().expect("rules") {
        for group in rule["apiGroups"].as_array().expect("apiGroups") {
            for resource in rule["resources"].as_array().expect("resources") {
                let verbs = rule["verbs"]
                    .as_array()
                    .expect("verbs")
                    .iter()
                    .map(|v| v.as_str().expect("verb").to_string())
                    .collect();
                set.insert((
                    group.as_str().expect("group").to_string(),
                    resource.as_str().expect("resource").to_string(),
                    verbs,
                ));
            }
        }
    }
    set
}

fn expected(perms: &[Permission]) -> BTreeSet<Rule> {
    perms
        .iter()
        .map(|p| {
            (
                p.group.to_string(),
                p.resource.to_string(),
                p.verbs.iter().map(|v| v.to_string()).collect(),
            )
        })
        .collect()
}

/// Every `- apiGroups:` rule line must directly follow a comment saying why.
fn assert_every_rule_commented(path: &str) {
    let text = read(path);
    let lines: Vec<&str> = text.lines().collect();
    let mut rules = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("- apiGroups:") {
            rules += 1;
            assert!(
                i > 0 && lines[i - 1].trim_start().starts_with('#'),
                "{path}: rule at line {} has no comment saying why",
                i + 1
            );
        }
    }
    assert!(rules > 0, "{path}: no rules found");
}

#[test]
fn chart_crd_equals_generated_crd() {
    let generated = crd_yaml().expect("CRD serializes");
    assert_eq!(
        read("crds/chaincode.yaml"),
        generated,
        "crds/ drifted: run `cargo run -- crd > crds/chaincode.yaml`"
    );
    assert_eq!(
        read("charts/chaincode-operator/crds/chaincode.yaml"),
        generated,
        "the chart's CRD copy drifted from crds/chaincode.yaml"
    );
}

#[test]
fn cluster_role_grants_exactly_what_the_controller_uses() {
    let path = "charts/chaincode-operator/templates/clusterrole.yaml";
    let doc = yaml(&strip_template(&read(path)));
    assert_eq!(doc["kind"], "ClusterRole");
    assert_eq!(rules_of(&doc), expected(CLUSTER_PERMISSIONS));
    assert_every_rule_commented(path);
    // Least privilege: nothing cluster-admin-like.
    let text = read(path);
    assert!(!text.contains("\"*\""), "no wildcards");
    assert!(!text.contains("escalate") && !text.contains("bind") && !text.contains("impersonate"));
}

#[test]
fn leader_election_role_is_namespaced_and_exact() {
    let path = "charts/chaincode-operator/templates/role.yaml";
    let text = strip_template(&read(path));
    let role = text.split("\n---\n").next().expect("role document");
    let doc = yaml(role);
    assert_eq!(doc["kind"], "Role");
    assert_eq!(rules_of(&doc), expected(LEASE_PERMISSIONS));
    assert_every_rule_commented(path);
}

#[test]
fn values_parse_with_the_settings_templates_use() {
    let values = yaml(&read("charts/chaincode-operator/values.yaml"));
    for key in [
        "image",
        "replicaCount",
        "leaderElection",
        "watchNamespace",
        "httpPort",
        "resources",
    ] {
        assert!(!values[key].is_null(), "values.yaml lacks {key}");
    }
    assert_eq!(values["leaderElection"]["enabled"], true);
    let templates =
        std::fs::read_dir(root().join("charts/chaincode-operator/templates")).expect("templates");
    for entry in templates {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("template");
        let mut rest = text.as_str();
        while let Some(i) = rest.find(".Values.") {
            let name: String = rest[i + 8..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            assert!(
                !values[&name].is_null() || values.get(&name).is_some(),
                "template uses .Values.{name}, absent from values.yaml"
            );
            rest = &rest[i + 8..];
        }
    }
}

#[test]
fn operator_pod_is_hardened() {
    let doc = yaml(&strip_template(&read(
        "charts/chaincode-operator/templates/deployment.yaml",
    )));
    let pod = &doc["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    let sc = &container["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["args"][0], "controller");
}

#[test]
fn endorser_role_grants_exactly_what_the_kubernetes_runtime_uses() {
    use chaincode_operator::endorser::chaincode::runtime::kubernetes::rbac::ENDORSER_PERMISSIONS;
    let path = "charts/chaincode-operator/templates/endorser-role.yaml";
    let text = strip_template(&read(path));
    let role = text.split("\n---\n").next().expect("role document");
    let doc = yaml(role);
    assert_eq!(doc["kind"], "Role", "a namespaced Role, never cluster-wide");
    assert_eq!(rules_of(&doc), expected(ENDORSER_PERMISSIONS));
    assert_every_rule_commented(path);
    let values = yaml(&read("charts/chaincode-operator/values.yaml"));
    assert_eq!(values["endorser"]["rbac"]["enabled"], true);
}

/// The schema refuses the specs that used to fail silently forever (the API server enforces these).
#[test]
fn crd_schema_bounds_names_attempts_peers_and_exclusive_sources() {
    let crd = yaml(&crd_yaml().expect("CRD serializes"));
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let root_rules = schema["x-kubernetes-validations"].to_string();
    assert!(
        root_rules.contains("self.metadata.name.size() <= 63"),
        "{root_rules}"
    );
    let spec = &schema["properties"]["spec"];
    let attempt = &spec["properties"]["launchAttempt"];
    assert_eq!(attempt["maximum"].as_f64(), Some(2_147_483_647.0));
    assert_eq!(attempt["minimum"].as_f64(), Some(0.0));
    let peer = &spec["properties"]["peer"]["properties"];
    assert!(peer["address"]["pattern"].as_str().is_some());
    assert_eq!(peer["mspId"]["minLength"].as_u64(), Some(1));
    let spec_rules = spec["x-kubernetes-validations"].to_string();
    assert!(
        spec_rules.contains("!(has(self.source) && has(self.image))"),
        "{spec_rules}"
    );
}
