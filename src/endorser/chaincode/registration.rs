//! Which REGISTERs the ChaincodeSupport service accepts, and who learns when a chaincode becomes
//! usable or goes away. The launcher implements the gate in production; `DevModeGate` accepts
//! every chaincode (tests and `--dev-mode`).
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::endorser::chaincode::handle::ChaincodeHandle;

/// What the ChaincodeSupport service knows about a REGISTER when it arrives.
pub struct RegisterRequest<'a> {
    /// ChaincodeID.name from the REGISTER payload (the package id, e.g. "mycc:<sha256>" or "mycc:1.0").
    pub chaincode_id: &'a str,
    /// DER of the TLS client certificate the chaincode presented (None in plaintext mode).
    pub client_cert_der: Option<&'a [u8]>,
}

/// Accepted registration; returned to `ready`/`gone` so the gate can match the launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationTicket {
    pub chaincode_id: String,
    pub launch_id: u64,
}

/// Decides which REGISTERs are accepted and learns when a chaincode is usable and when it is gone.
pub trait RegistrationGate: Send + Sync + 'static {
    /// Err(message) refuses: the stream gets an ERROR message carrying `message` and is closed.
    fn authorize(&self, req: &RegisterRequest<'_>) -> Result<RegistrationTicket, String>;
    /// The handler sent READY: `handle` can execute transactions from now on.
    fn ready(&self, ticket: &RegistrationTicket, handle: ChaincodeHandle);
    /// The stream ended (chaincode exited, crashed or was refused after authorize).
    fn gone(&self, ticket: &RegistrationTicket);
}

/// Finds the running chaincode that INVOKE_CHAINCODE names (a chaincode name on a channel).
pub trait ChaincodeResolver: Send + Sync + 'static {
    fn resolve<'a>(
        &'a self,
        channel: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<ChaincodeHandle, String>>;
}

type Registered = HashMap<String, (u64, ChaincodeHandle)>;

/// Accepts every REGISTER and keeps the ready handles by chaincode id. Also resolves chaincode names
/// for INVOKE_CHAINCODE: a name matches the chaincode id itself or its label (`name:...`).
pub struct DevModeGate {
    next_launch: AtomicU64,
    handles: watch::Sender<Registered>,
}

impl Default for DevModeGate {
    fn default() -> Self {
        Self {
            next_launch: AtomicU64::new(1),
            handles: watch::Sender::new(HashMap::new()),
        }
    }
}

fn matches(chaincode_id: &str, name: &str) -> bool {
    chaincode_id == name
        || chaincode_id
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with(':'))
}

impl DevModeGate {
    pub fn new() -> Self {
        Self::default()
    }

    /// The ready handle whose chaincode id or label is `name`.
    pub fn get(&self, name: &str) -> Option<ChaincodeHandle> {
        let map = self.handles.borrow();
        map.iter()
            .find(|(id, _)| matches(id, name))
            .map(|(_, (_, h))| h.clone())
    }

    /// Waits until a chaincode with id or label `name` is ready.
    pub async fn wait_ready(&self, name: &str, timeout: Duration) -> Option<ChaincodeHandle> {
        let mut rx = self.handles.subscribe();
        let found = tokio::time::timeout(
            timeout,
            rx.wait_for(|map| map.keys().any(|id| matches(id, name))),
        )
        .await;
        match found {
            Ok(Ok(map)) => map
                .iter()
                .find(|(id, _)| matches(id, name))
                .map(|(_, (_, h))| h.clone()),
            _ => None,
        }
    }

    /// Waits until no chaincode with id or label `name` is registered.
    pub async fn wait_gone(&self, name: &str, timeout: Duration) -> bool {
        let mut rx = self.handles.subscribe();
        tokio::time::timeout(
            timeout,
            rx.wait_for(|map| !map.keys().any(|id| matches(id, name))),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }
}

impl RegistrationGate for DevModeGate {
    fn authorize(&self, req: &RegisterRequest<'_>) -> Result<RegistrationTicket, String> {
        Ok(RegistrationTicket {
            chaincode_id: req.chaincode_id.to_string(),
            launch_id: self.next_launch.fetch_add(1, Ordering::Relaxed),
        })
    }

    fn ready(&self, ticket: &RegistrationTicket, handle: ChaincodeHandle) {
        self.handles.send_modify(|map| {
            map.insert(ticket.chaincode_id.clone(), (ticket.launch_id, handle));
        });
    }

    fn gone(&self, ticket: &RegistrationTicket) {
        // Only forget the handle of this launch: a newer registration may already have replaced it.
        self.handles.send_if_modified(|map| {
            if map
                .get(&ticket.chaincode_id)
                .is_some_and(|(launch, _)| *launch == ticket.launch_id)
            {
                map.remove(&ticket.chaincode_id);
                true
            } else {
                false
            }
        });
    }
}

impl ChaincodeResolver for DevModeGate {
    fn resolve<'a>(
        &'a self,
        _channel: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<ChaincodeHandle, String>> {
        Box::pin(async move {
            self.get(name)
                .ok_or_else(|| format!("chaincode {name} is not registered"))
        })
    }
}

/// A resolver over a fixed map of names to handles (tests, static setups).
#[derive(Default)]
pub struct StaticResolver {
    pub handles: Mutex<HashMap<String, ChaincodeHandle>>,
}

impl ChaincodeResolver for StaticResolver {
    fn resolve<'a>(
        &'a self,
        _channel: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<ChaincodeHandle, String>> {
        let found = self
            .handles
            .lock()
            .ok()
            .and_then(|m| m.get(name).cloned())
            .ok_or_else(|| format!("chaincode {name} is not registered"));
        Box::pin(async move { found })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_ids_and_labels_only() {
        assert!(matches("mycc:1.0", "mycc"));
        assert!(matches("mycc", "mycc"));
        assert!(!matches("mycc2:1.0", "mycc"));
        assert!(!matches("my", "mycc"));
    }
}
