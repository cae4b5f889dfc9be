//! Chaincode-as-a-service (`ccaas`): `connection.json` at the root of code.tar.gz says where the
//! already-running chaincode listens; the peer dials it. Nothing is built or started.
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

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

/// A Go duration (`time.ParseDuration`): one or more number+unit pairs such as `10s`, `1.5m` or
/// `1m30s`; units `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`. None when it is not one.
pub fn parse_duration(value: &str) -> Option<Duration> {
    let mut rest = value;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The variable Fabric's ccaas builder reads its template values from: a JSON object, e.g.
/// `{"peername":"peer0org1"}`.
pub const BUILDER_CONFIG_ENV: &str = "CHAINCODE_AS_A_SERVICE_BUILDER_CONFIG";

/// Template values for connection.json from [`BUILDER_CONFIG_ENV`] (empty when it is unset).
pub fn builder_config_from_env() -> Result<Map<String, Value>, String> {
    match std::env::var(BUILDER_CONFIG_ENV) {
        Ok(text) if !text.trim().is_empty() => serde_json::from_str(&text)
            .map_err(|err| format!("{BUILDER_CONFIG_ENV} is not a JSON object: {err}")),
        _ => Ok(Map::new()),
    }
}

/// Fills `{{.key}}` placeholders of one connection.json field from `config`, as Fabric's ccaas
/// builder does with Go templates (missing keys are errors). Only plain `{{.key}}` (spaces
/// allowed) is supported; any other template action is refused.
fn fill_template(field: &str, text: &str, config: &Map<String, Value>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("connection.json {field} has an unclosed {{{{"))?;
        let action = after[..end].trim();
        let key = action
            .strip_prefix('.')
            .filter(|key| {
                !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
            .ok_or_else(|| {
                format!(
                    "connection.json {field}: only {{{{.key}}}} placeholders are supported, not {{{{{action}}}}}"
                )
            })?;
        match config.get(key) {
            Some(Value::String(value)) => out.push_str(value),
            Some(value @ (Value::Number(_) | Value::Bool(_))) => out.push_str(&value.to_string()),
            Some(_) => {
                return Err(format!(
                    "connection.json {field}: {BUILDER_CONFIG_ENV} key {key} is not a string, number or boolean"
                ));
            }
            None => {
                return Err(format!(
                    "connection.json {field} uses {{{{.{key}}}}} but {BUILDER_CONFIG_ENV} has no key {key}"
                ));
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// connection.json of `package` with template values from [`BUILDER_CONFIG_ENV`].
pub fn connection(package: &ChaincodePackage) -> Result<Connection, PlatformError> {
    let config = builder_config_from_env().map_err(|err| invalid(NAME, err))?;
    connection_with(package, &config)
}

/// connection.json of `package`, its templates filled from `config`, validated.
pub fn connection_with(
    package: &ChaincodePackage,
    config: &Map<String, Value>,
) -> Result<Connection, PlatformError> {
    let bytes = package
        .code
        .file("connection.json")
        .ok_or_else(|| invalid(NAME, "connection.json not found at the root of code.tar.gz"))?;
    let conn: Connection = serde_json::from_slice(bytes)
        .map_err(|err| invalid(NAME, format!("connection.json is invalid: {err}")))?;
    parse_connection(conn, config)
}

/// Fills the templates of `conn` and validates the result.
pub fn parse_connection(
    mut conn: Connection,
    config: &Map<String, Value>,
) -> Result<Connection, PlatformError> {
    let fill = |field: &str, text: &str| fill_template(field, text, config);
    conn.address = fill("address", &conn.address).map_err(|e| invalid(NAME, e))?;
    conn.dial_timeout = fill("dial_timeout", &conn.dial_timeout).map_err(|e| invalid(NAME, e))?;
    if conn.tls_required {
        conn.root_cert = fill("root_cert", &conn.root_cert).map_err(|e| invalid(NAME, e))?;
        conn.client_key = fill("client_key", &conn.client_key).map_err(|e| invalid(NAME, e))?;
        conn.client_cert = fill("client_cert", &conn.client_cert).map_err(|e| invalid(NAME, e))?;
    }
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
    if !conn.dial_timeout.is_empty() && parse_duration(&conn.dial_timeout).is_none() {
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
    if conn.tls_required
        && conn.client_auth_required
        && (conn.client_key.trim().is_empty() || conn.client_cert.trim().is_empty())
    {
        return Err(invalid(
            NAME,
            "connection.json requires client authentication but client_key or client_cert is empty",
        ));
    }
    if conn.tls_required {
        check_pem(&conn)?;
    }
    Ok(conn)
}

/// The PEM fields hold what TLS needs: at least one certificate in root_cert and, for client
/// authentication, a certificate and a private key.
fn check_pem(conn: &Connection) -> Result<(), PlatformError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = |field: &str, pem: &str| {
        let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
        match certs {
            Ok(certs) if !certs.is_empty() => Ok(()),
            Ok(_) => Err(invalid(
                NAME,
                format!("connection.json {field} holds no PEM certificate"),
            )),
            Err(err) => Err(invalid(
                NAME,
                format!("connection.json {field} is not PEM: {err}"),
            )),
        }
    };
    certs("root_cert", &conn.root_cert)?;
    if conn.client_auth_required {
        certs("client_cert", &conn.client_cert)?;
        PrivateKeyDer::from_pem_slice(conn.client_key.as_bytes()).map_err(|err| {
            invalid(
                NAME,
                format!("connection.json client_key is not a PEM private key: {err}"),
            )
        })?;
    }
    Ok(())
}

impl Connection {
    /// How long dialling may take: `dial_timeout`, or [`DEFAULT_DIAL_TIMEOUT`] when it is empty.
    pub fn dial_timeout(&self) -> Duration {
        parse_duration(&self.dial_timeout).unwrap_or(DEFAULT_DIAL_TIMEOUT)
    }
}

/// Dial timeout when connection.json gives none (gRPC's usual connection timeout in Fabric).
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(3);

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
    use super::*;

    #[test]
    fn durations_follow_go_syntax() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5m"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("10 days"), None);
        assert_eq!(parse_duration(""), None);
    }

    fn conn(address: &str) -> Connection {
        Connection {
            address: address.into(),
            dial_timeout: "10s".into(),
            tls_required: false,
            client_auth_required: false,
            client_key: String::new(),
            client_cert: String::new(),
            root_cert: String::new(),
        }
    }

    #[test]
    fn templates_are_filled_from_the_builder_config_like_fabrics_ccaas_builder() {
        let config: Map<String, Value> =
            serde_json::from_str(r#"{"peername":"peer0org1","port":9999}"#).unwrap();
        let filled = parse_connection(conn("{{.peername}}_basic:{{ .port }}"), &config).unwrap();
        assert_eq!(filled.address, "peer0org1_basic:9999");

        let err = parse_connection(conn("{{.peername}}_basic:9999"), &Map::new()).unwrap_err();
        assert!(
            err.to_string().contains(
                "uses {{.peername}} but CHAINCODE_AS_A_SERVICE_BUILDER_CONFIG has no key peername"
            ),
            "{err}"
        );
        let err = parse_connection(conn("{{if .x}}a{{end}}:1"), &config).unwrap_err();
        assert!(
            err.to_string().contains("only {{.key}} placeholders"),
            "{err}"
        );
        let err = parse_connection(conn("{{.peername:1"), &config).unwrap_err();
        assert!(err.to_string().contains("unclosed"), "{err}");
    }

    #[test]
    fn tls_fields_are_checked_only_with_tls() {
        let mut c = conn("cc:7052");
        c.client_auth_required = true;
        assert!(parse_connection(c.clone(), &Map::new()).is_ok());
        c.tls_required = true;
        let err = parse_connection(c.clone(), &Map::new()).unwrap_err();
        assert!(err.to_string().contains("root_cert is empty"), "{err}");
        c.root_cert = "PEM".into();
        let err = parse_connection(c.clone(), &Map::new()).unwrap_err();
        assert!(
            err.to_string().contains("client_key or client_cert"),
            "{err}"
        );
        c.client_key = "KEY".into();
        c.client_cert = "CERT".into();
        let err = parse_connection(c.clone(), &Map::new()).unwrap_err();
        assert!(
            err.to_string()
                .contains("root_cert holds no PEM certificate"),
            "{err}"
        );
        c.dial_timeout = "soon".into();
        c.client_auth_required = false;
        let err = parse_connection(c, &Map::new()).unwrap_err();
        assert!(err.to_string().contains("dial_timeout"), "{err}");
        assert_eq!(conn("a:1").dial_timeout(), Duration::from_secs(10));
    }
}
