//! Joins the chaincode stream to the launcher: the launcher is the production
//! [`RegistrationGate`], and chaincode names resolve to running chaincode through it.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;

use crate::endorser::handle::ChaincodeHandle;
use crate::endorser::launcher::Launcher;
use crate::endorser::registration::{
    ChaincodeResolver, RegisterRequest, RegistrationGate, RegistrationTicket,
};

impl RegistrationGate for Launcher<ChaincodeHandle> {
    fn authorize(&self, req: &RegisterRequest<'_>) -> Result<RegistrationTicket, String> {
        Launcher::authorize(self, req.chaincode_id, req.client_cert_der)
            .map(|launch_id| RegistrationTicket {
                chaincode_id: req.chaincode_id.to_string(),
                launch_id,
            })
            .map_err(|refused| refused.to_string())
    }

    fn ready(&self, ticket: &RegistrationTicket, handle: ChaincodeHandle) {
        Launcher::ready(self, &ticket.chaincode_id, ticket.launch_id, handle);
    }

    fn gone(&self, ticket: &RegistrationTicket) {
        Launcher::gone(self, &ticket.chaincode_id, ticket.launch_id);
    }
}

/// Which package runs each chaincode name on each channel (the channel's chaincode definitions).
#[derive(Debug, Default)]
pub struct Definitions {
    by_channel: RwLock<HashMap<String, HashMap<String, String>>>,
}

impl Definitions {
    /// Defines (or redefines) `name` on `channel` as running `package_id`.
    pub fn define(&self, channel: &str, name: &str, package_id: &str) {
        let mut map = self
            .by_channel
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(channel.to_string())
            .or_default()
            .insert(name.to_string(), package_id.to_string());
    }

    /// The package id defined for `name` on `channel`.
    pub fn package_id(&self, channel: &str, name: &str) -> Option<String> {
        let map = self
            .by_channel
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(channel).and_then(|names| names.get(name)).cloned()
    }
}

/// Resolves a chaincode name through the channel's definitions and launches it on demand.
pub struct LaunchingResolver {
    pub definitions: Arc<Definitions>,
    pub launcher: Launcher<ChaincodeHandle>,
}

impl LaunchingResolver {
    /// The running chaincode behind `name` on `channel`, launched if it is not running.
    pub async fn handle(&self, channel: &str, name: &str) -> Result<ChaincodeHandle, String> {
        let package_id = self
            .definitions
            .package_id(channel, name)
            .ok_or_else(|| format!("chaincode {name} is not defined on channel {channel}"))?;
        self.launcher
            .ensure_registered(&package_id)
            .await
            .map_err(|err| err.to_string())
    }
}

impl ChaincodeResolver for LaunchingResolver {
    fn resolve<'a>(
        &'a self,
        channel: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<ChaincodeHandle, String>> {
        Box::pin(self.handle(channel, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_per_channel_and_redefinable() {
        let defs = Definitions::default();
        defs.define("ch1", "asset", "asset:aaa");
        assert_eq!(
            defs.package_id("ch1", "asset").as_deref(),
            Some("asset:aaa")
        );
        assert_eq!(defs.package_id("ch2", "asset"), None);
        defs.define("ch1", "asset", "asset:bbb");
        assert_eq!(
            defs.package_id("ch1", "asset").as_deref(),
            Some("asset:bbb")
        );
    }
}
