//! Traces: W3C trace context in and out, and the gateway's spans, exported by OTLP over
//! HTTP when `telemetry.otlp_endpoint` is set.
//!
//! ```text
//! client span (traceparent in) ─► request span   SERVER  "GET /web/orders/{id}"
//!                                  ├─ attempt span CLIENT "GET orders"     ─► backend
//!                                  ├─ attempt span CLIENT (retry: resend_count 1)
//!                                  └─ attempt span CLIENT (hedge: portico.hedge)
//! ```
//!
//! Each attempt at a backend (first try, retry, hedge, shadow copy, aggregate or GraphQL
//! call) is its own span, and the backend gets that span's id as its parent id. Without
//! an endpoint nothing is recorded: the backend gets the request span's id, which the
//! access log shows. A caller's sampling decision is kept; new traces are sampled at
//! `telemetry.trace_sampling`.
//!
//! Spans end with the response head (as the access log's duration does). They go through
//! a bounded queue to one exporter task, which sends them in batches (up to
//! [`MAX_BATCH`] spans, at least once a second) as protobuf `POST …/v1/traces`. A full
//! queue drops spans and a failed export drops its batch: both are counted
//! (`portico_trace_spans_total`), neither ever holds up a request. On shutdown the queue
//! is flushed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use crate::config::Otlp;

/// Longest text attribute kept, in bytes.
pub const MAX_VALUE: usize = 1024;
/// Most spans sent in one export.
pub const MAX_BATCH: usize = 512;
/// Spans waiting for the exporter; more are dropped.
const QUEUE: usize = 8192;
/// A batch is sent at the latest this long after its first span.
const INTERVAL: Duration = Duration::from_secs(1);
/// One export's time limit.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// A span's place in a trace: the W3C `traceparent` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    /// Non-zero.
    pub trace_id: u128,
    /// Non-zero.
    pub span_id: u64,
    /// Trace flags; bit 0: sampled.
    pub flags: u8,
}

impl SpanContext {
    /// Reads a `traceparent` value (version 00, or a later version's first four
    /// fields). `None` when it is not a valid one.
    pub fn parse(b: &[u8]) -> Option<SpanContext> {
        let valid = b.len() >= 55
            && b[2] == b'-'
            && b[35] == b'-'
            && b[52] == b'-'
            && is_hex(&b[..2])
            && &b[..2] != b"ff"
            && (b.len() == 55 || (&b[..2] != b"00" && b[55] == b'-'))
            && is_hex(&b[3..35])
            && is_hex(&b[36..52])
            && is_hex(&b[53..55]);
        if !valid {
            return None;
        }
        let num = |s: &[u8]| u128::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok();
        let trace_id = num(&b[3..35])?;
        let span_id = u64::try_from(num(&b[36..52])?).ok()?;
        // Only the sampled bit is defined for version 00; the others go on as zero.
        let flags = u8::try_from(num(&b[53..55])?).ok()? & 0x01;
        (trace_id != 0 && span_id != 0).then_some(SpanContext {
            trace_id,
            span_id,
            flags,
        })
    }

    /// A new trace, sampled with probability `ratio`.
    pub fn root(ratio: f64) -> SpanContext {
        SpanContext {
            trace_id: fastrand::u128(1..),
            span_id: new_span_id(),
            flags: u8::from(ratio >= 1.0 || fastrand::f64() < ratio),
        }
    }

    /// A new span of this trace.
    pub fn child(&self) -> SpanContext {
        SpanContext {
            span_id: new_span_id(),
            ..*self
        }
    }

    /// Whether the trace is recorded.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The `traceparent` header naming this span as the parent.
    pub fn traceparent(&self) -> HeaderValue {
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        hex(self.trace_id, &mut out[3..35]);
        out[35] = b'-';
        hex(u128::from(self.span_id), &mut out[36..52]);
        out[52] = b'-';
        hex(u128::from(self.flags), &mut out[53..55]);
        // Only hex digits and dashes: always a valid header value.
        HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static(
            "00-00000000000000000000000000000001-0000000000000001-01",
        ))
    }

    /// The trace id in lower-case hex (for logs).
    pub fn trace_hex(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex(self.trace_id, &mut out);
        out
    }

    /// The span id in lower-case hex (for logs).
    pub fn span_hex(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        hex(u128::from(self.span_id), &mut out);
        out
    }
}

fn new_span_id() -> u64 {
    fastrand::u64(1..)
}

/// Writes the low `out.len()` hex digits of `n`.
pub(crate) fn hex(mut n: u128, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n & 0xf) as usize];
        n >>= 4;
    }
}

