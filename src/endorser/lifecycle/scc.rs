//! The `_lifecycle` system chaincode: argument 0 names the function, argument 1 is the encoded
//! `lifecycle.<Function>Args`; a success carries the encoded `<Function>Result` as payload.
//!
//! Access follows Fabric's default ACLs: installing, querying installed packages, approving and
//! querying approvals need an admin of this endorser's own org (policy `Admins` of the local
//! MSP, NodeOU `admin`); committing, commit readiness and querying definitions need the channel's
//! `Writers`, which every creator the proposal validator accepted is. Error texts are Fabric's.
use prost::Message;

use super::definitions::{ChaincodeDefinition, DefinitionError};
use super::installed::PackageStoreError;
use super::{Lifecycle, LifecycleError};
use crate::endorser::identity::Creator;
use crate::proto::lifecycle::{
    ApproveChaincodeDefinitionForMyOrgArgs, ApproveChaincodeDefinitionForMyOrgResult,
    ChaincodeSource, CheckCommitReadinessArgs, CheckCommitReadinessResult,
    CommitChaincodeDefinitionArgs, CommitChaincodeDefinitionResult,
    GetInstalledChaincodePackageArgs, GetInstalledChaincodePackageResult, InstallChaincodeArgs,
    InstallChaincodeResult, QueryApprovedChaincodeDefinitionArgs,
    QueryApprovedChaincodeDefinitionResult, QueryChaincodeDefinitionArgs,
    QueryChaincodeDefinitionResult, QueryChaincodeDefinitionsArgs, QueryChaincodeDefinitionsResult,
    QueryInstalledChaincodeArgs, QueryInstalledChaincodeResult, QueryInstalledChaincodesArgs,
    QueryInstalledChaincodesResult, chaincode_source, query_chaincode_definitions_result,
    query_installed_chaincode_result, query_installed_chaincodes_result,
};
use crate::proto::protos::{CollectionConfigPackage, Response};

/// The system chaincode's name.
pub const LIFECYCLE_NAME: &str = "_lifecycle";
/// The version Fabric gives every system chaincode (`scc.SysCCVersion`).
pub const SYSCC_VERSION: &str = "syscc";

/// Who sends an invocation: enough to evaluate the lifecycle's ACLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub mspid: String,
    pub subject: String,
    pub is_admin: bool,
}

impl From<&Creator> for Caller {
    fn from(creator: &Creator) -> Self {
        Self {
            mspid: creator.mspid().to_string(),
            subject: creator.subject().to_string(),
            is_admin: creator.is_admin(),
        }
    }
}

/// The policy a function's default ACL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acl {
    /// `Admins` of this peer's local MSP.
    LocalAdmins,
    /// `/Channel/Application/Writers`: any member of the channel's orgs.
    ChannelWriters,
}

const FUNCTIONS: [(&str, Acl, bool); 10] = [
    // (name, ACL, needs a channel)
    ("InstallChaincode", Acl::LocalAdmins, false),
    ("QueryInstalledChaincode", Acl::LocalAdmins, false),
    ("QueryInstalledChaincodes", Acl::LocalAdmins, false),
    ("GetInstalledChaincodePackage", Acl::LocalAdmins, false),
    ("ApproveChaincodeDefinitionForMyOrg", Acl::LocalAdmins, true),
    ("QueryApprovedChaincodeDefinition", Acl::LocalAdmins, true),
    ("CheckCommitReadiness", Acl::ChannelWriters, true),
    ("CommitChaincodeDefinition", Acl::ChannelWriters, true),
    ("QueryChaincodeDefinition", Acl::ChannelWriters, true),
    ("QueryChaincodeDefinitions", Acl::ChannelWriters, true),
];

fn error(status: i32, message: String) -> Response {
    Response {
        status,
        message,
        payload: Vec::new(),
    }
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, LifecycleError> {
    M::decode(bytes).map_err(|e| {
        LifecycleError::Arguments(format!(
            "could not unmarshal input for {}: {e}",
            std::any::type_name::<M>()
                .rsplit("::")
                .next()
                .unwrap_or("arguments")
        ))
    })
}

fn collections(package: Option<CollectionConfigPackage>) -> Vec<Vec<u8>> {
    package.map(|p| p.config).unwrap_or_default()
}

fn collection_package(configs: &[Vec<u8>]) -> Option<CollectionConfigPackage> {
    Some(CollectionConfigPackage {
        config: configs.to_vec(),
    })
}

fn source(package_id: &str) -> Option<ChaincodeSource> {
    let r#type = if package_id.is_empty() {
        chaincode_source::Type::Unavailable(chaincode_source::Unavailable {})
    } else {
        chaincode_source::Type::LocalPackage(chaincode_source::Local {
            package_id: package_id.to_string(),
        })
    };
    Some(ChaincodeSource {
        r#type: Some(r#type),
    })
}

