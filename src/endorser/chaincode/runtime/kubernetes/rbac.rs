//! The Kubernetes permissions the endorser's `kubernetes` runtime needs in its namespace, one entry
//! per kind of API call it makes. The Helm chart's endorser Role grants exactly these
//! (tests/operator_chart.rs checks it).
use crate::operator::rbac::Permission;

/// Namespace permissions of the endorser (a Role in the Chaincodes' namespace).
pub const ENDORSER_PERMISSIONS: &[Permission] = &[
    Permission {
        group: "fabric.chaincode.dev",
        resource: "chaincodes",
        verbs: &[
            "get",
            "list",
            "watch",
            "create",
            "patch",
            "delete",
            "deletecollection",
        ],
        why: "server-side apply a Chaincode per launch (create + patch), watch its status to fail fast, \
              delete it at shutdown and an earlier run's at start",
    },
    Permission {
        group: "fabric.chaincode.dev",
        resource: "chaincodes/status",
        verbs: &["patch"],
        why: "server-side apply of the Registered condition (field manager chaincode-endorser)",
    },
    Permission {
        group: "",
        resource: "secrets",
        verbs: &["create", "patch", "delete", "deletecollection"],
        why: "the launch's TLS Secret (client certificate, endorser root) the operator hands to the Pod",
    },
    Permission {
        group: "",
        resource: "configmaps",
        verbs: &["create", "patch", "delete", "deletecollection"],
        why: "the build context of a source package, read by the operator's build Job",
    },
    Permission {
        group: "",
        resource: "pods/log",
        verbs: &["get"],
        why: "stream the chaincode Pod's log into the endorser's log (Fabric's attachStdout)",
    },
];
