//! isp-lattice: the real wasmCloud 1.x host (crate `wasmcloud-host` 0.27) and wadm (crate `wadm` 0.21), started
//! on a NATS server the Go tests give it. Test tooling for `make test-wasmcloud`; it reaches nothing but that NATS.
//!
//! Usage:
//!   isp-lattice host [--nats nats://127.0.0.1:4222] [--lattice default] [--secrets-topic wasmcloud.secrets]
//!                    [--allow-file-load] [--insecure-registry host:port]... [--label k=v]...
//!                    [--host-seed SNxxx] [--rpc-timeout-ms 2000] [--heartbeat-secs 30] [--otel JSON]
//!   isp-lattice wadm [--nats 127.0.0.1:4222] [--memory]
//!
//! Both run until SIGINT/SIGTERM (or until the host stops itself) and log to stderr (RUST_LOG filters).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tracing::info;

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        bail!("usage: isp-lattice host|wadm [options]");
    }
    let command = args.remove(0);
    let opts = Opts::parse(args)?;
    match command.as_str() {
        "host" => run_host(opts).await,
        "wadm" => run_wadm(opts).await,
        other => bail!("unknown command {other:?}: want host or wadm"),
    }
}

/// Opts is `--name value` pairs and bare `--flag`s; repeated names keep every value.
struct Opts(HashMap<String, Vec<String>>);

impl Opts {
    const FLAGS: &'static [&'static str] = &["allow-file-load", "memory"];

    fn parse(args: Vec<String>) -> Result<Self> {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let Some(name) = arg.strip_prefix("--") else {
                bail!("unexpected argument {arg:?}");
            };
            let value = if Self::FLAGS.contains(&name) {
                "true".to_string()
            } else {
                it.next().with_context(|| format!("--{name} needs a value"))?
            };
            map.entry(name.to_string()).or_default().push(value);
        }
        Ok(Opts(map))
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.last()).map(String::as_str)
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0.get(name).cloned().unwrap_or_default()
    }

    fn flag(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

async fn run_host(opts: Opts) -> Result<()> {
    use wasmcloud_host::wasmbus::{Host, HostConfig};

    let nats = opts.one("nats").unwrap_or("nats://127.0.0.1:4222");
    let nats_url = wasmcloud_host::url::Url::parse(nats).context("--nats")?;
    let mut cfg = HostConfig {
        ctl_nats_url: nats_url.clone(),
        rpc_nats_url: nats_url,
        lattice: opts.one("lattice").unwrap_or("default").into(),
        allow_file_load: opts.flag("allow-file-load"),
        secrets_topic_prefix: opts.one("secrets-topic").map(str::to_string),
        // wadm parses the heartbeat's version as semver; report the wasmCloud release this crate belongs to.
        version: "1.9.2".to_string(),
        ..Default::default()
    };
    cfg.oci_opts.allowed_insecure = opts.all("insecure-registry");
    for label in opts.all("label") {
        let (k, v) = label.split_once('=').with_context(|| format!("--label {label:?}: want k=v"))?;
        cfg.labels.insert(k.to_string(), v.to_string());
    }
    if let Some(seed) = opts.one("host-seed") {
        cfg.host_key = Some(Arc::new(nkeys::KeyPair::from_seed(seed).context("--host-seed")?));
    }
    if let Some(ms) = opts.one("rpc-timeout-ms") {
        cfg.rpc_timeout = Duration::from_millis(ms.parse().context("--rpc-timeout-ms")?);
    }
    if let Some(secs) = opts.one("heartbeat-secs") {
        cfg.heartbeat_interval = Some(Duration::from_secs(secs.parse().context("--heartbeat-secs")?));
    }
    if let Some(delay) = opts.one("provider-shutdown-delay-ms") {
        cfg.provider_shutdown_delay = Some(Duration::from_millis(delay.parse().context("--provider-shutdown-delay-ms")?));
    }
    if let Some(otel) = opts.one("otel") {
        cfg.otel_config = serde_json::from_str(otel).context("--otel: an OtelConfig as JSON")?;
    }

    let (host, shutdown) = Box::pin(Host::new(cfg)).await.context("failed to start the host")?;
    info!("isp-lattice: host started");
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("isp-lattice: interrupt, stopping the host"),
        _ = sigterm.recv() => info!("isp-lattice: terminate, stopping the host"),
        r = host.stopped() => { r.context("host stopped with an error")?; info!("isp-lattice: host stopped itself"); }
    }
    drop(host);
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .context("host shutdown took over 10 s")?
        .context("host shutdown failed")?;
    Ok(())
}

async fn run_wadm(opts: Opts) -> Result<()> {
    let mut cfg = wadm::config::WadmConfig {
        nats_server: opts.one("nats").unwrap_or("127.0.0.1:4222").to_string(),
        ..Default::default()
    };
    if opts.flag("memory") {
        cfg.stream_persistence = wadm::StreamPersistence::Memory;
    }
    let mut tasks = wadm::start_wadm(cfg).await.context("failed to start wadm")?;
    info!("isp-lattice: wadm started");
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("isp-lattice: interrupt, stopping wadm"),
        _ = sigterm.recv() => info!("isp-lattice: terminate, stopping wadm"),
        r = tasks.join_next() => {
            match r {
                Some(Ok(Err(e))) => bail!("a wadm task failed: {e:#}"),
                Some(Err(e)) => bail!("a wadm task panicked: {e}"),
                _ => bail!("a wadm task ended"),
            }
        }
    }
    tasks.abort_all();
    Ok(())
}
