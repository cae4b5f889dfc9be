//! Identities end to end: dev crypto written to disk in MSP layout, loaded back, and creators
//! checked against the trust store (chain, validity period, organisation, key kind).
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use chaincode_operator::endorser::identity::{
    self, CreatorError, IdentityError, MspError, Organization, SignatureError, SigningIdentity,
    TrustStore, load_organization, load_signing_identity, serialize_identity,
};
use chaincode_operator::endorser::node::devcrypto::{self, DevCa, DevCryptoSpec, LeafSpec};
use time::OffsetDateTime;

fn dev_org() -> (tempfile::TempDir, devcrypto::DevCrypto) {
    let dir = tempfile::tempdir().unwrap();
    let crypto = devcrypto::generate(dir.path(), &DevCryptoSpec::default()).unwrap();
    (dir, crypto)
}

fn trust_store_of(crypto: &devcrypto::DevCrypto) -> TrustStore {
    let org = load_organization("Org1MSP", &crypto.paths.user.dir).unwrap();
    TrustStore::new([org])
}

#[test]
fn dev_crypto_loads_as_signing_identities_whose_signatures_verify_as_creators() {
    let (_dir, crypto) = dev_org();
    let trust = trust_store_of(&crypto);
    for msp in [
        &crypto.paths.endorser,
        &crypto.paths.admin,
        &crypto.paths.user,
    ] {
        let signer = load_signing_identity("Org1MSP", &msp.dir).unwrap();
        assert_eq!(signer.mspid(), "Org1MSP");
        let creator = trust
            .validate_creator(signer.serialized(), SystemTime::now())
            .unwrap();
        assert_eq!(creator.mspid(), "Org1MSP");
        let signature = signer.sign(b"proposal bytes");
        assert_eq!(creator.verify(b"proposal bytes", &signature), Ok(()));
        assert_eq!(
            creator.verify(b"proposal bytez", &signature),
            Err(SignatureError::Invalid)
        );
    }
    let admin = load_signing_identity("Org1MSP", &crypto.paths.admin.dir).unwrap();
    let user = load_signing_identity("Org1MSP", &crypto.paths.user.dir).unwrap();
    let now = SystemTime::now();
    assert!(
        trust
            .validate_creator(admin.serialized(), now)
            .unwrap()
            .is_admin()
    );
    let user_creator = trust.validate_creator(user.serialized(), now).unwrap();
    assert!(!user_creator.is_admin());
    assert_eq!(user_creator.organizational_units(), ["client"]);
    assert!(user_creator.subject().contains("User1@org1.example.com"));
}

#[test]
fn serialized_identity_is_mspid_and_the_certificate_pem() {
    let (_dir, crypto) = dev_org();
    let user = load_signing_identity("Org1MSP", &crypto.paths.user.dir).unwrap();
    let decoded = <chaincode_operator::proto::msp::SerializedIdentity as prost::Message>::decode(
        user.serialized(),
    )
    .unwrap();
    assert_eq!(decoded.mspid, "Org1MSP");
    // Same certificate as the file, in Go's PEM form (what Fabric's MSP serializes).
    let file_der =
        identity::certificate_der_from_pem(&std::fs::read(&crypto.paths.user.cert).unwrap())
            .unwrap();
    assert_eq!(
        identity::certificate_der_from_pem(&decoded.id_bytes).unwrap(),
        file_der
    );
    let text = String::from_utf8(decoded.id_bytes).unwrap();
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(text.ends_with("-----END CERTIFICATE-----\n"));
    assert!(text.lines().all(|line| line.len() <= 64));
}

