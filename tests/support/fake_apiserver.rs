//! A fake Kubernetes API server over plain HTTP on 127.0.0.1, for running the built binary against
//! "a cluster" without one: it keeps namespaced objects in memory and records every request.
//!
//! What kube-rs' clients and watchers need, and no more: server-side apply (`PATCH`, also of the
//! `status` subresource, whose `conditions` merge by type as the CRD's list-map does), `POST`,
//! `GET` of one object or a list (label selectors `k=v,...`, field selector `metadata.name=`),
//! `watch=true` from a list's resourceVersion (chunked JSON lines, no bookmarks), `DELETE` of one
//! object or a collection, and `pods/NAME/log?follow=true` (the lines a test sets, then held open
//! until the test ends the log). Each write gets a new resourceVersion; objects get a uid,
//! `generation` (raised when `spec` changes) and a creationTimestamp.
//!
//! The test plays the operator ([`FakeApiServer::write_status`]), injects failures
//! ([`FakeApiServer::fail`]) and waits on what the binary did ([`FakeApiServer::wait_for`]).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State as AxumState};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
    /// The body when it is JSON.
    pub body: Option<Value>,
}

impl Request {
    /// `method` on a path ending with `suffix`.
    pub fn is(&self, method: &str, suffix: &str) -> bool {
        self.method == method && self.path.ends_with(suffix)
    }

    /// A watch (`GET ...?watch=true`).
    pub fn is_watch(&self) -> bool {
        self.query
            .get("watch")
            .is_some_and(|w| w == "true" || w == "1")
    }
}

/// An object's address: its resource (plural), namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    pub plural: String,
    pub namespace: String,
    pub name: String,
}

struct Event {
    kind: &'static str,
    plural: String,
    namespace: String,
    object: Value,
}

struct Fault {
    method: String,
    suffix: String,
    code: u16,
    reason: String,
    /// Which matching request fails (0: the first).
    nth: usize,
    seen: usize,
}

#[derive(Default)]
struct PodLog {
    lines: Vec<String>,
    ended: bool,
}

/// What the fake holds: objects and every request, for [`FakeApiServer::wait_for`].
#[derive(Default)]
pub struct Cluster {
    pub objects: BTreeMap<ObjectKey, Value>,
    pub requests: Vec<Request>,
    resource_version: u64,
    uids: u64,
    /// Every change, in resourceVersion order (event i has resourceVersion i + 1).
    events: Vec<Event>,
    faults: Vec<Fault>,
    logs: BTreeMap<String, PodLog>,
}

