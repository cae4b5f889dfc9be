//! The tonic TLS configuration the endorser's chaincode listener uses: a real tonic server with
//! `ChaincodeCa::tonic_server_tls` accepts a client presenting a certificate issued by the
//! per-process CA and refuses one from another CA or none.
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chaincode_operator::endorser::chaincode::tls::{ChaincodeCa, IssuedCert};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Stands in for the ChaincodeSupport service: answers every call UNIMPLEMENTED.
#[derive(Clone)]
struct Unimplemented;

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for Unimplemented {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
        std::future::ready(Ok(tonic::Status::unimplemented("test").into_http()))
    }
}

impl tonic::server::NamedService for Unimplemented {
    const NAME: &'static str = "protos.ChaincodeSupport";
}

async fn serve(ca: &ChaincodeCa) -> std::net::SocketAddr {
    let server_cert = ca.issue_server(&["localhost".into()]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = tonic::transport::Server::builder()
        .tls_config(ca.tonic_server_tls(&server_cert))
        .unwrap()
        .add_service(Unimplemented);
    tokio::spawn(
        router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    address
}

fn key_der(cert: &IssuedCert) -> PrivateKeyDer<'static> {
    let key = rcgen::KeyPair::from_pem(&cert.key_pem).unwrap();
    PrivateKeyDer::Pkcs8(key.serialize_der().into())
}

/// Connects with `client` (or no certificate), speaks the HTTP/2 preface and reports whether the
/// server answered with a frame (accepted) rather than closing the connection (refused).
async fn server_answers(
    address: std::net::SocketAddr,
    trusted_root: &ChaincodeCa,
    client: Option<&IssuedCert>,
) -> bool {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(trusted_root.root_der().to_vec()))
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some(cert) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(cert.cert_der.clone())],
                key_der(cert),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let Ok(mut tls) = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
    else {
        return false;
    };
    if tls
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .is_err()
    {
        return false;
    }
    let mut frame_header = [0u8; 9];
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut frame_header))
        .await
        .expect("the server neither answered nor closed");
    // The server's first frame is SETTINGS (type 4).
    read.is_ok() && frame_header[3] == 4
}

#[tokio::test]
async fn tonic_listener_requires_a_client_certificate_from_the_process_ca() {
    let ca = ChaincodeCa::generate("listener test").unwrap();
    let address = serve(&ca).await;

    let issued = ca.issue_client("mycc:1.0").unwrap();
    assert!(server_answers(address, &ca, Some(&issued)).await);

    let stranger = ChaincodeCa::generate("listener test").unwrap();
    let foreign = stranger.issue_client("mycc:1.0").unwrap();
    assert!(!server_answers(address, &ca, Some(&foreign)).await);
    assert!(!server_answers(address, &ca, None).await);

    // The chaincode verifies the listener through peer.crt: another root does not trust it.
    assert!(!server_answers(address, &stranger, Some(&issued)).await);
}