#[test]
fn private_keys_are_mode_0600_and_paths_are_fixed() {
    let (dir, crypto) = dev_org();
    let root = dir.path();
    for key in [
        root.join("ca/ca_sk"),
        root.join("tlsca/tlsca_sk"),
        root.join("endorser/msp/keystore/priv_sk"),
        root.join("users/Admin/msp/keystore/priv_sk"),
        root.join("users/User1/msp/keystore/priv_sk"),
        root.join("endorser/tls/server.key"),
    ] {
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
    for public in [
        root.join("ca/ca.pem"),
        root.join("endorser/msp/signcerts/cert.pem"),
        root.join("endorser/msp/cacerts/ca.pem"),
        root.join("endorser/msp/tlscacerts/tlsca.pem"),
        root.join("endorser/msp/config.yaml"),
        root.join("users/User1/msp/signcerts/cert.pem"),
        root.join("endorser/tls/server.crt"),
        root.join("endorser/tls/ca.crt"),
    ] {
        assert!(public.is_file(), "{}", public.display());
    }
    assert_eq!(
        crypto.paths.user.cert,
        root.join("users/User1/msp/signcerts/cert.pem")
    );
    assert_eq!(crypto.paths.tls_root(), root.join("endorser/tls/ca.crt"));
}

#[test]
fn regenerating_replaces_keys_and_keeps_0600() {
    let dir = tempfile::tempdir().unwrap();
    let first = devcrypto::generate(dir.path(), &DevCryptoSpec::default()).unwrap();
    std::fs::set_permissions(
        &first.paths.user.key,
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let second = devcrypto::generate(dir.path(), &DevCryptoSpec::default()).unwrap();
    assert_ne!(first.user.cert_pem, second.user.cert_pem);
    let mode = std::fs::metadata(&second.paths.user.key)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    load_signing_identity("Org1MSP", &second.paths.user.dir).unwrap();
}

#[test]
fn tls_server_certificate_is_issued_by_the_tls_ca_for_the_listener_hosts() {
    let (_dir, crypto) = dev_org();
    let der = identity::certificate_der_from_pem(crypto.tls_server.cert_pem.as_bytes()).unwrap();
    let (_, cert) = <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<
        _,
    >>::from_der(&der)
    .unwrap();
    let ca_der = identity::certificate_der_from_pem(crypto.tls_ca.cert_pem.as_bytes()).unwrap();
    let (_, ca) =
        <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<_>>::from_der(
            &ca_der,
        )
        .unwrap();
    cert.verify_signature(Some(ca.public_key())).unwrap();
    let sans = cert.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = sans
        .value
        .general_names
        .iter()
        .map(|name| name.to_string())
        .collect();
    assert!(names.iter().any(|n| n == "DNSName(localhost)"), "{names:?}");
    assert!(
        names.iter().any(|n| n == "IPAddress(7f:00:00:01)"),
        "{names:?}"
    );
    // The TLS CA is not the identity CA: a TLS certificate is no MSP identity.
    assert_ne!(crypto.tls_ca.cert_pem, crypto.ca.cert_pem);
}

#[test]
fn a_creator_from_an_unknown_org_is_refused_by_name() {
    let (_dir, crypto) = dev_org();
    let trust = trust_store_of(&crypto);
    let creator = serialize_identity("Org2MSP", crypto.user.cert_pem.as_bytes());
    assert_eq!(
        trust
            .validate_creator(&creator, SystemTime::now())
            .unwrap_err(),
        CreatorError::UnknownOrganization("Org2MSP".into())
    );
}

#[test]
fn a_certificate_from_a_look_alike_ca_is_untrusted() {
    let (_dir, crypto) = dev_org();
    let trust = trust_store_of(&crypto);
    // Same names as the real CA, different key: the issuer name matches, the signature must not.
    let impostor = DevCa::generate("ca.org1.example.com", "org1.example.com").unwrap();
    let forged = impostor
        .issue(&LeafSpec::identity("User1@org1.example.com", "client"))
        .unwrap();
    let creator = serialize_identity("Org1MSP", forged.cert_pem.as_bytes());
    let error = trust
        .validate_creator(&creator, SystemTime::now())
        .unwrap_err();
    assert!(matches!(error, CreatorError::Untrusted { .. }), "{error}");
    assert!(error.to_string().contains("Org1MSP"), "{error}");
}

#[test]
fn expired_and_not_yet_valid_creators_are_refused_and_validity_is_checked_on_every_use() {
    let (_dir, crypto) = dev_org();
    let trust = trust_store_of(&crypto);
    let ca_key = std::fs::read_to_string(&crypto.paths.ca_key).unwrap();
    assert!(ca_key.contains("PRIVATE KEY"));

    let user = serialize_identity("Org1MSP", crypto.user.cert_pem.as_bytes());
    let now = SystemTime::now();
    trust.validate_creator(&user, now).unwrap();
    // The same (now cached) creator, eleven years later: expired.
    let later = now + Duration::from_secs(11 * 365 * 24 * 3600);
    let error = trust.validate_creator(&user, later).unwrap_err();
    assert!(matches!(error, CreatorError::Expired { .. }), "{error}");
    let earlier = now - Duration::from_secs(2 * 3600);
    let error = trust.validate_creator(&user, earlier).unwrap_err();
    assert!(matches!(error, CreatorError::NotYetValid { .. }), "{error}");
}

#[test]
fn a_short_lived_certificate_expires_on_its_own_not_after() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::generate("ca.org1.example.com", "org1.example.com").unwrap();
    let now = OffsetDateTime::now_utc();
    let mut spec = LeafSpec::identity("Old@org1.example.com", "client");
    spec.not_before = now - time::Duration::days(30);
    spec.not_after = now - time::Duration::days(1);
    let old = ca.issue(&spec).unwrap();
    let org = Organization::from_pems("Org1MSP", &[ca.cert_pem().as_bytes()], &[]).unwrap();
    let trust = TrustStore::new([org]);
    let creator = serialize_identity("Org1MSP", old.cert_pem.as_bytes());
    let error = trust
        .validate_creator(&creator, SystemTime::now())
        .unwrap_err();
    assert!(matches!(error, CreatorError::Expired { .. }), "{error}");
    assert!(
        error.to_string().contains("Old@org1.example.com"),
        "{error}"
    );
    drop(dir);
}

#[test]
fn intermediate_chains_validate_when_the_org_lists_the_intermediate() {
    let root = DevCa::generate("root.org2.example.com", "org2.example.com").unwrap();
    let intermediate = root
        .intermediate("ica.org2.example.com", "org2.example.com")
        .unwrap();
    let member = intermediate
        .issue(&LeafSpec::identity("User1@org2.example.com", "client"))
        .unwrap();
    let creator = serialize_identity("Org2MSP", member.cert_pem.as_bytes());

    let with = Organization::from_pems(
        "Org2MSP",
        &[root.cert_pem().as_bytes()],
        &[intermediate.cert_pem().as_bytes()],
    )
    .unwrap();
    TrustStore::new([with])
        .validate_creator(&creator, SystemTime::now())
        .unwrap();

    let without = Organization::from_pems("Org2MSP", &[root.cert_pem().as_bytes()], &[]).unwrap();
    let error = TrustStore::new([without])
        .validate_creator(&creator, SystemTime::now())
        .unwrap_err();
    assert!(matches!(error, CreatorError::Untrusted { .. }), "{error}");
}

#[test]
fn intermediate_msp_folder_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let root = DevCa::generate("root.org3.example.com", "org3.example.com").unwrap();
    let intermediate = root
        .intermediate("ica.org3.example.com", "org3.example.com")
        .unwrap();
    let member = intermediate
        .issue(&LeafSpec::identity("peer0.org3.example.com", "peer"))
        .unwrap();
    let msp = dir.path().join("msp");
    for (sub, file, text) in [
        ("cacerts", "root.pem", root.cert_pem()),
        ("intermediatecerts", "ica.pem", intermediate.cert_pem()),
        ("signcerts", "peer.pem", member.cert_pem.as_str()),
        // A stray key next to the right one: the loader picks the matching key.
        (
            "keystore",
            "a_other_sk",
            intermediate.cert_and_key().key_pem.as_str(),
        ),
        ("keystore", "b_sk", member.key_pem.as_str()),
    ] {
        std::fs::create_dir_all(msp.join(sub)).unwrap();
        std::fs::write(msp.join(sub).join(file), text).unwrap();
    }
    let signer = load_signing_identity("Org3MSP", &msp).unwrap();
    let org = load_organization("Org3MSP", &msp).unwrap();
    assert_eq!(org.intermediates().len(), 1);
    let creator = TrustStore::new([org])
        .validate_creator(signer.serialized(), SystemTime::now())
        .unwrap();
    assert_eq!(creator.verify(b"x", &signer.sign(b"x")), Ok(()));
}

