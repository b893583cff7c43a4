//! The Lambda entry point: state built once per cold start, then one invocation (a batch
//! of the inbox, or a bare event) at a time.
#![recursion_limit = "256"]

use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if in_lambda || std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .without_time()
            .init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = reactor::config::Config::from_env()
        .context("reactor configuration (Lambda environment variables)")?;
    let sdk = infra::aws::sdk_config().await;
    let reactor = Arc::new(reactor::build(config, &sdk));
    let function: Arc<str> = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .unwrap_or_else(|_| "reactor".into())
        .into();
    tracing::info!("reactor ready");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let reactor = Arc::clone(&reactor);
        let function = Arc::clone(&function);
        async move {
            let started = Instant::now();
            let invocation = reactor.invoke(&event.payload).await;
            emit_metrics(
                &function,
                &invocation.summary,
                invocation.result.is_ok(),
                started,
            );
            invocation
                .result
                .map_err(|e| lambda_runtime::Error::from(e.to_string()))?;
            Ok::<Value, lambda_runtime::Error>(invocation.response)
        }
    }))
    .await
}

/// The invocation's metrics, as Embedded Metric Format lines on stdout (CloudWatch Logs
/// makes them metrics). A closed stdout loses them quietly.
fn emit_metrics(function: &str, summary: &reactor::summary::Summary, ok: bool, started: Instant) {
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let lines = reactor::metrics::emf_lines(function, summary, ok, ms, infra::now_ms());
    let mut out = std::io::stdout().lock();
    for l in lines {
        if writeln!(out, "{l}").is_err() {
            return;
        }
    }
    let _ = out.flush();
}
