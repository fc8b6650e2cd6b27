//! Markup: escaping, the page frame, report tables, number formats, and charts drawn as inline SVG (no
//! chart library, no script).

use std::fmt::Write;

use serde_json::{Map, Value};

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Which page of the navigation is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Usage,
    Goals,
    Funnels,
    Retention,
    Realtime,
    Crashes,
    Shares,
    None,
}

/// The logged-in frame around a page's content.
pub struct Frame<'a> {
    pub title: &'a str,
    pub nav: Nav,
    /// The tenant and the session's form token; `None` on the login page.
    pub session: Option<(&'a str, &'a str)>,
    /// Extra elements for `<head>` (the realtime page's refresh).
    pub head: &'a str,
    /// Opened through a share link: no "Share" page in the navigation, no other tenants.
    pub shared: bool,
    /// Other tenants this browser has live sessions for (the header offers a switch).
    pub others: &'a [String],
    /// The countries come from DB-IP's data: its licence (CC BY 4.0) asks for a link on the pages that show
    /// them, so the footer has one.
    pub credit_dbip: bool,
}

impl<'a> Frame<'a> {
    /// A page outside a session (login, a share link's password, a problem without a viewer).
    pub fn outside(title: &'a str) -> Self {
        Frame {
            title,
            nav: Nav::None,
            session: None,
            head: "",
            shared: false,
            others: &[],
            credit_dbip: false,
        }
    }
}

