//! The client for the gateway's own calls (JWKS documents, trace exports): HTTP or HTTPS
//! with the Mozilla root certificates, HTTP/1.1, pooled by hyper-util. Backend calls
//! have their own stack (`upstream`).

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// An HTTP or HTTPS connector.
pub(crate) type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client sending bodies of type `B` over plain HTTP or TLS.
pub(crate) fn client<B>() -> Client<Https, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| {
        b.with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth()
    });
    let connector = match tls {
        Ok(config) => hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .build(),
        // The ring provider always supports the default versions.
        Err(e) => panic!("TLS client setup failed: {e}"),
    };
    Client::builder(TokioExecutor::new()).build(connector)
}
