//! `tacet serve`: the server, its background tasks (flusher, lifecycle schedule, rollups, GeoIP and TLS
//! reloads) and its shutdown.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use tacet_ingest::Pipeline;
use tacet_model::{Clock, SystemClock, TenantId};
use tacet_privacy::Privacy;
use tacet_query::QueryEngine;
use tacet_server::{AppState, DemoKeys, MetricsRender, Tenants, router};
use tracing::{info, warn};

use crate::config::{Config, Source};
use crate::setup::{
    env_var, init_logging, installation, load_geo, refuse_ballista_with_encryption,
};
use crate::{claim, lifecycle};

/// Reloads the GeoIP database when its file changes (size or modification time), keeping the old one if
/// the new one cannot be read.
fn spawn_geo_reloader(pipeline: Arc<Pipeline>, path: PathBuf, every: std::time::Duration) {
    if every.is_zero() {
        return;
    }
    let stamp = |p: &std::path::Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    tokio::spawn(async move {
        let mut seen = stamp(&path);
        loop {
            tokio::time::sleep(every).await;
            let now = stamp(&path);
            if now == seen || now.is_none() {
                continue;
            }
            seen = now;
            match load_geo(&path) {
                Ok(db) => {
                    info!(database_type = db.database_type(), path = %path.display(), "GeoIP database reloaded");
                    pipeline.privacy().set_geo(Some(db));
                }
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "the changed GeoIP database cannot be loaded; keeping the previous one")
                }
            }
        }
    });
}

/// Retention every `retention_interval` (first two minutes after start) and compaction every
/// `compact_interval`, for every tenant; summaries go to the log.
fn spawn_lifecycle(steward: Arc<tacet_lifecycle::Steward>, config: &Config, tenants: &Tenants) {
    let policies: Vec<(TenantId, tacet_privacy::TenantPolicy)> = tenants
        .iter()
        .map(|t| (t.id.clone(), t.policy.clone()))
        .collect();
    let every = config.lifecycle.retention_interval;
    if !every.is_zero() {
        let (steward, policies) = (Arc::clone(&steward), policies.clone());
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(120)).await;
            loop {
                match steward
                    .retention_run(&policies, false, "server", &tacet_lifecycle::quiet)
                    .await
                {
                    Ok(r) if !r.expired.is_empty() => info!(
                        dropped = r.expired.len(),
                        files = r.files_deleted,
                        bytes = r.bytes_deleted,
                        rollups_written = r.rollups_written,
                        "retention ran"
                    ),
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "retention failed; retrying at the next interval"),
                }
                tokio::time::sleep(every).await;
            }
        });
    }
    {
        // Erasures their node left unfinished (stopped or crashed mid-way), finished by one node.
        let steward = Arc::clone(&steward);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                match steward
                    .resume_erasures(std::time::Duration::from_secs(600), "server")
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => info!(erasures = n, "finished erasures left unfinished"),
                    Err(e) => {
                        warn!(error = %e, "finishing unfinished erasures failed; retrying in a minute")
                    }
                }
            }
        });
    }
    let every = config.lifecycle.compact_interval;
    if !every.is_zero() {
        let options = tacet_lifecycle::CompactOptions {
            min_age: config.lifecycle.compact_min_age,
            target_bytes: config.lifecycle.compact_target_bytes,
        };
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                for (t, _) in &policies {
                    match steward
                        .compact(t, options, "server", &tacet_lifecycle::quiet)
                        .await
                    {
                        Ok(r) if r.files_merged > 0 => info!(tenant = %t, merged = r.files_merged,
                            written = r.files_written, "compacted"),
                        Ok(_) => {}
                        Err(e) => {
                            warn!(tenant = %t, error = %e, "compaction failed; retrying at the next interval")
                        }
                    }
                }
            }
        });
    }
}

/// How many closed days back the server keeps rollups current: a month's dashboard reads them.
const ROLLUP_DAYS_BACK: u32 = 40;

