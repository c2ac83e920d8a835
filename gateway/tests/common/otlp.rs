//! A real OTLP/gRPC trace receiver for the tests (a tonic server from `opentelemetry-proto`),
//! shared with the operator's tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;

/// Every span the receiver was sent, and the `authorization` metadata of each export.
#[derive(Clone, Default)]
pub struct Receiver(pub Arc<Mutex<Vec<Span>>>, pub Arc<Mutex<Vec<String>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let authorization = request.metadata().get("authorization");
        let authorization = authorization
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        self.1
            .lock()
            .expect("receiver lock")
            .push(authorization.to_owned());
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        self.0.lock().expect("receiver lock").extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Starts the receiver on a free loopback port; returns it and its endpoint.
pub async fn receiver() -> (Receiver, String) {
    start(tonic::transport::Server::builder(), "http").await
}

/// The receiver over TLS, with the certificate of `tests/fixtures/otlp-tls` (whose `ca.pem`
/// the client must trust).
pub async fn tls_receiver() -> (Receiver, String) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/otlp-tls");
    let read = |name: &str| std::fs::read(dir.join(name)).expect("a fixture");
    let identity =
        tonic::transport::Identity::from_pem(read("collector.pem"), read("collector.key"));
    let tls = tonic::transport::ServerTlsConfig::new().identity(identity);
    let server = tonic::transport::Server::builder()
        .tls_config(tls)
        .expect("TLS");
    start(server, "https").await
}

async fn start(mut server: tonic::transport::Server, scheme: &str) -> (Receiver, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = listener.local_addr().expect("its address");
    drop(listener);
    let receiver = Receiver::default();
    let service = TraceServiceServer::new(receiver.clone());
    tokio::spawn(server.add_service(service).serve(address));
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (receiver, format!("{scheme}://{address}"))
}
