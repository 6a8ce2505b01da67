//! Logging: text for people, JSON for pipelines; `RUST_LOG` filters (default `info`). With the
//! `otlp` cargo feature (off in the default build) and `OTEL_EXPORTER_OTLP_ENDPOINT` set, the
//! same spans (one per request, with its id, network, scheme and payer) are also exported as
//! OpenTelemetry traces over OTLP/HTTP.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Installs the global subscriber once; later calls (tests starting several apps) are no-ops.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,alloy=warn,reqwest=warn"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(otlp::layer());
    let _ = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_target(false),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .try_init(),
    };
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;
    use tracing_subscriber::Layer;

    /// The OTLP layer when `OTEL_EXPORTER_OTLP_ENDPOINT` names a collector. The endpoint may
    /// carry credentials, so it is never logged.
    pub fn layer<S>() -> Option<Box<dyn Layer<S> + Send + Sync>>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
    {
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok()?;
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                eprintln!("OTLP export disabled: {e}");
                return None;
            }
        };
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("x402-facilitator")
                    .build(),
            )
            .build();
        let tracer = provider.tracer("x402-facilitator");
        opentelemetry::global::set_tracer_provider(provider);
        Some(tracing_opentelemetry::layer().with_tracer(tracer).boxed())
    }
}

#[cfg(not(feature = "otlp"))]
mod otlp {
    /// The default build has no exporter.
    pub fn layer() -> Option<tracing_subscriber::layer::Identity> {
        None
    }
}