/// Every hour (and a minute after start), for every tenant, the rollups of the last days (of its zone) that
/// are missing or stale (`QueryEngine::stale_rollup_days`: the day's files, the objections, a nearby day or
/// the zone changed since), so that reports read closed days from them (tacet_query::source), plus
/// yesterday's and the day before's whatever they say (late events). Tenants: id, `accept_past` in days, zone.
fn spawn_rollups(query: Arc<QueryEngine>, tenants: Vec<(TenantId, u32, chrono_tz::Tz)>) {
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        loop {
            for (t, accept_past_days, zone) in &tenants {
                let today = SystemClock.now().with_timezone(zone).date_naive();
                let mut days: std::collections::BTreeSet<chrono::NaiveDate> = [2, 1]
                    .into_iter()
                    .map(|back| today - chrono::Days::new(back))
                    .collect();
                match query
                    .stale_rollup_days(t, ROLLUP_DAYS_BACK, *accept_past_days, *zone)
                    .await
                {
                    Ok(stale) => days.extend(stale),
                    Err(e) => warn!(tenant = %t, error = %e, "cannot tell which rollups are stale"),
                }
                for day in days {
                    match query.rollup_day(t, day, *zone).await {
                        Ok(rows) => info!(tenant = %t, %day, rows, "rollup written"),
                        Err(e) => {
                            warn!(tenant = %t, %day, error = %e, "rollup failed; retrying in an hour")
                        }
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
    });
}

/// Installs the Prometheus recorder; returns what renders `/metrics`.
fn init_metrics() -> anyhow::Result<MetricsRender> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    const SECONDS: &[f64] = &[
        0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        2.5, 5.0, 10.0,
    ];
    // The log's group commit and the ingest door, finer: their waits are what bounds an
    // acknowledgement's latency.
    const WAL_SECONDS: &[f64] = &[
        0.000_05, 0.000_1, 0.000_2, 0.000_3, 0.000_5, 0.000_75, 0.001, 0.001_5, 0.002, 0.003,
        0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0,
    ];
    const GROUP_RECORDS: &[f64] = &[
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)?
        .set_buckets_for_metric(Matcher::Full("tacet_wal_fsync_seconds".into()), WAL_SECONDS)?
        .set_buckets_for_metric(
            Matcher::Full("tacet_wal_commit_seconds".into()),
            WAL_SECONDS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("tacet_ingest_request_seconds".into()),
            WAL_SECONDS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("tacet_wal_group_records".into()),
            GROUP_RECORDS,
        )?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    Ok(MetricsRender(Arc::new(move || handle.render())))
}

pub(crate) async fn serve(config: Config, source: Source) -> anyhow::Result<()> {
    init_logging();
    let tenants = config.tenants(env_var)?;
    crate::setup::check_keys(&config, &tenants)?;
    refuse_ballista_with_encryption(&config, "tacet serve")?;
    let metrics = init_metrics()?;
    let shared = config.state()?;
    let access = Arc::new(tacet_server::access::AccessKeys::open(shared.sub("keys"))?);
    let tenants = Arc::new(Tenants::with_access(tenants, access)?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let geoip = config.geoip_path();
    let geo = match &geoip {
        None => None,
        Some(path) => {
            let db = load_geo(path)?;
            info!(database_type = db.database_type(), path = %path.display(), "GeoIP database loaded");
            if installation(Some(&db)).geo_is_dbip {
                info!("IP geolocation by DB-IP (https://db-ip.com), licensed under CC BY 4.0");
            }
            Some(db)
        }
    };
    // One process per data directory: the lock is held until the server exits.
    let _lock = lifecycle::lock_data_dir(&config)?;
    let lifecycle::Parts {
        pipeline,
        query,
        audit,
        wal,
        replay,
    } = lifecycle::open_parts(&config, &shared, clock, Privacy::new(geo))?;
    claim::writable(&config, pipeline.lake().store()).await?;
    claim::keystore(&config, pipeline.lake().store(), pipeline.keys()).await?;
    claim::node(&config, pipeline.lake().store()).await?;
    if let Some(node) = config.node_id {
        // Registered while running, so that an erasure on another node waits for this one's flush.
        let peers = tacet_ingest::Peers::join(shared.sub("nodes"), node)?;
        pipeline.set_peers(Arc::new(peers));
    }
    let destroyed = pipeline.keys().destroy_expired()?;
    if !destroyed.is_empty() {
        info!(
            salts = destroyed.len(),
            "destroyed visitor salts older than 48 hours after their day"
        );
    }
    let steward = Arc::new(tacet_lifecycle::Steward::new(
        Arc::clone(&pipeline),
        Arc::clone(&query),
        audit,
    ));
    steward.set_leases(
        shared.sub("leases"),
        lifecycle::lease_holder(&config, "serve"),
    );
    spawn_lifecycle(Arc::clone(&steward), &config, &tenants);
    spawn_rollups(
        Arc::clone(&query),
        tenants
            .iter()
            .map(|t| {
                let days = tacet_query::ReportScope::days_back(t.policy.accept_past);
                let zone = t.policy.timezone.unwrap_or(chrono_tz::UTC);
                (t.id.clone(), days, zone)
            })
            .collect(),
    );
    if let Some(path) = &geoip {
        spawn_geo_reloader(
            Arc::clone(&pipeline),
            path.clone(),
            config.geoip_check_interval,
        );
    }

    let listener = std::net::TcpListener::bind(config.listen).with_context(|| {
        format!(
            "cannot listen on {} (is another server running there? use --listen)",
            config.listen
        )
    })?;
    let addr = listener.local_addr()?;
    // The Postgres wire listener: bound before anything is announced, loopback only (clear-text passwords).
    let postgres = match &config.postgres {
        None => None,
        Some(pg) => {
            if !pg.listen.ip().is_loopback() && config.tls.is_none() {
                anyhow::bail!(
                    "[postgres] listen = {}: without [tls] the Postgres listener would take the tenants' read keys as clear-text passwords, so it listens on loopback only (127.0.0.1 or ::1); configure [tls] (cert, key) to listen elsewhere with TLS required, or reach it through an SSH tunnel",
                    pg.listen
                );
            }
            let l = std::net::TcpListener::bind(pg.listen).with_context(|| {
                format!("cannot listen on {} (setting [postgres] listen)", pg.listen)
            })?;
            l.set_nonblocking(true)?;
            Some((
                l,
                tacet_server::pg::Limits {
                    total: pg.max_connections,
                    per_tenant: pg.max_connections_per_tenant,
                    idle: pg.idle_timeout,
                },
            ))
        }
    };
    // Arrow Flight SQL: the same rule (the read key travels in a header).
    let flight = match &config.flight_sql {
        None => None,
        Some(f) => {
            if !f.listen.ip().is_loopback() && config.tls.is_none() {
                anyhow::bail!(
                    "[flight_sql] listen = {}: without [tls] the tenants' read keys would travel in clear text, so it listens on loopback only (127.0.0.1 or ::1); configure [tls] (cert, key) to listen elsewhere with TLS only",
                    f.listen
                );
            }
            let l = std::net::TcpListener::bind(f.listen).with_context(|| {
                format!(
                    "cannot listen on {} (setting [flight_sql] listen)",
                    f.listen
                )
            })?;
            l.set_nonblocking(true)?;
            Some((
                l,
                tacet_server::flight::Limits {
                    connections: f.max_connections,
                    streams: f.max_streams,
                },
            ))
        }
    };
    let tls = match &config.tls {
        None => None,
        Some(t) => Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(&t.cert, &t.key)
                .await
                .with_context(|| {
                    format!(
                        "cannot load the TLS certificate {} and key {} (setting [tls])",
                        t.cert.display(),
                        t.key.display()
                    )
                })?,
        ),
    };
    let ready = Arc::new(AtomicBool::new(false));
    let limits = Arc::new(tacet_server::limits::RateLimits::new(&config.http));
    {
        let limits = Arc::clone(&limits);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                limits.forget_idle();
            }
        });
    }
    let state: AppState = tacet_server::Shared {
        pipeline: Arc::clone(&pipeline),
        query,
        tenants: Arc::clone(&tenants),
        config: Arc::new(config.http.clone()),
        trusted_proxies: Arc::new(config.trusted_proxies.clone()),
        ready: Arc::clone(&ready),
        metrics: Some(metrics),
        steward: Some(steward),
        dashboard: config.dashboard.enabled.then(|| {
            Arc::new(tacet_server::ui::Dashboard::new(
                &config.dashboard,
                Some(shared.sub("triage")),
                tls.is_some(),
                tenants.access().derive("dashboard sessions"),
                Some(shared.sub("sessions")),
            ))
        }),
        limits: Arc::clone(&limits),
        // The demo page only for the embedded configuration, whose keys are public anyway.
        demo: match &source {
            Source::Embedded => tenants.iter().next().map(|t| DemoKeys {
                ingest_key: t.ingest_key.clone(),
                read_key: t.read_key.clone(),
            }),
            Source::File(_) => None,
        },
    }
    .into();
    // One write, whatever reads it: a reader that hangs up after the first line (a supervisor, a
    // benchmark) must not make a later line fail the server.
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tacet {} listening on {}://{addr}",
        env!("CARGO_PKG_VERSION"),
        if tls.is_some() { "https" } else { "http" }
    );
    let _ = writeln!(out, "data directory: {}", config.data_dir.display());
    let _ = writeln!(out, "lake: {}", config.storage.describe(&config.data_dir));
    for t in config.tenant.iter().filter(|t| t.storage.is_some()) {
        let storage = t.storage.as_ref().expect("filtered");
        let _ = writeln!(
            out,
            "lake of tenant {:?}: {}",
            t.id,
            storage.describe(&config.data_dir)
        );
    }
    if let Some(node) = config.node_id {
        let _ = writeln!(out, "ingestion node {node}");
    }
    if let Some(cluster) = &config.query.ballista {
        let _ = writeln!(out, "SQL and reports on Ballista: {cluster}");
    }
    if let Some((l, _)) = &flight {
        let _ = writeln!(
            out,
            "flight sql: grpc{}://{} (authorization: Bearer <read key>)",
            if config.tls.is_some() { "+tls" } else { "" },
            l.local_addr()?
        );
    }
    if let Some((l, _)) = &postgres {
        let _ = writeln!(
            out,
            "postgres: {} (user = the tenant id, password = its read key, database {})",
            l.local_addr()?,
            tacet_server::pg::DATABASE
        );
    }
    match &source {
        Source::Embedded => {
            for t in tenants.iter() {
                let _ = writeln!(
                    out,
                    "tenant {:?}: ingest key {:?}, read key {:?}, admin key {:?} (embedded demo configuration)",
                    t.id.as_str(),
                    t.ingest_key,
                    t.read_key,
                    t.admin_key.as_deref().unwrap_or("none")
                );
            }
            let _ = writeln!(out, "demo page (the tracker in action): http://{addr}/demo");
            if config.dashboard.enabled {
                let _ = writeln!(
                    out,
                    "dashboard: http://{addr}/ui (log in with the read key above)"
                );
            }
        }
        Source::File(path) => {
            let _ = writeln!(out, "configuration: {}", path.display());
            for t in tenants.iter() {
                let _ = writeln!(
                    out,
                    "tenant {:?}: ingest key {:?}",
                    t.id.as_str(),
                    t.ingest_key
                );
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut stdout, out.as_bytes())
        .and_then(|()| std::io::Write::flush(&mut stdout));
    drop(stdout);
    let alerts = Arc::new(tacet_server::alerts::Alerts::new(
        config.alert_targets(env_var)?,
        shared.sub("alerts"),
    ));
    Arc::clone(&alerts).spawn(state.clone(), config.alert_interval);
    if let Some((l, limits)) = postgres {
        let l = tokio::net::TcpListener::from_std(l)?;
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            if let Err(e) = tacet_server::pg::serve(state, l, limits, tls).await {
                tracing::error!(error = %e, "the postgres listener stopped");
            }
        });
    }
    if let Some((l, limits)) = flight {
        let l = tokio::net::TcpListener::from_std(l)?;
        let (state, tls) = (state.clone(), tls.clone());
        tokio::spawn(async move {
            if let Err(e) = tacet_server::flight::serve(state, l, limits, tls).await {
                tracing::error!(error = %e, "the flight sql listener stopped");
            }
        });
    }
    let mut app = router(state);
    if tls.is_some() {
        app = app.layer(axum::middleware::map_response(hsts));
    }
    let handle = axum_server::Handle::new();
    {
        let handle = handle.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            handle.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
        });
    }
    if let (Some(rustls), Some(files)) = (&tls, &config.tls) {
        spawn_tls_reloader(rustls.clone(), files.clone());
    }
    let server = {
        let (http, trusted) = (config.http.clone(), config.trusted_proxies.clone());
        tokio::spawn(async move {
            tacet_server::listener::serve(listener, app, tls, &http, &trusted, handle).await
        })
    };

    // Not ready (503 on /readyz and /v1/events) until what the log holds is back in the pipeline.
    let recovered = pipeline.recover(replay);
    if recovered.records > 0 || recovered.cut_bytes > 0 {
        info!(
            records = recovered.records,
            events = recovered.events,
            undecodable = recovered.undecodable,
            cut_bytes = recovered.cut_bytes,
            seconds = format_args!("{:.3}", recovered.elapsed.as_secs_f64()),
            events_per_second = format_args!("{:.0}", recovered.events_per_second()),
            "recovered from the write-ahead log"
        );
        pipeline.flush().await;
    }
    ready.store(true, Ordering::SeqCst);
    let flusher = pipeline.spawn_flusher();

    server
        .await
        .context("the HTTP server task failed")?
        .context("the HTTP server failed")?;
    info!("shutting down: writing buffered events");
    pipeline.stop_flusher(flusher).await;
    let mut summary = pipeline.flush().await;
    for _ in 0..3 {
        if pipeline.buffered() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        summary = pipeline.flush().await;
    }
    wal.close();
    if pipeline.buffered() > 0 {
        bail!(
            "{} events could not be written to Parquet at shutdown (see the log above); they are safe in the \
             write-ahead log and will be written at the next start",
            pipeline.buffered()
        );
    }
    if let Some(peers) = pipeline.peers() {
        // Everything is flushed: other nodes need not wait for this one any more.
        peers.leave()?;
    }
    info!(
        events = summary.events,
        files = summary.files,
        "stopped cleanly"
    );
    Ok(())
}