impl Cluster {
    /// The object `plural/name` in any namespace.
    pub fn get(&self, plural: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|(key, _)| key.plural == plural && key.name == name)
            .map(|(_, object)| object)
    }

    /// Every object of `plural`.
    pub fn all(&self, plural: &str) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|(key, _)| key.plural == plural)
            .map(|(_, object)| object)
            .collect()
    }

    /// The requests `method` on a path ending with `suffix`.
    pub fn requests_to(&self, method: &str, suffix: &str) -> Vec<&Request> {
        self.requests
            .iter()
            .filter(|r| r.is(method, suffix))
            .collect()
    }

    fn record(&mut self, kind: &'static str, plural: &str, namespace: &str, object: &Value) {
        self.events.push(Event {
            kind,
            plural: plural.to_string(),
            namespace: namespace.to_string(),
            object: object.clone(),
        });
    }

    fn next_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    /// Creates or updates `key` from a server-side apply or create body.
    fn apply(&mut self, key: &ObjectKey, mut applied: Value) -> Value {
        let version = self.next_version();
        let old = self.objects.get(key).cloned();
        let metadata = object_field(&mut applied, "metadata");
        metadata.insert("name".into(), json!(key.name));
        metadata.insert("namespace".into(), json!(key.namespace));
        metadata.insert("resourceVersion".into(), json!(version));
        let kind = match &old {
            None => {
                self.uids += 1;
                metadata.insert("uid".into(), json!(format!("fake-uid-{}", self.uids)));
                metadata.insert("generation".into(), json!(1));
                metadata.insert("creationTimestamp".into(), json!("2026-01-01T00:00:00Z"));
                "ADDED"
            }
            Some(old) => {
                for field in ["uid", "creationTimestamp"] {
                    metadata.insert(field.into(), old["metadata"][field].clone());
                }
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                let changed = applied.get("spec") != old.get("spec");
                object_field(&mut applied, "metadata")
                    .insert("generation".into(), json!(generation + i64::from(changed)));
                if let Some(status) = old.get("status") {
                    object_field(&mut applied, "").insert("status".into(), status.clone());
                }
                "MODIFIED"
            }
        };
        self.objects.insert(key.clone(), applied.clone());
        self.record(kind, &key.plural, &key.namespace, &applied);
        applied
    }

    /// Merges `status` into the object's status (conditions by type, other fields replaced).
    fn merge_status(&mut self, key: &ObjectKey, status: &Value) -> Option<Value> {
        if !self.objects.contains_key(key) {
            return None;
        }
        let version = self.next_version();
        let object = self.objects.get_mut(key)?;
        object_field(object, "metadata").insert("resourceVersion".into(), json!(version));
        let current = object_field(object, "status");
        if let Some(fields) = status.as_object() {
            for (field, value) in fields {
                if field != "conditions" {
                    current.insert(field.clone(), value.clone());
                    continue;
                }
                let mut conditions = current
                    .get("conditions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for condition in value.as_array().into_iter().flatten() {
                    match conditions
                        .iter_mut()
                        .find(|c| c["type"] == condition["type"])
                    {
                        Some(existing) => *existing = condition.clone(),
                        None => conditions.push(condition.clone()),
                    }
                }
                current.insert("conditions".into(), Value::Array(conditions));
            }
        }
        let object = object.clone();
        self.record("MODIFIED", &key.plural, &key.namespace, &object);
        Some(object)
    }

    fn delete(&mut self, key: &ObjectKey) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        let version = self.next_version();
        object_field(&mut object, "metadata").insert("resourceVersion".into(), json!(version));
        self.record("DELETED", &key.plural, &key.namespace, &object);
        Some(object)
    }
}

/// `object[field]` as a JSON object, made one if it is not (`""`: the object itself).
fn object_field<'a>(object: &'a mut Value, field: &str) -> &'a mut serde_json::Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let target = if field.is_empty() {
        object
    } else {
        let map = object.as_object_mut().expect("made an object above");
        let entry = map.entry(field.to_string()).or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        entry
    };
    target.as_object_mut().expect("made an object above")
}

/// `apiVersion` and `kind` of a resource's objects.
fn type_of(plural: &str) -> (&'static str, &'static str) {
    match plural {
        "secrets" => ("v1", "Secret"),
        "configmaps" => ("v1", "ConfigMap"),
        "pods" => ("v1", "Pod"),
        "chaincodes" => ("fabric.chaincode.dev/v1alpha1", "Chaincode"),
        _ => ("v1", "Unknown"),
    }
}

/// Label (`k=v,...`) and field (`metadata.name=`) selectors of a list or watch.
#[derive(Clone, Default)]
struct Selector {
    labels: Vec<(String, String)>,
    name: Option<String>,
}

