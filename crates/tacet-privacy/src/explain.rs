//! `tacet privacy explain <tenant>`: what the server does with each field, in words a controller can paste
//! into their privacy notice. Generated from the same policy the server applies, so it cannot drift.

use std::fmt::Write;

use tacet_model::Kind;

use crate::{BotMode, GeoLevel, IpMode, SignalMode, TenantPolicy};

/// Facts about the installation the text mentions.
#[derive(Debug, Clone, Default)]
pub struct Installation {
    /// A description of the GeoIP database (`DB-IP City Lite 2023-04`), if one is configured.
    pub geo_database: Option<String>,
    /// Whether the database is DB-IP's, whose licence asks for credit where its data is shown.
    pub geo_is_dbip: bool,
}

fn days(d: std::time::Duration) -> String {
    let days = d.as_secs() / 86_400;
    if days.is_multiple_of(365) {
        format!("{} year{}", days / 365, if days == 365 { "" } else { "s" })
    } else {
        format!("{days} days")
    }
}

fn signal(name: &str, mode: SignalMode) -> String {
    match mode {
        SignalMode::Ignore => format!("A {name} signal does not change what is collected."),
        SignalMode::Anonymous => format!(
            "When the browser sends a {name} signal, the event is only counted: it is stored without a visitor \
             identifier, user pseudonym, network prefix, region, city or custom properties."
        ),
        SignalMode::Suppress => format!(
            "When the browser sends a {name} signal, nothing about the event is stored (it is counted only in the \
             server's aggregate counter of dropped events)."
        ),
    }
}