fn is_hex(s: &[u8]) -> bool {
    s.iter()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// A recorded span that others hang under: its context and where spans go.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The span children name as their parent.
    pub span: SpanContext,
    tracer: Arc<Tracer>,
}

impl Trace {
    /// A recorded trace position, when `span` is sampled and a tracer exports.
    pub fn new(span: SpanContext, tracer: Option<&Arc<Tracer>>) -> Option<Trace> {
        let tracer = tracer.filter(|_| span.sampled())?;
        Some(Trace {
            span,
            tracer: tracer.clone(),
        })
    }

    /// Starts a child span (now).
    pub fn start(&self, name: String, kind: Kind) -> Recording {
        let mut span = SpanData::new(name, kind, Some(self.span.span_id));
        span.context = self.span.child();
        span.start = SystemTime::now();
        Recording {
            span,
            tracer: self.tracer.clone(),
            ended: false,
        }
    }

    /// Records this span itself, which began `elapsed` ago and ends now.
    pub fn finish(&self, mut span: SpanData, elapsed: Duration) {
        span.context = self.span;
        span.end = SystemTime::now();
        span.start = span.end.checked_sub(elapsed).unwrap_or(span.end);
        self.tracer.record(span);
    }
}

/// A child span being timed; recorded when dropped: by [`Recording::end`], or before it
/// (the work was cancelled: a hedge that lost, a client that went away) with
/// `portico.cancelled`.
#[derive(Debug)]
pub struct Recording {
    span: SpanData,
    tracer: Arc<Tracer>,
    ended: bool,
}

impl Recording {
    /// The span's own context (the parent its callee sees).
    pub fn context(&self) -> SpanContext {
        self.span.context
    }

    /// The span, to add attributes.
    pub fn data(&mut self) -> &mut SpanData {
        &mut self.span
    }

    /// Ends the span now and queues it for export.
    pub fn end(mut self) {
        self.ended = true;
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        let empty = SpanData::new(String::new(), self.span.kind, None);
        let mut span = std::mem::replace(&mut self.span, empty);
        span.end = SystemTime::now();
        if !self.ended {
            span.flag("portico.cancelled", true);
        }
        self.tracer.record(span);
    }
}

/// Span kinds the gateway records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request the gateway serves.
    Server,
    /// A call the gateway makes.
    Client,
}