impl Selector {
    fn from_query(query: &BTreeMap<String, String>) -> Self {
        let pairs = |text: &str| -> Vec<(String, String)> {
            text.split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (
                        k.trim_end_matches('=').to_string(),
                        v.trim_start_matches('=').to_string(),
                    )
                })
                .collect()
        };
        let fields = query
            .get("fieldSelector")
            .map(|s| pairs(s))
            .unwrap_or_default();
        Self {
            labels: query
                .get("labelSelector")
                .map(|s| pairs(s))
                .unwrap_or_default(),
            name: fields
                .into_iter()
                .find(|(k, _)| k == "metadata.name")
                .map(|(_, v)| v),
        }
    }

    fn matches(&self, object: &Value) -> bool {
        let metadata = &object["metadata"];
        self.name.as_ref().is_none_or(|n| metadata["name"] == **n)
            && self
                .labels
                .iter()
                .all(|(k, v)| metadata["labels"][k].as_str() == Some(v.as_str()))
    }
}

struct Shared {
    cluster: Mutex<Cluster>,
    /// Wakes tests waiting in [`FakeApiServer::wait_for`].
    changed: Condvar,
    /// Wakes watch and log streams.
    bump: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Cluster> {
        self.cluster
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn notify(&self) {
        self.changed.notify_all();
        self.bump.send_modify(|n| *n += 1);
    }
}

/// The fake API server, serving until dropped.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl FakeApiServer {
    pub fn start() -> Self {
        let shared = Arc::new(Shared {
            cluster: Mutex::default(),
            changed: Condvar::new(),
            bump: tokio::sync::watch::channel(0).0,
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the fake API server");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake");
        listener.set_nonblocking(true).expect("non-blocking");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let _ = axum::serve(listener, app).await;
        });
        Self {
            shared,
            url,
            runtime: Some(runtime),
        }
    }

    /// Writes a kubeconfig naming this server (bearer token `fake-token`, default `namespace`).
    pub fn kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    \
             namespace: {namespace}\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    \
             token: fake-token\n",
            self.url
        );
        std::fs::write(&path, text).expect("write the kubeconfig");
        path
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().requests.clone()
    }

    /// Looks at the fake's state.
    pub fn with<T>(&self, look: impl FnOnce(&Cluster) -> T) -> T {
        look(&self.shared.lock())
    }

    /// Waits until `found` returns Some; panics naming `what` after `timeout` (a hang guard).
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut found: impl FnMut(&Cluster) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut cluster = self.shared.lock();
        loop {
            if let Some(value) = found(&cluster) {
                return value;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let seen: Vec<String> = cluster
                    .requests
                    .iter()
                    .map(|r| format!("{} {} {:?}", r.method, r.path, r.query))
                    .collect();
                panic!(
                    "the fake API server did not see {what} within {timeout:?}; requests: {seen:#?}"
                );
            }
            cluster = self
                .shared
                .changed
                .wait_timeout(cluster, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Writes the status of `plural/name` as a controller would (conditions merge by type).
    pub fn write_status(&self, plural: &str, name: &str, status: Value) {
        {
            let mut cluster = self.shared.lock();
            let key = cluster
                .objects
                .keys()
                .find(|k| k.plural == plural && k.name == name)
                .cloned()
                .unwrap_or_else(|| panic!("no {plural}/{name} to write the status of"));
            cluster.merge_status(&key, &status);
        }
        self.shared.notify();
    }

    /// The `nth` (0: the first) request `method` on a path ending with `suffix` fails with
    /// `code` and a Status of `reason`.
    pub fn fail(&self, method: &str, suffix: &str, nth: usize, code: u16, reason: &str) {
        self.shared.lock().faults.push(Fault {
            method: method.to_string(),
            suffix: suffix.to_string(),
            code,
            reason: reason.to_string(),
            nth,
            seen: 0,
        });
    }

    /// Appends lines to a Pod's log (the Pod's log exists from the first call on).
    pub fn pod_log(&self, pod: &str, lines: &[&str]) {
        self.shared
            .lock()
            .logs
            .entry(pod.to_string())
            .or_default()
            .lines
            .extend(lines.iter().map(|l| l.to_string()));
        self.shared.notify();
    }

    /// Ends a Pod's log: followers see the end of the stream.
    pub fn end_pod_log(&self, pod: &str) {
        self.shared
            .lock()
            .logs
            .entry(pod.to_string())
            .or_default()
            .ended = true;
        self.shared.notify();
    }
}

fn status_error(code: u16, reason: &str, message: &str) -> Response {
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code,
        }),
    )
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("a response")
}

