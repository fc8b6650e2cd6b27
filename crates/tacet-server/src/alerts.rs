//! Crash alerts: per tenant, a webhook receives a JSON POST when a crash group is new, when a resolved group
//! regresses (as the dashboard shows it: a crash after the mark, from a later release if it was resolved in
//! one), and when a group spikes (crashes in the last hour over `spike_factor` times the median of the 24
//! hours before, and at least `spike_min_crashes`). The body is signed: `X-Tacet-Signature: sha256=<hex
//! HMAC-SHA256 of the body under the tenant's alert secret>`. It carries the fingerprint, the error type,
//! the stored (scrubbed) example message, counts and releases: never a raw identifier.
//!
//! Each alert has an id (`new-<fp>`, `regression-<fp>-<mark time>`, `spike-<fp>-<hour>`); it is sent once:
//! `<shared>/alerts/<tenant>/sent/<id>` is created before sending, create-only, so of several nodes one
//! sends. Delivery is tried 4 times with backoff; an alert that still fails is written to
//! `<shared>/alerts/<tenant>/dead/<id>.json` with its payload and the last error. The first check after a
//! tenant gets alerts records the groups already there as known, so switching alerts on sends no flood.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use tacet_model::TenantId;

use crate::AppState;

/// `[tenant.alerts]` in the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// Where alerts are POSTed (https in production).
    pub webhook: String,
    /// The HMAC key the receiver checks signatures with; or `secret_env`, the variable holding it.
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    /// A spike: crashes in the last hour over this many times the median hour of the day before.
    #[serde(default = "default_spike_factor")]
    pub spike_factor: f64,
    /// ...and at least this many crashes in the hour.
    #[serde(default = "default_spike_min")]
    pub spike_min_crashes: u64,
}

fn default_spike_factor() -> f64 {
    5.0
}

fn default_spike_min() -> u64 {
    10
}

/// A tenant's alert target, its secret resolved.
#[derive(Debug, Clone)]
pub struct AlertTarget {
    pub webhook: String,
    pub secret: Vec<u8>,
    pub spike_factor: f64,
    pub spike_min_crashes: u64,
}

impl AlertConfig {
    /// The target, with the secret from the file or the environment; an error names what is missing.
    pub fn target(
        &self,
        tenant: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<AlertTarget, String> {
        let secret = match (&self.secret, &self.secret_env) {
            (Some(s), None) => s.clone(),
            (None, Some(var)) => env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                format!("tenant {tenant:?}: alerts.secret_env names {var}, which is not set")
            })?,
            _ => {
                return Err(format!(
                    "tenant {tenant:?}: [tenant.alerts] needs secret or secret_env (not both)"
                ));
            }
        };
        if !(self.webhook.starts_with("https://") || self.webhook.starts_with("http://")) {
            return Err(format!(
                "tenant {tenant:?}: alerts.webhook {:?} is not an http(s) URL",
                self.webhook
            ));
        }
        Ok(AlertTarget {
            webhook: self.webhook.clone(),
            secret: secret.into_bytes(),
            spike_factor: self.spike_factor,
            spike_min_crashes: self.spike_min_crashes,
        })
    }
}

/// `sha256=<hex>` of `body` under `secret`: the `X-Tacet-Signature` header.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delivery attempts of one alert, and the pause before the first retry (doubled each time).
const ATTEMPTS: u32 = 4;
const BACKOFF: Duration = Duration::from_millis(250);

/// POSTs `payload`, signed, retrying; `Err` with the last failure.
pub async fn deliver(target: &AlertTarget, id: &str, payload: &Value) -> Result<u32, String> {
    let body = serde_json::to_vec(payload).expect("serialisable");
    let client = reqwest_client::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let sent = client
            .post(&target.webhook)
            .header("content-type", "application/json")
            .header("x-tacet-alert", id)
            .header("x-tacet-signature", signature(&target.secret, &body))
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return Ok(attempt),
            Ok(r) => last = format!("the webhook answered {}", r.status()),
            Err(e) => last = format!("cannot reach the webhook: {e}"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(BACKOFF * 2u32.pow(attempt - 1)).await;
        }
    }
    Err(last)
}