/// An attribute value.
#[derive(Debug, Clone)]
pub enum Value {
    /// Text.
    Str(String),
    /// Integer.
    Int(i64),
    /// Flag.
    Bool(bool),
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct SpanData {
    /// Its own context.
    pub context: SpanContext,
    /// The parent span's id (`None`: a root span).
    pub parent: Option<u64>,
    /// Operation name.
    pub name: String,
    /// Server or client.
    pub kind: Kind,
    /// Start.
    pub start: SystemTime,
    /// End.
    pub end: SystemTime,
    /// Attributes (OpenTelemetry semantic conventions where one fits, else `portico.*`).
    pub attributes: Vec<(&'static str, Value)>,
    /// Set when the span failed: its status message.
    pub error: Option<String>,
}

impl SpanData {
    /// A span of `kind` named `name`, to be timed by its recorder.
    pub fn new(name: String, kind: Kind, parent: Option<u64>) -> SpanData {
        SpanData {
            context: SpanContext {
                trace_id: 1,
                span_id: 1,
                flags: 1,
            },
            parent,
            name,
            kind,
            start: UNIX_EPOCH,
            end: UNIX_EPOCH,
            attributes: Vec::new(),
            error: None,
        }
    }

    /// Adds a text attribute, cut to [`MAX_VALUE`] bytes (paths can be long; the
    /// export queue should not be).
    pub fn str(&mut self, key: &'static str, value: impl Into<String>) {
        let mut value = value.into();
        if value.len() > MAX_VALUE {
            let mut end = MAX_VALUE;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            value.truncate(end);
        }
        self.attributes.push((key, Value::Str(value)));
    }

    /// Adds an integer attribute.
    pub fn int(&mut self, key: &'static str, value: i64) {
        self.attributes.push((key, Value::Int(value)));
    }

    /// Adds a flag attribute.
    pub fn flag(&mut self, key: &'static str, value: bool) {
        self.attributes.push((key, Value::Bool(value)));
    }
}

enum Msg {
    Span(Box<SpanData>),
    Flush(oneshot::Sender<()>),
}

/// Span counts since start.
#[derive(Debug, Default)]
pub struct TraceStats {
    /// Accepted by the collector.
    pub exported: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Lost in exports that failed.
    pub failed: AtomicU64,
}

/// Where spans go: a queue in front of the exporter task.
#[derive(Debug)]
pub struct Tracer {
    settings: Otlp,
    tx: mpsc::Sender<Msg>,
    stats: Arc<TraceStats>,
}

impl Tracer {
    /// Starts the exporter task (on the current Tokio runtime, which must exist).
    pub fn start(settings: &Otlp, stats: Arc<TraceStats>) -> Arc<Tracer> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let exporter = Exporter {
            endpoint: settings.endpoint.clone(),
            resource: resource(&settings.service_name),
            client: crate::outbound::client(),
            stats: stats.clone(),
            failing: false,
        };
        tokio::spawn(exporter.run(rx));
        Arc::new(Tracer {
            settings: settings.clone(),
            tx,
            stats,
        })
    }

    /// The settings it exports with.
    pub fn settings(&self) -> &Otlp {
        &self.settings
    }

    /// Queues a finished span; drops it (counted) when the queue is full.
    pub fn record(&self, span: SpanData) {
        if self.tx.try_send(Msg::Span(Box::new(span))).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends every queued span now; returns when the export finished (or `within`
    /// passed).
    pub async fn flush(&self, within: Duration) {
        let (ack, done) = oneshot::channel();
        let send = async {
            if self.tx.send(Msg::Flush(ack)).await.is_ok() {
                let _ = done.await;
            }
        };
        let _ = tokio::time::timeout(within, send).await;
    }
}

fn resource(service_name: &str) -> Resource {
    Resource {
        attributes: vec![
            key_value("service.name", Value::Str(service_name.to_string())),
            key_value(
                "service.version",
                Value::Str(env!("CARGO_PKG_VERSION").to_string()),
            ),
            key_value(
                "service.instance.id",
                Value::Str(format!("{:032x}", fastrand::u128(..))),
            ),
            key_value("telemetry.sdk.name", Value::Str("portico".into())),
            key_value("telemetry.sdk.language", Value::Str("rust".into())),
        ],
        ..Resource::default()
    }
}

struct Exporter {
    endpoint: http::Uri,
    resource: Resource,
    client: hyper_util::client::legacy::Client<crate::outbound::Https, Full<Bytes>>,
    stats: Arc<TraceStats>,
    /// The last export failed (the next failure is not logged again).
    failing: bool,
}

impl Exporter {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut batch: Vec<SpanData> = Vec::new();
        let mut due = tokio::time::Instant::now() + INTERVAL;
        loop {
            let msg = if batch.is_empty() {
                rx.recv().await
            } else {
                match tokio::time::timeout_at(due, rx.recv()).await {
                    Ok(msg) => msg,
                    Err(_) => {
                        self.send(std::mem::take(&mut batch)).await;
                        continue;
                    }
                }
            };
            match msg {
                Some(Msg::Span(span)) => {
                    if batch.is_empty() {
                        due = tokio::time::Instant::now() + INTERVAL;
                    }
                    batch.push(*span);
                    if batch.len() >= MAX_BATCH {
                        self.send(std::mem::take(&mut batch)).await;
                    }
                }
                Some(Msg::Flush(ack)) => {
                    if !batch.is_empty() {
                        self.send(std::mem::take(&mut batch)).await;
                    }
                    let _ = ack.send(());
                }
                None => {
                    // Every sender is gone (a reload replaced this exporter, or the
                    // gateway stopped): the rest goes out, then the task ends.
                    if !batch.is_empty() {
                        self.send(batch).await;
                    }
                    return;
                }
            }
        }
    }

    async fn send(&mut self, batch: Vec<SpanData>) {
        let count = batch.len() as u64;
        let body = encode(&self.resource, batch);
        let mut req = http::Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = self.endpoint.clone();
        req.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        let exchange = async {
            let res = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = res.status();
            // Read to the end so the connection goes back to the pool.
            let _ = http_body_util::Limited::new(res.into_body(), 64 * 1024)
                .collect()
                .await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the collector answered {status}"))
            }
        };
        let result = tokio::time::timeout(EXPORT_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        match result {
            Ok(()) => {
                self.stats.exported.fetch_add(count, Ordering::Relaxed);
                if std::mem::take(&mut self.failing) {
                    tracing::info!(target: "portico::trace", "span export works again");
                }
            }
            Err(error) => {
                self.stats.failed.fetch_add(count, Ordering::Relaxed);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(target: "portico::trace", %error, spans = count, "span export failed; spans are dropped until it works again");
                }
            }
        }
    }
}

fn key_value(key: &str, value: Value) -> KeyValue {
    let value = match value {
        Value::Str(s) => any_value::Value::StringValue(s),
        Value::Int(i) => any_value::Value::IntValue(i),
        Value::Bool(b) => any_value::Value::BoolValue(b),
    };
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The OTLP export request of a batch, protobuf-encoded.
fn encode(resource: &Resource, batch: Vec<SpanData>) -> Vec<u8> {
    let spans = batch
        .into_iter()
        .map(|s| Span {
            trace_id: s.context.trace_id.to_be_bytes().to_vec(),
            span_id: s.context.span_id.to_be_bytes().to_vec(),
            parent_span_id: s
                .parent
                .map(|p| p.to_be_bytes().to_vec())
                .unwrap_or_default(),
            // The W3C flags in the low byte; bit 8 (0x100) says whether the parent's
            // context is known, bit 9 (0x200) whether the parent is remote.
            flags: u32::from(s.context.flags)
                | 0x100
                | if s.parent.is_some() && s.kind == Kind::Server {
                    0x200
                } else {
                    0
                },
            name: s.name,
            kind: match s.kind {
                Kind::Server => span::SpanKind::Server,
                Kind::Client => span::SpanKind::Client,
            } as i32,
            start_time_unix_nano: unix_nanos(s.start),
            end_time_unix_nano: unix_nanos(s.end),
            attributes: s
                .attributes
                .into_iter()
                .map(|(k, v)| key_value(k, v))
                .collect(),
            status: Some(match s.error {
                None => Status::default(),
                Some(message) => Status {
                    message,
                    code: status::StatusCode::Error as i32,
                },
            }),
            ..Span::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "portico".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trip() {
        let ctx =
            SpanContext::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(ctx.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(ctx.span_id, 0x00f067aa0ba902b7);
        assert!(ctx.sampled());
        assert_eq!(
            ctx.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let child = ctx.child();
        assert_eq!(child.trace_id, ctx.trace_id);
        assert_ne!(child.span_id, ctx.span_id);
        assert_eq!(&ctx.trace_hex(), b"4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(&ctx.span_hex(), b"00f067aa0ba902b7");
        // Undefined flag bits are not passed on.
        let odd =
            SpanContext::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff").unwrap();
        assert!(odd.traceparent().to_str().unwrap().ends_with("-01"));
    }

    #[test]
    fn long_attributes_are_cut() {
        let mut span = SpanData::new("x".into(), Kind::Server, None);
        span.str("url.path", "é".repeat(MAX_VALUE));
        let Value::Str(v) = &span.attributes[0].1 else {
            panic!("text")
        };
        assert!(v.len() <= MAX_VALUE && v.len() > MAX_VALUE - 2);
    }

    #[test]
    fn invalid_traceparents() {
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"",
        ] {
            assert!(SpanContext::parse(bad).is_none(), "{bad:?}");
        }
        // A later version may append fields.
        assert!(
            SpanContext::parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x")
                .is_some_and(|c| !c.sampled())
        );
    }

    #[test]
    fn sampling_ratio() {
        assert!(SpanContext::root(1.0).sampled());
        assert!(!SpanContext::root(0.0).sampled());
        let n = (0..2000)
            .filter(|_| SpanContext::root(0.25).sampled())
            .count();
        assert!((350..650).contains(&n), "{n} of 2000 at 25%");
    }

    #[test]
    fn export_request_encodes_the_tree() {
        let root = SpanContext::root(1.0);
        let mut server = SpanData::new("GET /x".into(), Kind::Server, None);
        server.context = root;
        server.str("http.route", "/x");
        let mut client = SpanData::new("GET b".into(), Kind::Client, Some(root.span_id));
        client.context = root.child();
        client.int("http.response.status_code", 503);
        client.error = Some("503".into());
        let bytes = encode(&resource("svc"), vec![server, client]);
        let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let spans = &decoded.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].trace_id, root.trace_id.to_be_bytes());
        assert!(spans[0].parent_span_id.is_empty());
        assert_eq!(spans[1].parent_span_id, spans[0].span_id);
        assert_eq!(spans[1].kind, span::SpanKind::Client as i32);
        assert_eq!(
            spans[1].status.as_ref().unwrap().code,
            status::StatusCode::Error as i32
        );
        let service = &decoded.resource_spans[0]
            .resource
            .as_ref()
            .unwrap()
            .attributes[0];
        assert_eq!(service.key, "service.name");
    }
}