/// `(plural, namespace, name, subresource)` of a namespaced resource path.
fn parse_path(path: &str) -> Option<(String, String, Option<String>, Option<String>)> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let rest = match parts.first() {
        Some(&"api") => parts.get(2..)?,
        Some(&"apis") => parts.get(3..)?,
        _ => return None,
    };
    match rest {
        ["namespaces", ns, plural, tail @ ..] if tail.len() <= 2 => Some((
            plural.to_string(),
            ns.to_string(),
            tail.first().map(|s| s.to_string()),
            tail.get(1).map(|s| s.to_string()),
        )),
        _ => None,
    }
}

async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let request = Request {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: query.clone(),
        content_type: header("content-type"),
        authorization: header("authorization"),
        body: serde_json::from_slice(&body).ok(),
    };
    let response = respond(&shared, request, &query);
    shared.notify();
    response
}

fn respond(shared: &Arc<Shared>, request: Request, query: &BTreeMap<String, String>) -> Response {
    let mut cluster = shared.lock();
    cluster.requests.push(request.clone());
    let mut injected = None;
    for fault in cluster.faults.iter_mut() {
        if request.is(&fault.method, &fault.suffix) {
            fault.seen += 1;
            if fault.seen == fault.nth + 1 && injected.is_none() {
                injected = Some((fault.code, fault.reason.clone()));
            }
        }
    }
    if let Some((code, reason)) = injected {
        let message = format!(
            "{reason} injected by the test: {} {}",
            request.method, request.path
        );
        return status_error(code, &reason, &message);
    }
    let Some((plural, namespace, name, sub)) = parse_path(&request.path) else {
        return status_error(404, "NotFound", &format!("no route {}", request.path));
    };
    let (api_version, kind) = type_of(&plural);
    let selector = Selector::from_query(query);
    let method = request.method.as_str();
    let Some(name) = name else {
        return match method {
            "GET" if request.is_watch() => {
                let from = query
                    .get("resourceVersion")
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                watch_stream(shared.clone(), plural, namespace, selector, from)
            }
            "GET" => {
                let items: Vec<Value> = cluster
                    .objects
                    .iter()
                    .filter(|(k, o)| {
                        k.plural == plural && k.namespace == namespace && selector.matches(o)
                    })
                    .map(|(_, o)| o.clone())
                    .collect();
                json_response(
                    StatusCode::OK,
                    &json!({
                        "apiVersion": api_version, "kind": format!("{kind}List"),
                        "metadata": {"resourceVersion": cluster.resource_version.to_string()},
                        "items": items,
                    }),
                )
            }
            "POST" => {
                let Some(body) = request.body.clone() else {
                    return status_error(400, "BadRequest", "no JSON body");
                };
                let Some(name) = body["metadata"]["name"].as_str().map(str::to_string) else {
                    return status_error(422, "Invalid", "metadata.name is required");
                };
                let key = ObjectKey {
                    plural,
                    namespace,
                    name,
                };
                if cluster.objects.contains_key(&key) {
                    return status_error(409, "AlreadyExists", &format!("{key:?} exists"));
                }
                json_response(StatusCode::CREATED, &cluster.apply(&key, body))
            }
            "DELETE" => {
                let keys: Vec<ObjectKey> = cluster
                    .objects
                    .iter()
                    .filter(|(k, o)| {
                        k.plural == plural && k.namespace == namespace && selector.matches(o)
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                let items: Vec<Value> = keys.iter().filter_map(|k| cluster.delete(k)).collect();
                json_response(
                    StatusCode::OK,
                    &json!({"apiVersion": api_version, "kind": format!("{kind}List"),
                            "metadata": {}, "items": items}),
                )
            }
            _ => status_error(405, "MethodNotAllowed", method),
        };
    };
    let key = ObjectKey {
        plural: plural.clone(),
        namespace,
        name: name.clone(),
    };
    let not_found = || status_error(404, "NotFound", &format!("{plural} {name} not found"));
    match (method, sub.as_deref()) {
        ("GET", Some("log")) if plural == "pods" => {
            if !cluster.logs.contains_key(&name) {
                return status_error(404, "NotFound", &format!("pod {name} has no log yet"));
            }
            log_stream(shared.clone(), name.clone())
        }
        ("GET", None) => match cluster.objects.get(&key) {
            Some(object) => json_response(StatusCode::OK, object),
            None => not_found(),
        },
        ("PATCH", None) => match request.body.clone() {
            Some(body) => json_response(StatusCode::OK, &cluster.apply(&key, body)),
            None => status_error(400, "BadRequest", "no JSON body"),
        },
        ("PATCH", Some("status")) => {
            let status = request
                .body
                .as_ref()
                .map(|b| b["status"].clone())
                .unwrap_or(Value::Null);
            match cluster.merge_status(&key, &status) {
                Some(object) => json_response(StatusCode::OK, &object),
                None => not_found(),
            }
        }
        ("DELETE", None) => match cluster.delete(&key) {
            Some(object) => json_response(StatusCode::OK, &object),
            None => not_found(),
        },
        _ => status_error(405, "MethodNotAllowed", method),
    }
}

/// `{"type": ..., "object": ...}` lines for the changes after resourceVersion `from`, as they
/// happen; open until the client goes.
fn watch_stream(
    shared: Arc<Shared>,
    plural: String,
    namespace: String,
    selector: Selector,
    from: usize,
) -> Response {
    let bump = shared.bump.subscribe();
    let stream =
        futures::stream::unfold((shared, bump, from), move |(shared, mut bump, mut next)| {
            let (plural, namespace, selector) =
                (plural.clone(), namespace.clone(), selector.clone());
            async move {
                loop {
                    let chunk: String = {
                        let cluster = shared.lock();
                        let chunk = cluster
                            .events
                            .iter()
                            .skip(next)
                            .filter(|e| {
                                e.plural == plural
                                    && e.namespace == namespace
                                    && selector.matches(&e.object)
                            })
                            .map(|e| format!("{}\n", json!({"type": e.kind, "object": e.object})))
                            .collect();
                        next = cluster.events.len();
                        chunk
                    };
                    if !chunk.is_empty() {
                        return Some((
                            Ok::<_, std::convert::Infallible>(Bytes::from(chunk)),
                            (shared, bump, next),
                        ));
                    }
                    bump.changed().await.ok()?;
                }
            }
        });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .expect("a response")
}

/// The Pod's log lines as they are added; ends when the test ends the log.
fn log_stream(shared: Arc<Shared>, pod: String) -> Response {
    let bump = shared.bump.subscribe();
    let stream = futures::stream::unfold(
        (shared, bump, 0usize),
        move |(shared, mut bump, mut next)| {
            let pod = pod.clone();
            async move {
                loop {
                    let (chunk, ended) = {
                        let cluster = shared.lock();
                        let log = cluster.logs.get(&pod)?;
                        let chunk: String = log
                            .lines
                            .iter()
                            .skip(next)
                            .map(|l| format!("{l}\n"))
                            .collect();
                        next = log.lines.len();
                        (chunk, log.ended)
                    };
                    if !chunk.is_empty() {
                        return Some((
                            Ok::<_, std::convert::Infallible>(Bytes::from(chunk)),
                            (shared, bump, next),
                        ));
                    }
                    if ended {
                        return None;
                    }
                    bump.changed().await.ok()?;
                }
            }
        },
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(Body::from_stream(stream))
        .expect("a response")
}
