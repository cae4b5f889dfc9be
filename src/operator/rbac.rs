//! The Kubernetes permissions the controller needs, one entry per API call it makes. The Helm chart's
//! RBAC must grant exactly these (tests/operator_chart.rs checks it). Server-side apply of an object
//! that does not exist yet is a create: every kind the operator applies needs `create` besides `patch`.

/// A permission: API group, resource, verbs, and why the controller needs it.
pub struct Permission {
    pub group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    pub why: &'static str,
}

/// Cluster-wide (or watch-namespace) permissions.
pub const CLUSTER_PERMISSIONS: &[Permission] = &[
    Permission {
        group: "fabric.chaincode.dev",
        resource: "chaincodes",
        verbs: &["list", "watch"],
        why: "watch Chaincodes (the reconcile input); list also detects a missing CRD at startup",
    },
    Permission {
        group: "fabric.chaincode.dev",
        resource: "chaincodes/status",
        verbs: &["patch"],
        why: "server-side apply of the operator's status fields",
    },
    Permission {
        group: "batch",
        resource: "jobs",
        verbs: &["get", "list", "watch", "create", "patch"],
        why: "read and server-side apply (create) the shared build Job of a content key; watch its progress",
    },
    Permission {
        group: "",
        resource: "pods",
        verbs: &["list", "watch", "create", "patch", "delete"],
        why: "apply (create) the chaincode Pod, read build/chaincode pod status, delete stale launches",
    },
    Permission {
        group: "",
        resource: "pods/log",
        verbs: &["get"],
        why: "the log tail of a chaincode that exited without a termination message",
    },
    Permission {
        group: "",
        resource: "secrets",
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        why: "read the endorser's TLS Secret, apply (create) the launch's TLS Secret, delete stale ones",
    },
    Permission {
        group: "",
        resource: "namespaces",
        verbs: &["get"],
        why: "read Pod Security labels before a BuildKit Job that needs Unconfined seccomp/AppArmor",
    },
    Permission {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["list", "create", "patch"],
        why: "Events on condition transitions (patch for a series); list Warnings (FailedCreate, FailedMount) of build Jobs and Pods",
    },
];

/// Permissions in the operator's own namespace only.
pub const LEASE_PERMISSIONS: &[Permission] = &[Permission {
    group: "coordination.k8s.io",
    resource: "leases",
    verbs: &["get", "create", "update"],
    why: "leader election on one Lease",
}];
