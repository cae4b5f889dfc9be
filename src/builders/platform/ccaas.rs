//! Chaincode-as-a-service (`ccaas`): `connection.json` at the root of code.tar.gz says where the
//! already-running chaincode listens; the peer dials it. Nothing is built or started.
use serde::Deserialize;

use super::{
    BuildDirs, BuildOptions, BuildScript, Deployment, LaunchSpec, Platform, PlatformError, RunPlan,
    invalid,
};
use crate::builders::package::ChaincodePackage;

pub struct Ccaas;

const NAME: &str = "ccaas";

/// `connection.json`, as Fabric's ccaas builder reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Connection {
    pub address: String,
    #[serde(default)]
    pub dial_timeout: String,
    #[serde(default)]
    pub tls_required: bool,
    #[serde(default)]
    pub client_auth_required: bool,
    #[serde(default)]
    pub client_key: String,
    #[serde(default)]
    pub client_cert: String,
    #[serde(default)]
    pub root_cert: String,
}

fn valid_duration(value: &str) -> bool {
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &value[digits.len()..];
    !digits.is_empty()
        && digits.parse::<f64>().is_ok()
        && matches!(unit, "ns" | "us" | "ms" | "s" | "m" | "h")
}

pub fn connection(package: &ChaincodePackage) -> Result<Connection, PlatformError> {
    let bytes = package
        .code
        .file("connection.json")
        .ok_or_else(|| invalid(NAME, "connection.json not found at the root of code.tar.gz"))?;
    let conn: Connection = serde_json::from_slice(bytes)
        .map_err(|err| invalid(NAME, format!("connection.json is invalid: {err}")))?;
    let port_ok = conn
        .address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok {
        return Err(invalid(
            NAME,
            format!(
                "connection.json address {:?} is not host:port",
                conn.address
            ),
        ));
    }
    if !conn.dial_timeout.is_empty() && !valid_duration(&conn.dial_timeout) {
        return Err(invalid(
            NAME,
            format!(
                "connection.json dial_timeout {:?} is not a duration such as 10s",
                conn.dial_timeout
            ),
        ));
    }
    if conn.tls_required && conn.root_cert.trim().is_empty() {
        return Err(invalid(
            NAME,
            "connection.json requires TLS but root_cert is empty",
        ));
    }
    if conn.client_auth_required
        && (conn.client_key.trim().is_empty() || conn.client_cert.trim().is_empty())
    {
        return Err(invalid(
            NAME,
            "connection.json requires client authentication but client_key or client_cert is empty",
        ));
    }
    Ok(conn)
}

fn not_started(conn: &Connection) -> PlatformError {
    PlatformError::NotApplicable {
        platform: NAME,
        reason: format!(
            "the chaincode runs as a service at {}; there is nothing to build or start",
            conn.address
        ),
    }
}

impl Platform for Ccaas {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self, package: &ChaincodePackage) -> Result<(), PlatformError> {
        connection(package).map(|_| ())
    }

    fn deployment(&self, package: &ChaincodePackage) -> Result<Deployment, PlatformError> {
        Ok(Deployment::Service(connection(package)?))
    }

    fn default_images(&self) -> Option<(&'static str, &'static str)> {
        None
    }

    fn build_script(
        &self,
        package: &ChaincodePackage,
        _dirs: &BuildDirs,
        _options: &BuildOptions,
    ) -> Result<BuildScript, PlatformError> {
        Err(not_started(&connection(package)?))
    }

    fn run_plan(
        &self,
        package: &ChaincodePackage,
        _launch: &LaunchSpec,
        _install_dir: &str,
    ) -> Result<RunPlan, PlatformError> {
        Err(not_started(&connection(package)?))
    }
}

#[cfg(test)]
mod tests {
    use super::valid_duration;

    #[test]
    fn durations_need_a_number_and_a_go_unit() {
        assert!(valid_duration("10s"));
        assert!(valid_duration("1.5m"));
        assert!(!valid_duration("10"));
        assert!(!valid_duration("s"));
        assert!(!valid_duration("10 days"));
    }
}