/// The definition in a Commit/CheckCommitReadiness argument (both carry the same fields).
#[allow(clippy::too_many_arguments)]
fn definition(
    name: String,
    version: String,
    sequence: i64,
    init_required: bool,
    endorsement_plugin: String,
    validation_plugin: String,
    validation_parameter: Vec<u8>,
    collection_configs: Option<CollectionConfigPackage>,
) -> ChaincodeDefinition {
    ChaincodeDefinition {
        name,
        version,
        sequence,
        package_id: String::new(),
        init_required,
        endorsement_plugin,
        validation_plugin,
        validation_parameter,
        collections: collections(collection_configs),
    }
    .with_defaults()
}

impl Lifecycle {
    /// Serves one `_lifecycle` invocation by `caller` on `channel` (empty for channel-less
    /// functions). Every failure is a `Response` with Fabric's status and text, never a panic.
    pub fn invoke(&self, caller: &Caller, channel: &str, args: &[Vec<u8>]) -> Response {
        if args.is_empty() {
            return error(500, "lifecycle scc must be invoked with arguments".into());
        }
        if args.len() != 2 {
            return error(
                500,
                format!(
                    "lifecycle scc operations require exactly two arguments but received {}",
                    args.len()
                ),
            );
        }
        let function = String::from_utf8_lossy(&args[0]).into_owned();
        let Some(&(_, acl, needs_channel)) = FUNCTIONS.iter().find(|(name, ..)| *name == function)
        else {
            return error(
                500,
                format!(
                    "failed to invoke backing implementation of '{function}': unknown function; _lifecycle serves {}",
                    FUNCTIONS
                        .iter()
                        .map(|(name, ..)| *name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        };
        if let Err(reason) = self.check_acl(caller, acl) {
            return error(
                500,
                format!("Failed to authorize invocation due to failed ACL check: {reason}"),
            );
        }
        if needs_channel && channel.is_empty() {
            return error(
                500,
                format!(
                    "failed to invoke backing implementation of '{function}': {function} must be invoked on a channel"
                ),
            );
        }
        match self.dispatch(&function, channel, &args[1]) {
            Ok(payload) => Response {
                status: 200,
                message: String::new(),
                payload,
            },
            // Fabric answers these two with 404 and the bare message.
            Err(
                err @ (LifecycleError::Package(PackageStoreError::NotFound(_))
                | LifecycleError::Definition(DefinitionError::NotDefined(_))),
            ) => error(404, err.to_string()),
            Err(err) => error(
                500,
                format!("failed to invoke backing implementation of '{function}': {err}"),
            ),
        }
    }

    fn check_acl(&self, caller: &Caller, acl: Acl) -> Result<(), String> {
        match acl {
            // The proposal validator already accepted the creator as a member of a channel org.
            Acl::ChannelWriters => Ok(()),
            Acl::LocalAdmins if caller.mspid != self.mspid => Err(format!(
                "the creator's org {} does not satisfy policy [Admins] of this peer's local MSP {}",
                caller.mspid, self.mspid
            )),
            Acl::LocalAdmins if !caller.is_admin => Err(format!(
                "the creator [{}] of {} does not satisfy policy [Admins]: it is not an admin (NodeOU 'admin') of {}",
                caller.subject, caller.mspid, self.mspid
            )),
            Acl::LocalAdmins => Ok(()),
        }
    }

    fn dispatch(
        &self,
        function: &str,
        channel: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, LifecycleError> {
        let payload = match function {
            "InstallChaincode" => {
                let args: InstallChaincodeArgs = decode(input)?;
                let installed = self.install(&args.chaincode_install_package)?;
                InstallChaincodeResult {
                    package_id: installed.package_id,
                    label: installed.label,
                }
                .encode_to_vec()
            }
            "QueryInstalledChaincode" => {
                let args: QueryInstalledChaincodeArgs = decode(input)?;
                let package = self.packages.get(&args.package_id)?;
                let references =
                    self.references(&package.package_id)
                        .into_iter()
                        .map(|(channel, chaincodes)| {
                            let chaincodes = chaincodes
                                .into_iter()
                                .map(|(name, version)| {
                                    query_installed_chaincode_result::Chaincode { name, version }
                                })
                                .collect();
                            (
                                channel,
                                query_installed_chaincode_result::References { chaincodes },
                            )
                        })
                        .collect();
                QueryInstalledChaincodeResult {
                    package_id: package.package_id,
                    label: package.label,
                    references,
                }
                .encode_to_vec()
            }
            "QueryInstalledChaincodes" => {
                let _: QueryInstalledChaincodesArgs = decode(input)?;
                let installed_chaincodes = self
                    .packages
                    .list()
                    .into_iter()
                    .map(|package| {
                        let references = self
                            .references(&package.package_id)
                            .into_iter()
                            .map(|(channel, chaincodes)| {
                                let chaincodes = chaincodes
                                    .into_iter()
                                    .map(|(name, version)| {
                                        query_installed_chaincodes_result::Chaincode {
                                            name,
                                            version,
                                        }
                                    })
                                    .collect();
                                (
                                    channel,
                                    query_installed_chaincodes_result::References { chaincodes },
                                )
                            })
                            .collect();
                        query_installed_chaincodes_result::InstalledChaincode {
                            package_id: package.package_id,
                            label: package.label,
                            references,
                        }
                    })
                    .collect();
                QueryInstalledChaincodesResult {
                    installed_chaincodes,
                }
                .encode_to_vec()
            }
            "GetInstalledChaincodePackage" => {
                let args: GetInstalledChaincodePackageArgs = decode(input)?;
                GetInstalledChaincodePackageResult {
                    chaincode_install_package: self.packages.bytes(&args.package_id)?,
                }
                .encode_to_vec()
            }
            "ApproveChaincodeDefinitionForMyOrg" => {
                let args: ApproveChaincodeDefinitionForMyOrgArgs = decode(input)?;
                let package_id = match args.source.and_then(|s| s.r#type) {
                    Some(chaincode_source::Type::LocalPackage(local)) => local.package_id,
                    Some(chaincode_source::Type::Unavailable(_)) | None => String::new(),
                };
                let mut def = definition(
                    args.name,
                    args.version,
                    args.sequence,
                    args.init_required,
                    args.endorsement_plugin,
                    args.validation_plugin,
                    args.validation_parameter,
                    args.collections,
                );
                def.package_id = package_id;
                self.approve(channel, def)?;
                ApproveChaincodeDefinitionForMyOrgResult {}.encode_to_vec()
            }
            "QueryApprovedChaincodeDefinition" => {
                let args: QueryApprovedChaincodeDefinitionArgs = decode(input)?;
                let def = self
                    .definitions
                    .approved(channel, &args.name, args.sequence)?;
                QueryApprovedChaincodeDefinitionResult {
                    sequence: def.sequence,
                    version: def.version,
                    endorsement_plugin: def.endorsement_plugin,
                    validation_plugin: def.validation_plugin,
                    validation_parameter: def.validation_parameter,
                    collections: collection_package(&def.collections),
                    init_required: def.init_required,
                    source: source(&def.package_id),
                }
                .encode_to_vec()
            }
            "CheckCommitReadiness" => {
                let args: CheckCommitReadinessArgs = decode(input)?;
                let def = definition(
                    args.name,
                    args.version,
                    args.sequence,
                    args.init_required,
                    args.endorsement_plugin,
                    args.validation_plugin,
                    args.validation_parameter,
                    args.collections,
                );
                CheckCommitReadinessResult {
                    approvals: self
                        .check_commit_readiness(channel, &def)?
                        .into_iter()
                        .collect(),
                }
                .encode_to_vec()
            }
            "CommitChaincodeDefinition" => {
                let args: CommitChaincodeDefinitionArgs = decode(input)?;
                let def = definition(
                    args.name,
                    args.version,
                    args.sequence,
                    args.init_required,
                    args.endorsement_plugin,
                    args.validation_plugin,
                    args.validation_parameter,
                    args.collections,
                );
                let committed = self.commit(channel, &def)?;
                tracing::info!(
                    channel,
                    name = committed.name,
                    version = committed.version,
                    sequence = committed.sequence,
                    package_id = committed.package_id,
                    "chaincode definition committed"
                );
                CommitChaincodeDefinitionResult {}.encode_to_vec()
            }
            "QueryChaincodeDefinition" => {
                let args: QueryChaincodeDefinitionArgs = decode(input)?;
                let def = self
                    .definitions
                    .get(channel, &args.name)
                    .ok_or_else(|| DefinitionError::NotDefined(args.name.clone()))?;
                let approved = self
                    .definitions
                    .approved(channel, &def.name, def.sequence)
                    .is_ok_and(|approval| approval.same_parameters(&def));
                QueryChaincodeDefinitionResult {
                    sequence: def.sequence,
                    version: def.version,
                    endorsement_plugin: def.endorsement_plugin,
                    validation_plugin: def.validation_plugin,
                    validation_parameter: def.validation_parameter,
                    collections: collection_package(&def.collections),
                    init_required: def.init_required,
                    approvals: [(self.mspid.clone(), approved)].into_iter().collect(),
                }
                .encode_to_vec()
            }
            "QueryChaincodeDefinitions" => {
                let _: QueryChaincodeDefinitionsArgs = decode(input)?;
                let chaincode_definitions = self
                    .definitions
                    .list(channel)
                    .into_iter()
                    .map(
                        |def| query_chaincode_definitions_result::ChaincodeDefinition {
                            name: def.name,
                            sequence: def.sequence,
                            version: def.version,
                            endorsement_plugin: def.endorsement_plugin,
                            validation_plugin: def.validation_plugin,
                            validation_parameter: def.validation_parameter,
                            collections: collection_package(&def.collections),
                            init_required: def.init_required,
                        },
                    )
                    .collect();
                QueryChaincodeDefinitionsResult {
                    chaincode_definitions,
                }
                .encode_to_vec()
            }
            other => {
                return Err(LifecycleError::Arguments(format!(
                    "unknown function {other}"
                )));
            }
        };
        Ok(payload)
    }

    /// channel → (name, version) of the committed definitions running `package_id`.
    fn references(
        &self,
        package_id: &str,
    ) -> std::collections::BTreeMap<String, Vec<(String, String)>> {
        let mut by_channel = std::collections::BTreeMap::<String, Vec<(String, String)>>::new();
        for (channel, def) in self.definitions.references(package_id) {
            by_channel
                .entry(channel)
                .or_default()
                .push((def.name, def.version));
        }
        by_channel
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::Limits;
    use crate::builders::package::package_source_dir;
    use crate::endorser::chaincode::runtime::process::{ProcessRuntime, ProcessRuntimeConfig};
    use std::sync::Arc;

    const CH: &str = "mychannel";

    fn admin() -> Caller {
        Caller {
            mspid: "Org1MSP".into(),
            subject: "CN=Admin@org1.example.com, OU=admin".into(),
            is_admin: true,
        }
    }

    fn user() -> Caller {
        Caller {
            mspid: "Org1MSP".into(),
            subject: "CN=User1@org1.example.com, OU=client".into(),
            is_admin: false,
        }
    }

    fn node_package(label: &str) -> Vec<u8> {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(
            src.path().join("package.json"),
            r#"{"name":"cc","version":"1.0.0","scripts":{"start":"fabric-chaincode-node start"}}"#,
        )
        .unwrap();
        std::fs::write(src.path().join("index.js"), "module.exports = {};\n").unwrap();
        package_source_dir(src.path(), "node", label, None, &Limits::default()).unwrap()
    }

    fn open(dir: &std::path::Path) -> Lifecycle {
        let runtime = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig::new(
            dir.join("work"),
        )));
        Lifecycle::open(&dir.join("data"), runtime, &dir.join("work"), "Org1MSP").unwrap()
    }

    fn call(
        lc: &Lifecycle,
        caller: &Caller,
        channel: &str,
        f: &str,
        args: impl Message,
    ) -> Response {
        lc.invoke(
            caller,
            channel,
            &[f.as_bytes().to_vec(), args.encode_to_vec()],
        )
    }

    fn install(lc: &Lifecycle, caller: &Caller, bytes: &[u8]) -> Response {
        call(
            lc,
            caller,
            "",
            "InstallChaincode",
            InstallChaincodeArgs {
                chaincode_install_package: bytes.to_vec(),
            },
        )
    }

    fn approve_args(sequence: i64, package_id: &str) -> ApproveChaincodeDefinitionForMyOrgArgs {
        ApproveChaincodeDefinitionForMyOrgArgs {
            sequence,
            name: "basic".into(),
            version: "1.0".into(),
            init_required: true,
            source: source(package_id),
            ..Default::default()
        }
    }

    fn commit_args(sequence: i64) -> CommitChaincodeDefinitionArgs {
        CommitChaincodeDefinitionArgs {
            sequence,
            name: "basic".into(),
            version: "1.0".into(),
            init_required: true,
            ..Default::default()
        }
    }

    #[test]
    fn install_answers_label_and_sha256_and_refuses_users_duplicates_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let lc = open(dir.path());
        let bytes = node_package("basic_1.0");

        let refused = install(&lc, &user(), &bytes);
        assert_eq!(refused.status, 500);
        assert!(
            refused
                .message
                .starts_with("Failed to authorize invocation due to failed ACL check:"),
            "{}",
            refused.message
        );
        assert!(refused.message.contains("[Admins]"), "{}", refused.message);
        let other_org = Caller {
            mspid: "Org2MSP".into(),
            ..admin()
        };
        assert_eq!(install(&lc, &other_org, &bytes).status, 500);
        assert!(lc.packages().list().is_empty());

        let response = install(&lc, &admin(), &bytes);
        assert_eq!(response.status, 200, "{}", response.message);
        let result = InstallChaincodeResult::decode(response.payload.as_slice()).unwrap();
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        assert_eq!(result.package_id, format!("basic_1.0:{hash}"));
        assert_eq!(result.label, "basic_1.0");

        let again = install(&lc, &admin(), &bytes);
        assert_eq!(again.status, 500);
        assert_eq!(
            again.message,
            format!(
                "failed to invoke backing implementation of 'InstallChaincode': chaincode already successfully installed (package ID 'basic_1.0:{hash}')"
            )
        );

        let garbage = install(&lc, &admin(), b"not a tar.gz");
        assert_eq!(garbage.status, 500);
        assert!(
            garbage
                .message
                .contains("could not build chaincode: reading the package"),
            "{}",
            garbage.message
        );
        assert_eq!(lc.packages().list().len(), 1);
    }

    #[test]
    fn arguments_are_checked_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let lc = open(dir.path());
        assert_eq!(
            lc.invoke(&admin(), "", &[]).message,
            "lifecycle scc must be invoked with arguments"
        );
        assert!(
            lc.invoke(&admin(), "", &[b"InstallChaincode".to_vec()])
                .message
                .contains("exactly two arguments but received 1")
        );
        let unknown = lc.invoke(&admin(), CH, &[b"Deploy".to_vec(), Vec::new()]);
        assert_eq!(unknown.status, 500);
        assert!(unknown.message.contains("'Deploy'"), "{}", unknown.message);
        let bad = lc.invoke(
            &admin(),
            "",
            &[b"InstallChaincode".to_vec(), vec![0xff, 0xff, 0xff]],
        );
        assert_eq!(bad.status, 500);
        assert!(
            bad.message.contains("InstallChaincodeArgs"),
            "{}",
            bad.message
        );
        let no_channel = call(
            &lc,
            &admin(),
            "",
            "CommitChaincodeDefinition",
            commit_args(1),
        );
        assert!(no_channel.message.contains("must be invoked on a channel"));
    }

    #[test]
    fn approve_commit_and_queries_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = node_package("basic_1.0");
        let package_id = {
            let lc = open(dir.path());
            let response = install(&lc, &admin(), &bytes);
            let package_id = InstallChaincodeResult::decode(response.payload.as_slice())
                .unwrap()
                .package_id;

            // Approving is for admins; committing for any channel member, once approved.
            let refused = call(
                &lc,
                &user(),
                CH,
                "ApproveChaincodeDefinitionForMyOrg",
                approve_args(1, &package_id),
            );
            assert_eq!(refused.status, 500);
            let early = call(
                &lc,
                &user(),
                CH,
                "CommitChaincodeDefinition",
                commit_args(1),
            );
            assert_eq!(
                early.message,
                "failed to invoke backing implementation of 'CommitChaincodeDefinition': chaincode definition not agreed to by this org (Org1MSP)"
            );
            let approved = call(
                &lc,
                &admin(),
                CH,
                "ApproveChaincodeDefinitionForMyOrg",
                approve_args(1, &package_id),
            );
            assert_eq!(approved.status, 200, "{}", approved.message);

            let readiness = call(
                &lc,
                &user(),
                CH,
                "CheckCommitReadiness",
                CheckCommitReadinessArgs {
                    sequence: 1,
                    name: "basic".into(),
                    version: "1.0".into(),
                    init_required: true,
                    ..Default::default()
                },
            );
            let readiness =
                CheckCommitReadinessResult::decode(readiness.payload.as_slice()).unwrap();
            assert_eq!(readiness.approvals.get("Org1MSP"), Some(&true));

            let committed = call(
                &lc,
                &user(),
                CH,
                "CommitChaincodeDefinition",
                commit_args(1),
            );
            assert_eq!(committed.status, 200, "{}", committed.message);
            let wrong = call(
                &lc,
                &admin(),
                CH,
                "CommitChaincodeDefinition",
                commit_args(1),
            );
            assert!(
                wrong
                    .message
                    .ends_with("requested sequence is 1, but new definition must be sequence 2"),
                "{}",
                wrong.message
            );
            package_id
        };

        let lc = open(dir.path());
        let def = lc.definitions().get(CH, "basic").unwrap();
        assert_eq!(
            (
                def.version.as_str(),
                def.sequence,
                def.package_id.as_str(),
                def.init_required
            ),
            ("1.0", 1, package_id.as_str(), true)
        );
        let listed = call(
            &lc,
            &admin(),
            "",
            "QueryInstalledChaincodes",
            QueryInstalledChaincodesArgs {},
        );
        let listed = QueryInstalledChaincodesResult::decode(listed.payload.as_slice()).unwrap();
        assert_eq!(listed.installed_chaincodes.len(), 1);
        let installed = &listed.installed_chaincodes[0];
        assert_eq!(installed.package_id, package_id);
        let refs = &installed.references[CH].chaincodes;
        assert_eq!(
            (refs[0].name.as_str(), refs[0].version.as_str()),
            ("basic", "1.0")
        );

        let query = call(
            &lc,
            &user(),
            CH,
            "QueryChaincodeDefinition",
            QueryChaincodeDefinitionArgs {
                name: "basic".into(),
            },
        );
        let query = QueryChaincodeDefinitionResult::decode(query.payload.as_slice()).unwrap();
        assert_eq!(
            (query.sequence, query.version.as_str(), query.init_required),
            (1, "1.0", true)
        );
        assert_eq!(query.endorsement_plugin, "escc");
        assert_eq!(query.approvals.get("Org1MSP"), Some(&true));
        let all = call(
            &lc,
            &user(),
            CH,
            "QueryChaincodeDefinitions",
            QueryChaincodeDefinitionsArgs {},
        );
        let all = QueryChaincodeDefinitionsResult::decode(all.payload.as_slice()).unwrap();
        assert_eq!(all.chaincode_definitions.len(), 1);

        let approved = call(
            &lc,
            &admin(),
            CH,
            "QueryApprovedChaincodeDefinition",
            QueryApprovedChaincodeDefinitionArgs {
                name: "basic".into(),
                sequence: 0,
            },
        );
        let approved =
            QueryApprovedChaincodeDefinitionResult::decode(approved.payload.as_slice()).unwrap();
        assert_eq!(approved.source, source(&package_id));

        let package = call(
            &lc,
            &admin(),
            "",
            "GetInstalledChaincodePackage",
            GetInstalledChaincodePackageArgs {
                package_id: package_id.clone(),
            },
        );
        let package =
            GetInstalledChaincodePackageResult::decode(package.payload.as_slice()).unwrap();
        assert_eq!(package.chaincode_install_package, bytes);

        let missing = call(
            &lc,
            &user(),
            CH,
            "QueryChaincodeDefinition",
            QueryChaincodeDefinitionArgs {
                name: "nosuchcc".into(),
            },
        );
        assert_eq!(
            (missing.status, missing.message.as_str()),
            (404, "namespace nosuchcc is not defined")
        );
        let missing = call(
            &lc,
            &admin(),
            "",
            "QueryInstalledChaincode",
            QueryInstalledChaincodeArgs {
                package_id: "x:1".into(),
            },
        );
        assert_eq!(
            (missing.status, missing.message.as_str()),
            (404, "chaincode install package 'x:1' not found")
        );
    }
}
