//! The Lambda entry point: state built once per cold start, then one event at a time.
#![recursion_limit = "256"]

use std::sync::Arc;

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
    tracing::info!("reactor ready");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let reactor = Arc::clone(&reactor);
        async move {
            let summary = reactor
                .handle(&event.payload)
                .await
                .map_err(|e| lambda_runtime::Error::from(e.to_string()))?;
            Ok::<Value, lambda_runtime::Error>(serde_json::to_value(summary)?)
        }
    }))
    .await
}
