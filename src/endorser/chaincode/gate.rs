//! Joins the chaincode stream to the launcher: the launcher is the production
//! [`RegistrationGate`], and chaincode names resolve to running chaincode through it.
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::endorser::chaincode::handle::ChaincodeHandle;
use crate::endorser::chaincode::launcher::Launcher;
use crate::endorser::chaincode::registration::{
    ChaincodeResolver, RegisterRequest, RegistrationGate, RegistrationTicket,
};
pub use crate::endorser::lifecycle::Definitions;
use crate::endorser::lifecycle::definitions::ChaincodeDefinition;

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

/// Resolves a chaincode name through the channel's definitions and launches it on demand.
pub struct LaunchingResolver {
    pub definitions: Arc<Definitions>,
    pub launcher: Launcher<ChaincodeHandle>,
}

impl LaunchingResolver {
    /// The running chaincode behind `name` on `channel`, launched if it is not running.
    pub async fn handle(&self, channel: &str, name: &str) -> Result<ChaincodeHandle, String> {
        let definition = self.definition(channel, name)?;
        self.launch(channel, &definition).await
    }

    /// The committed definition of `name` on `channel`.
    pub fn definition(&self, channel: &str, name: &str) -> Result<ChaincodeDefinition, String> {
        self.definitions
            .get(channel, name)
            .ok_or_else(|| {
                format!(
                    "chaincode {name} is not defined on channel {channel}: install its package, then approve and commit a definition with _lifecycle"
                )
            })
    }

    /// The running chaincode of `definition`, launched if it is not running.
    pub async fn launch(
        &self,
        channel: &str,
        definition: &ChaincodeDefinition,
    ) -> Result<ChaincodeHandle, String> {
        if definition.package_id.is_empty() {
            return Err(format!(
                "chaincode {} (version {}, sequence {}) is defined on channel {channel}, but this org approved it without a package: approve it again with the package id of an installed package",
                definition.name, definition.version, definition.sequence
            ));
        }
        self.launcher
            .ensure_registered(&definition.package_id)
            .await
            .map_err(|err| {
                format!(
                    "chaincode {} on channel {channel} (package {}): {err}",
                    definition.name, definition.package_id
                )
            })
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
    use crate::endorser::chaincode::launcher::LauncherConfig;
    use crate::endorser::chaincode::runtime::process::{ProcessRuntime, ProcessRuntimeConfig};

    fn resolver(dir: &std::path::Path) -> LaunchingResolver {
        let runtime = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig::new(dir)));
        LaunchingResolver {
            definitions: Arc::new(Definitions::default()),
            launcher: Launcher::new(runtime, None, LauncherConfig::new("127.0.0.1:1", "Org1MSP")),
        }
    }

    #[tokio::test]
    async fn undefined_and_packageless_definitions_are_named_without_launching() {
        let dir = tempfile::tempdir().unwrap();
        let resolver = resolver(dir.path());
        let err = resolver.handle("mychannel", "basic").await.unwrap_err();
        assert!(
            err.starts_with("chaincode basic is not defined on channel mychannel"),
            "{err}"
        );
        resolver
            .definitions
            .approve("mychannel", ChaincodeDefinition::new("basic", "1.0", 1, ""))
            .unwrap();
        resolver
            .definitions
            .commit(
                "mychannel",
                &ChaincodeDefinition::new("basic", "1.0", 1, ""),
                "Org1MSP",
            )
            .unwrap();
        let err = resolver.handle("mychannel", "basic").await.unwrap_err();
        assert!(err.contains("approved it without a package"), "{err}");
        let err = resolver.handle("otherchannel", "basic").await.unwrap_err();
        assert!(err.contains("otherchannel"), "{err}");
    }
}