/// The explanation for one tenant, as Markdown.
pub fn explain(tenant: &str, policy: &TenantPolicy, inst: &Installation) -> String {
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(w, "# What Tacet does with the data of `{tenant}`\n");
    let _ = writeln!(
        w,
        "Tacet receives analytics and crash events from your web pages and apps. Everything below happens \
         in memory, before anything is written to disk (the write-ahead log included).\n"
    );
    let _ = writeln!(w, "## Collected events\n");
    let kinds: Vec<&str> = policy.kinds.iter().map(|k| k.as_str()).collect();
    let _ = writeln!(
        w,
        "- Accepted kinds: {}. Events of other kinds are refused.",
        kinds.join(", ")
    );
    let _ = writeln!(w, "\n## Field by field\n");
    let _ = writeln!(
        w,
        "- **IP address**: used to compute the visitor identifier and the location, then discarded. {}",
        match policy.ip {
            IpMode::Drop => "Nothing of it is stored.",
            IpMode::Truncate => {
                "Only its network is stored: the first three bytes of an IPv4 address (/24) or the first 48 bits \
                 of an IPv6 address."
            }
            IpMode::GeoOnly => "Nothing of it is stored except the country it is located in.",
        }
    );
    let geo = policy.geo_level();
    let _ = writeln!(
        w,
        "- **Location**: {}",
        match (geo, inst.geo_database.as_deref()) {
            (GeoLevel::None, _) => "not determined; no location is stored.".to_owned(),
            (_, None) =>
                "no GeoIP database is configured on this server, so no location is stored."
                    .to_owned(),
            (level, Some(db)) => format!(
                "looked up in a local database ({db}); stored to the level of the {}. The lookup never leaves \
                 the server.",
                match level {
                    GeoLevel::Country => "country",
                    GeoLevel::Region => "country and region",
                    _ => "country, region and city",
                }
            ),
        }
    );
    let _ = writeln!(
        w,
        "- **Visitor identifier**: a keyed hash of the IP address and browser user agent, with a random key \
         that is unique to this client, changes every day (midnight {}) and is destroyed 48 hours after its \
         day ends. The same browser gets a different identifier every day, and once the key is destroyed no \
         identifier of that day can be recomputed, by anyone.",
        policy
            .timezone
            .map_or("UTC".to_owned(), |z| z.name().to_owned())
    );
    let _ = writeln!(
        w,
        "- **User id** (when your app sends one): stored only as a keyed pseudonym (HMAC-SHA256 under a key held \
         by this server for this client), so that access, erasure and objection requests can be served. \
         The user id itself is never stored.{}",
        if policy.require_consent {
            " It is used only when the event says the user consented (`consent: true`); otherwise the event \
             is counted without any identifier."
        } else {
            ""
        }
    );
    let _ = writeln!(
        w,
        "- **Browser, operating system, device**: derived from the user agent (family, version, desktop, \
         mobile or tablet); the user-agent string itself is not stored."
    );
    let _ = writeln!(w, "- **Date and time**: stored to the millisecond, in UTC.");
    let _ = writeln!(
        w,
        "- **Page address**: host and path are stored; the query string is dropped except the campaign \
         parameters (utm_source, utm_medium, utm_campaign, utm_term, utm_content){}; the fragment is dropped.",
        if policy.query_params.is_empty() {
            String::new()
        } else {
            format!(" and {}", policy.query_params.join(", "))
        }
    );
    let _ = writeln!(
        w,
        "- **Referrer**: only its host is stored, classed as search, social, e-mail, internal, direct or other."
    );
    let _ = writeln!(
        w,
        "- **Usage events and their properties**: {}",
        match &policy.props {
            None => "every property is stored after scrubbing (below).".to_owned(),
            Some(keys) if keys.is_empty() => "custom properties are not stored.".to_owned(),
            Some(keys) => format!(
                "only these properties are stored, after scrubbing: {}.",
                keys.join(", ")
            ),
        }
    );
    let _ = writeln!(
        w,
        "- **Crash data**: error type, message, stack frames and release are stored after scrubbing, with a \
         fingerprint that groups occurrences of the same error."
    );
    let _ = writeln!(w, "\n## Scrubbing\n");
    let _ = writeln!(
        w,
        "Free text (page paths, messages, stack frames, properties) is searched for personal data and \
         secrets, which are replaced by a placeholder naming their type: e-mail addresses, IP addresses, \
         payment card numbers, IBANs, US social security numbers, private keys, passwords and credentials in \
         URLs, bearer tokens, JSON Web Tokens, API tokens, values of fields named like password, secret, token \
         or key, and user names in home-directory paths. Before that, the event's own user id, the sender's IP \
         address{} are replaced wherever they appear in that text.{}{}",
        if policy.identifiers.is_empty() {
            String::new()
        } else {
            format!(
                " and the identifier properties ({}, which are never stored themselves)",
                policy.identifiers.join(", ")
            )
        },
        if policy.scrubs("phone") {
            " Telephone numbers are removed too."
        } else {
            ""
        },
        if policy.scrub.is_empty() {
            String::new()
        } else {
            format!(
                " Also removed, at your request: {}.",
                policy
                    .scrub
                    .iter()
                    .map(|r| format!("`[{}]`", r.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let _ = writeln!(w, "\n## Privacy signals and automated traffic\n");
    let _ = writeln!(
        w,
        "- {}",
        signal("Global Privacy Control (Sec-GPC)", policy.gpc)
    );
    let _ = writeln!(w, "- {}", signal("Do Not Track (DNT)", policy.dnt));
    let _ = writeln!(
        w,
        "- {}",
        match policy.bots {
            BotMode::Drop =>
                "Events from crawlers, headless browsers and HTTP tools are not stored.",
            BotMode::Flag =>
                "Events from crawlers, headless browsers and HTTP tools are stored, marked as bots.",
        }
    );
    let _ = writeln!(w, "\n## Retention\n");
    for kind in Kind::ALL {
        if let Some(d) = policy.retention.get(&kind) {
            let _ = writeln!(
                w,
                "- {} events are deleted {} after the day they happened.",
                kind.as_str(),
                days(*d)
            );
        }
    }
    let _ = writeln!(
        w,
        "- At the end of the contract, all of this client's events and keys are deleted."
    );
    if inst.geo_is_dbip {
        let _ = writeln!(
            w,
            "\nIP geolocation by DB-IP (https://db-ip.com), licensed under CC BY 4.0."
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_policy() {
        let strict: TenantPolicy = toml::from_str(
            "ip = \"drop\"\ngeo = \"none\"\ndnt = \"suppress\"\nprops = []\n[retention]\ncrash = \"30d\"",
        )
        .unwrap();
        let text = explain("acme", &strict, &Installation::default());
        assert!(text.contains("Nothing of it is stored."), "{text}");
        assert!(text.contains("no location is stored"), "{text}");
        assert!(
            text.contains("Do Not Track (DNT) signal, nothing about the event is stored"),
            "{text}"
        );
        assert!(text.contains("custom properties are not stored"), "{text}");
        assert!(
            text.contains("crash events are deleted 30 days after"),
            "{text}"
        );
        assert!(!text.contains("DB-IP"), "{text}");

        let open: TenantPolicy = toml::from_str(
            "ip = \"truncate\"\ngeo = \"city\"\nrequire_consent = true\nquery_params = [\"page\"]\ntimezone = \"Europe/Paris\"",
        )
        .unwrap();
        let inst = Installation {
            geo_database: Some("DB-IP City Lite".into()),
            geo_is_dbip: true,
        };
        let text = explain("acme", &open, &inst);
        assert!(text.contains("first three bytes"), "{text}");
        assert!(text.contains("country, region and city"), "{text}");
        assert!(text.contains("consent: true"), "{text}");
        assert!(text.contains("utm_content) and page"), "{text}");
        assert!(text.contains("midnight Europe/Paris"), "{text}");
        assert!(text.contains("IP geolocation by DB-IP"), "{text}");
    }
}