#[test]
fn a_ca_certificate_is_not_an_identity() {
    let (_dir, crypto) = dev_org();
    let trust = trust_store_of(&crypto);
    let creator = serialize_identity("Org1MSP", crypto.ca.cert_pem.as_bytes());
    let error = trust
        .validate_creator(&creator, SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(error, CreatorError::CaCertificate { .. }),
        "{error}"
    );
}

#[test]
fn garbage_creators_get_clear_errors() {
    let (_dir, crypto) = dev_org();
    let trust = trust_store_of(&crypto);
    let error = trust
        .validate_creator(b"\xff\xff\xff", SystemTime::now())
        .unwrap_err();
    assert!(matches!(error, CreatorError::Malformed(_)), "{error}");
    let not_pem = serialize_identity("Org1MSP", b"hello");
    let error = trust
        .validate_creator(&not_pem, SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(error, CreatorError::BadCertificate { .. }),
        "{error}"
    );
}

#[test]
fn msp_folder_errors_name_the_problem() {
    let (_dir, crypto) = dev_org();
    // A key that is not the certificate's.
    std::fs::write(&crypto.paths.user.key, &crypto.admin.key_pem).unwrap();
    let error = load_signing_identity("Org1MSP", &crypto.paths.user.dir).unwrap_err();
    assert!(
        matches!(error, MspError::NoMatchingKey { tried: 1, .. }),
        "{error}"
    );
    // No signcerts folder at all.
    let empty = tempfile::tempdir().unwrap();
    let error = load_signing_identity("Org1MSP", empty.path()).unwrap_err();
    assert!(error.to_string().contains("signcerts"), "{error}");
    // A leaf certificate in cacerts/ is not a CA.
    let bad = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(bad.path().join("cacerts")).unwrap();
    std::fs::write(bad.path().join("cacerts/ca.pem"), &crypto.user.cert_pem).unwrap();
    let error = load_organization("Org1MSP", bad.path()).unwrap_err();
    assert!(error.to_string().contains("not a CA"), "{error}");
    // Direct construction checks key and certificate belong together.
    assert_eq!(
        SigningIdentity::from_pem(
            "Org1MSP",
            crypto.user.cert_pem.as_bytes(),
            &crypto.admin.key_pem
        )
        .unwrap_err(),
        IdentityError::KeyMismatch
    );
}

/// What a power cut used to leave (an MSP whose signcerts file came back empty) is found before
/// anything loads it, and a fresh organisation replaces the whole directory.
#[test]
fn incomplete_crypto_is_detected_and_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("crypto");
    let first = devcrypto::generate(&root, &DevCryptoSpec::default()).unwrap();
    assert_eq!(first.paths.first_incomplete(), None);
    assert!(!dir.path().join("crypto.partial").exists());

    std::fs::write(&first.paths.endorser.cert, "").unwrap();
    std::fs::write(root.join("stray"), "left over").unwrap();
    assert_eq!(
        first.paths.first_incomplete(),
        Some(first.paths.endorser.cert.clone())
    );
    let second = devcrypto::generate(&root, &DevCryptoSpec::default()).unwrap();
    assert_eq!(second.paths.first_incomplete(), None);
    assert!(!root.join("stray").exists(), "replaced as a whole");
    load_signing_identity("Org1MSP", &second.paths.endorser.dir).unwrap();
}