/// The alerts of every tenant that has them.
pub struct Alerts {
    targets: Vec<(TenantId, AlertTarget)>,
    dir: tacet_state::Dir,
}

/// One group as the check sees it.
#[derive(Debug)]
struct Group {
    row: serde_json::Map<String, Value>,
    hours: Vec<u64>,
}

fn median(mut v: Vec<u64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
    }
}

impl Alerts {
    /// `dir`: `alerts/` of the shared state, so that one node's alert is not sent again by another.
    pub fn new(targets: Vec<(TenantId, AlertTarget)>, dir: impl Into<tacet_state::Dir>) -> Self {
        Self {
            targets,
            dir: dir.into(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Claims alert `id` for sending (create-only): `false` when it was sent (or claimed) already.
    fn claim(&self, tenant: &TenantId, id: &str) -> std::io::Result<bool> {
        self.dir.sub(tenant.as_str()).sub("sent").create(id, b"")
    }

    fn dead_letter(&self, tenant: &TenantId, id: &str, payload: &Value, error: &str) {
        let written = self.dir.sub(tenant.as_str()).sub("dead").put(
            &format!("{id}.json"),
            &serde_json::to_vec_pretty(&json!({"alert": payload, "error": error})).expect("json"),
        );
        if let Err(e) = written {
            tracing::error!(tenant = %tenant, alert = id, error = %e, "cannot write an alert's dead letter");
        }
    }

    /// The crash groups of the last 7 days with their hourly counts of the last 25 hours.
    async fn groups(state: &AppState, tenant: &TenantId) -> anyhow::Result<Vec<(String, Group)>> {
        let since = (chrono::Utc::now() - chrono::Days::new(7)).format("%Y-%m-%d");
        let rows = |sql: String| async move {
            let out = state.query.sql(tenant, &sql).await?;
            let json = tacet_query::format::to_json(&out.batches)?;
            let rows: Vec<serde_json::Map<String, Value>> = serde_json::from_slice(&json)?;
            anyhow::Ok(rows)
        };
        let groups = rows(format!(
            "SELECT fingerprint, MIN(error_type) AS error_type, MIN(message) AS example_message, \
             COUNT(*) AS crashes, CAST(MIN(ts) AS VARCHAR) AS first_seen, CAST(MAX(ts) AS VARCHAR) AS last_seen, \
             array_to_string(array_sort(array_distinct(array_agg(release) FILTER (WHERE release IS NOT NULL))), ', ') AS releases, \
             COUNT(*) FILTER (WHERE ts >= now() - INTERVAL '1 hour') AS last_hour \
             FROM events WHERE kind = 'crash' AND fingerprint IS NOT NULL AND date >= '{since}' GROUP BY fingerprint"
        ))
        .await?;
        let hourly = rows(
            "SELECT fingerprint, CAST(FLOOR((CAST(to_timestamp_millis(now()) AS BIGINT) - CAST(ts AS BIGINT)) / 3600000.0) AS BIGINT) AS ago, \
             COUNT(*) AS n FROM events WHERE kind = 'crash' AND fingerprint IS NOT NULL \
             AND ts >= now() - INTERVAL '25 hours' GROUP BY 1, 2"
                .to_owned(),
        )
        .await?;
        let mut hours: HashMap<String, Vec<u64>> = HashMap::new();
        for r in hourly {
            let (Some(fp), Some(ago), Some(n)) = (
                r.get("fingerprint").and_then(Value::as_str),
                r.get("ago").and_then(Value::as_i64),
                r.get("n").and_then(Value::as_u64),
            ) else {
                continue;
            };
            // Hours 1 to 24 ago are the trailing day; hour 0 is the one the spike is measured in.
            if (1..=24).contains(&ago) {
                hours.entry(fp.to_owned()).or_insert_with(|| vec![0; 24])[ago as usize - 1] = n;
            }
        }
        Ok(groups
            .into_iter()
            .filter_map(|row| {
                let fp = row.get("fingerprint")?.as_str()?.to_owned();
                let hours = hours.remove(&fp).unwrap_or_else(|| vec![0; 24]);
                Some((fp, Group { row, hours }))
            })
            .collect())
    }

    /// One check of every tenant: sends what is due. Errors are logged, never fatal.
    pub async fn check(&self, state: &AppState) {
        for (tenant, target) in &self.targets {
            if let Err(e) = self.check_tenant(state, tenant, target).await {
                tracing::warn!(tenant = %tenant, error = %e, "crash alerts: the check failed; retrying at the next");
            }
        }
    }

    async fn check_tenant(
        &self,
        state: &AppState,
        tenant: &TenantId,
        target: &AlertTarget,
    ) -> anyhow::Result<()> {
        // The first check of a tenant records the groups there are as known (a directory made by an
        // earlier version, with no `known` mark, counts too).
        let mine = self.dir.sub(tenant.as_str());
        let baseline =
            !mine.exists("known")? && mine.local_path().is_none_or(|p| !p.join("sent").is_dir());
        let groups = Self::groups(state, tenant).await?;
        let marks = match state.dashboard.as_deref() {
            Some(d) => d.triage().marks(tenant)?,
            None => Default::default(),
        };
        let mut due: Vec<(String, &'static str, &Group)> = Vec::new();
        for (fp, g) in &groups {
            if self.claim(tenant, &format!("new-{fp}"))? && !baseline {
                due.push((format!("new-{fp}"), "new", g));
            }
            let str_of = |c: &str| g.row.get(c).and_then(Value::as_str);
            if let Some(mark) = marks.get(fp)
                && crate::ui::shown_state(&marks, fp, str_of("last_seen"), str_of("releases")).0
                    == "regressed"
            {
                let id = format!("regression-{fp}-{}", mark.at.replace([':', '.'], "-"));
                if self.claim(tenant, &id)? {
                    due.push((id, "regression", g));
                }
            }
            let last_hour = g.row.get("last_hour").and_then(Value::as_u64).unwrap_or(0);
            let usual = median(g.hours.clone());
            if last_hour >= target.spike_min_crashes
                && last_hour as f64 > target.spike_factor * usual.max(1.0)
            {
                let hour = chrono::Utc::now().format("%Y%m%dT%H");
                let id = format!("spike-{fp}-{hour}");
                if self.claim(tenant, &id)? {
                    due.push((id, "spike", g));
                }
            }
        }
        if baseline {
            // Even with no group yet: from now on every group is new.
            mine.put("known", b"")?;
            tracing::info!(tenant = %tenant, groups = groups.len(), "crash alerts: existing groups recorded as known");
        }
        for (id, kind, g) in due {
            let mut payload = json!({"tenant": tenant.as_str(), "kind": kind, "alert": id,
                "sent_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)});
            for c in [
                "fingerprint",
                "error_type",
                "example_message",
                "crashes",
                "last_hour",
                "releases",
                "first_seen",
                "last_seen",
            ] {
                payload[c] = g.row.get(c).cloned().unwrap_or(Value::Null);
            }
            payload["trailing_median_per_hour"] = json!(median(g.hours.clone()));
            match deliver(target, &id, &payload).await {
                Ok(attempts) => {
                    tracing::info!(tenant = %tenant, alert = id, attempts, "crash alert sent");
                    metrics::counter!("tacet_alerts_sent_total", "kind" => kind).increment(1);
                }
                Err(e) => {
                    tracing::warn!(tenant = %tenant, alert = id, error = %e, "crash alert failed; see its dead letter");
                    metrics::counter!("tacet_alerts_failed_total", "kind" => kind).increment(1);
                    self.dead_letter(tenant, &id, &payload, &e);
                }
            }
        }
        Ok(())
    }

    /// Checks every `every` until the process ends.
    pub fn spawn(self: Arc<Self>, state: AppState, every: Duration) {
        if self.is_empty() || every.is_zero() {
            return;
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.check(&state).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(median(vec![0, 0, 3]), 0.0);
        assert_eq!(median(vec![1, 2, 3, 4]), 2.5);
    }
}