/// `Strict-Transport-Security` on every answer when TLS is on.
async fn hsts(mut resp: axum::response::Response) -> axum::response::Response {
    resp.headers_mut().insert(
        axum::http::header::STRICT_TRANSPORT_SECURITY,
        axum::http::HeaderValue::from_static("max-age=31536000; includeSubDomains"),
    );
    resp
}

/// Loads a renewed certificate and key when either file changes, keeping the old pair if the new one
/// does not load.
fn spawn_tls_reloader(
    rustls: axum_server::tls_rustls::RustlsConfig,
    files: crate::config::TlsConfig,
) {
    if files.reload_interval.is_zero() {
        return;
    }
    let stamp = |p: &std::path::Path| std::fs::metadata(p).ok().and_then(|m| m.modified().ok());
    tokio::spawn(async move {
        let mut seen = (stamp(&files.cert), stamp(&files.key));
        loop {
            tokio::time::sleep(files.reload_interval).await;
            let now = (stamp(&files.cert), stamp(&files.key));
            if now == seen {
                continue;
            }
            seen = now;
            match rustls.reload_from_pem_file(&files.cert, &files.key).await {
                Ok(()) => {
                    tacet_server::listener::http1_alpn(&rustls);
                    info!(cert = %files.cert.display(), "TLS certificate reloaded")
                }
                Err(e) => {
                    warn!(error = %e, "the changed TLS certificate or key cannot be loaded; keeping the previous one")
                }
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