pub fn page(frame: &Frame<'_>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>{title} · Tacet</title>
<link rel="stylesheet" href="/ui/assets/ui.css">
{head}
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
<span class="brand">Tacet</span>
"##,
        title = esc(frame.title),
        head = frame.head,
    );
    if let Some((tenant, csrf)) = frame.session {
        out.push_str(r#"<nav aria-label="Dashboard">"#);
        for (nav, href, label) in [
            (Nav::Usage, "/ui/usage", "Usage"),
            (Nav::Goals, "/ui/goals", "Goals"),
            (Nav::Funnels, "/ui/funnels", "Funnels"),
            (Nav::Retention, "/ui/retention", "Retention"),
            (Nav::Realtime, "/ui/realtime", "Realtime"),
            (Nav::Crashes, "/ui/crashes", "Crashes"),
            (Nav::Shares, "/ui/shares", "Share"),
        ] {
            if nav == Nav::Shares && frame.shared {
                continue;
            }
            let current = if nav == frame.nav {
                r#" aria-current="page""#
            } else {
                ""
            };
            let _ = write!(out, r#"<a href="{href}"{current}>{label}</a>"#);
        }
        let _ = write!(
            out,
            r#"</nav>
<span class="tenant" title="tenant">{tenant}</span>
"#,
            tenant = esc(tenant),
        );
        if !frame.others.is_empty() {
            let _ = write!(
                out,
                r#"<form method="post" action="/ui/switch" class="switch"><input type="hidden" name="csrf" value="{csrf}"><label for="switch-tenant">Tenant</label> <select id="switch-tenant" name="tenant">"#,
                csrf = esc(csrf)
            );
            for t in frame.others {
                let _ = write!(out, r#"<option value="{t}">{t}</option>"#, t = esc(t));
            }
            out.push_str(r#"</select> <button type="submit">Switch</button></form>"#);
        }
        if !frame.shared {
            out.push_str(r#"<a class="add" href="/ui/login?add=1">Add a tenant</a>"#);
        }
        let _ = writeln!(
            out,
            r#"<form method="post" action="/ui/logout" class="logout"><input type="hidden" name="csrf" value="{csrf}"><button type="submit">Log out</button></form>"#,
            csrf = esc(csrf),
        );
    }
    let _ = write!(
        out,
        "</header>\n<main id=\"main\">\n<h1>{}</h1>\n{body}\n</main>\n{}</body>\n</html>\n",
        esc(frame.title),
        if frame.credit_dbip {
            r#"<footer class="credit"><a href="https://db-ip.com" rel="external license">IP Geolocation by DB-IP</a> (CC BY 4.0)</footer>
"#
        } else {
            ""
        }
    );
    out
}

/// `12345` → `12,345`.
pub fn int(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    if n < 0 {
        out.push('−');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `0.4213` → `42.1%`.
pub fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// `83.4` seconds → `1m 23s`.
pub fn duration(secs: f64) -> String {
    let s = secs.round() as i64;
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A timestamp as the JSON answer gives it (`2026-11-29T10:04:05…`) → `2026-11-29 10:04 UTC`.
pub fn time(v: &str) -> String {
    match v.get(..16) {
        Some(t) => format!("{} UTC", t.replacen('T', " ", 1)),
        None => v.to_owned(),
    }
}

/// A cell as text: numbers grouped, shares as percentages, timestamps shortened, null as "(none)".
pub fn cell(column: &str, v: &Value) -> String {
    match v {
        Value::Null => "(none)".to_owned(),
        Value::Number(n) if n.is_i64() => int(n.as_i64().unwrap_or_default()),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or_default();
            if column.contains("rate") || column.starts_with("crash_free") {
                percent(f)
            } else {
                format!("{f:.2}")
            }
        }
        Value::String(s) if column.ends_with("_seen") || column == "minute" => time(s),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The raw value of a cell, for `data-value` (what a test compares with the API's JSON).
pub fn raw(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A column's heading.
pub fn label(column: &str) -> &str {
    match column {
        "page" => "Page",
        "visitors" => "Visitors",
        "visits" => "Visits",
        "pageviews" => "Page views",
        "events" => "Events",
        "crashes" => "Crashes",
        "referrer_class" => "Class",
        "source" => "Source",
        "host" => "Host",
        "utm_source" => "Source",
        "utm_medium" => "Medium",
        "utm_campaign" => "Campaign",
        "browser" => "Browser",
        "os" => "Operating system",
        "device" => "Device",
        "country" => "Country",
        "region" => "Region",
        "event" => "Event",
        "release" => "Release",
        "crash_free_visits" => "Crash-free visits",
        "crash_free_visitors" => "Crash-free visitors",
        "crash_free_all" => "Crash-free visits, all groups",
        "crashed_visits" => "Visits it hit",
        "first_seen" => "First seen",
        "last_seen" => "Last seen",
        "day" => "Day",
        "value" => "Value",
        "prop" => "Property",
        "minute" => "Minute",
        other => other,
    }
}

fn is_number(v: &Value) -> bool {
    matches!(v, Value::Number(_))
}

/// A report's rows as a table. `link` makes a cell a link (the dashboard's "click a row to filter by it"):
/// it gets the column and the value and returns the address, if any.
pub fn table(
    caption_id: &str,
    columns: &[String],
    rows: &[Map<String, Value>],
    link: &dyn Fn(&str, &Value) -> Option<String>,
) -> String {
    let mut out =
        format!(r#"<div class="scroll"><table aria-labelledby="{caption_id}"><thead><tr>"#);
    for c in columns {
        let numeric = rows.first().and_then(|r| r.get(c)).is_some_and(is_number);
        let _ = write!(
            out,
            r#"<th scope="col"{}>{}</th>"#,
            if numeric { r#" class="num""# } else { "" },
            esc(label(c))
        );
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(
            out,
            r#"<tr><td colspan="{}" class="empty">No data for this range.</td></tr>"#,
            columns.len().max(1)
        );
    }
    for row in rows {
        out.push_str("<tr>");
        for c in columns {
            let v = row.get(c).unwrap_or(&Value::Null);
            let text = esc(&cell(c, v));
            let class = if is_number(v) {
                r#" class="num""#
            } else if c.ends_with("_seen") || c == "ts" {
                // Dates and times never break across lines.
                r#" class="when""#
            } else {
                ""
            };
            let body = match link(c, v) {
                Some(href) => format!(r#"<a href="{}">{text}</a>"#, esc(&href)),
                None => text,
            };
            let _ = write!(
                out,
                r#"<td data-col="{}" data-value="{}"{class}>{body}</td>"#,
                esc(c),
                esc(&raw(v))
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

/// The sentence under a table whose rows the k-threshold left out, or a chart whose buckets it withheld:
/// never silently missing.
pub fn suppressed(n: usize, k: u64) -> String {
    if n == 0 {
        return String::new();
    }
    format!(
        r#"<p class="suppressed" data-suppressed="{n}">{n} {} hidden: each describes fewer than {k} visitors (the k-threshold of this tenant's privacy policy).</p>"#,
        if n == 1 { "row" } else { "rows" }
    )
}

/// A bar chart of one or two series over labelled buckets, with the data as a table beside it for screen
/// readers and keyboards.
pub fn bars(title: &str, buckets: &[String], series: &[(&str, Vec<f64>)]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 180.0;
    const PAD: f64 = 24.0;
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let n = buckets.len().max(1) as f64;
    let slot = (W - PAD) / n;
    let bar = (slot * 0.8 / series.len().max(1) as f64).max(1.0);
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {W} {h}" role="img" aria-label="{t}" preserveAspectRatio="none"><title>{t}</title>"#,
        h = H + PAD,
        t = esc(title)
    );
    let _ = write!(
        svg,
        r#"<text x="0" y="12" class="axis">{}</text><line x1="{PAD}" y1="{H}" x2="{W}" y2="{H}" class="base"/>"#,
        esc(&int(max as i64))
    );
    for (s, (name, values)) in series.iter().enumerate() {
        for (i, v) in values.iter().enumerate() {
            let h = (v / max) * (H - 16.0);
            let x = PAD + i as f64 * slot + slot * 0.1 + s as f64 * bar;
            let _ = write!(
                svg,
                r#"<rect class="s{s}" x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{h:.1}"><title>{}: {} {}</title></rect>"#,
                H - h,
                esc(&buckets[i]),
                esc(&int(*v as i64)),
                esc(name),
            );
        }
    }
    if let (Some(first), Some(last)) = (buckets.first(), buckets.last()) {
        let _ = write!(
            svg,
            r#"<text x="{PAD}" y="{y}" class="axis">{}</text><text x="{W}" y="{y}" class="axis end">{}</text>"#,
            esc(first),
            esc(last),
            y = H + 18.0
        );
    }
    svg.push_str("</svg>");
    let mut legend = String::from(r#"<p class="legend">"#);
    for (s, (name, _)) in series.iter().enumerate() {
        let _ = write!(legend, r#"<span class="key s{s}"></span>{} "#, esc(name));
    }
    legend.push_str("</p>");
    let mut data = String::from(
        r#"<details><summary>The chart's numbers</summary><div class="scroll"><table><thead><tr><th scope="col">When</th>"#,
    );
    for (name, _) in series {
        let _ = write!(data, r#"<th scope="col" class="num">{}</th>"#, esc(name));
    }
    data.push_str("</tr></thead><tbody>");
    for (i, b) in buckets.iter().enumerate() {
        let _ = write!(data, "<tr><td>{}</td>", esc(b));
        for (_, values) in series {
            let _ = write!(data, r#"<td class="num">{}</td>"#, int(values[i] as i64));
        }
        data.push_str("</tr>");
    }
    data.push_str("</tbody></table></div></details>");
    format!("{svg}{legend}{data}")
}

/// A small line of daily counts, for a crash group's row.
pub fn sparkline(label: &str, values: &[f64]) -> String {
    const W: f64 = 120.0;
    const H: f64 = 24.0;
    let max = values.iter().copied().fold(0.0_f64, f64::max).max(1.0);
    let step = if values.len() > 1 {
        W / (values.len() - 1) as f64
    } else {
        W
    };
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                H - 1.0 - v / max * (H - 2.0)
            )
        })
        .collect();
    format!(
        r#"<svg class="spark" viewBox="0 0 {W} {H}" role="img" aria-label="{l}"><title>{l}</title><polyline points="{}"/></svg>"#,
        points.join(" "),
        l = esc(label)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1,000");
        assert_eq!(int(1_234_567), "1,234,567");
        assert_eq!(int(-1200), "−1,200");
        assert_eq!(percent(0.4213), "42.1%");
        assert_eq!(duration(5.2), "5s");
        assert_eq!(duration(83.4), "1m 23s");
        assert_eq!(duration(3725.0), "1h 02m");
        assert_eq!(time("2026-11-29T10:04:05.123"), "2026-11-29 10:04 UTC");
    }
}
