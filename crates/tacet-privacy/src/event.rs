//! The pseudonymised event: the only shape the WAL and the lake accept (its binary form is codec.rs, its
//! Arrow form batch.rs).

use tacet_model::Kind;

/// An event after the privacy step: no raw IP, user id, user agent or full URL is left in it.
///
/// Fields are public to read; only this crate can construct one (`#[non_exhaustive]`), so anything that
/// holds an `Event` holds pseudonymised data.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Event {
    pub kind: Kind,
    pub ts_millis: i64,
    /// `None` for anonymised events.
    pub visitor_id: Option<i64>,
    pub user_pseudonym: Option<String>,
    pub browser: String,
    pub browser_version: String,
    pub os: String,
    pub os_version: String,
    pub device: &'static str,
    pub is_bot: bool,
    pub country: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
    pub ip_prefix: Option<String>,
    pub url_host: String,
    pub url_path: String,
    pub url_query: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    pub referrer_host: Option<String>,
    pub referrer_class: &'static str,
    pub referrer_source: Option<String>,
    pub name: Option<String>,
    pub props: Vec<(String, String)>,
    pub error_type: Option<String>,
    pub message: Option<String>,
    pub stack: Vec<String>,
    pub release: Option<String>,
    pub fingerprint: Option<String>,
    /// Why identifiers were left out: `dnt`, `gpc` or `consent`.
    pub anonymised: Option<&'static str>,
    /// The order this node received it in (`tacet_model::schema::arrival`), set by
    /// [`Event::set_arrival`] when the log has numbered its request; not part of the WAL form.
    pub arrival: Option<i64>,
}

impl Event {
    /// Records that this is the `index`th event of log record `seq`. Only for events with a visitor id: the
    /// order exists to sort a visitor's events, and on an anonymised event it would say which other
    /// anonymised events came in the same request, linking what anonymisation keeps apart.
    pub fn set_arrival(&mut self, seq: u64, index: usize) {
        self.arrival = self
            .visitor_id
            .is_some()
            .then(|| tacet_model::schema::arrival(seq, index));
    }
}

#[cfg(test)]
mod tests {
    use crate::TenantPolicy;
    use crate::testing::event;

    #[test]
    fn known_values_are_replaced_in_every_free_text_field() {
        let policy: TenantPolicy =
            toml::from_str("identifiers = [\"customer_no\"]\nscrub_opt_in = [\"phone\"]").unwrap();
        let e = event(
            serde_json::json!({"kind": "crash", "user_id": "canary-user-7f3a9",
                "url": "https://a.example/u/canary-user-7f3a9/cart?ref=078-05-1120",
                "error_type": "CartError",
                "message": "cart failed for user canary-user-7f3a9 from 203.0.113.5, customer C-99817, ssn 078-05-1120, call +1 415 555 0123",
                "stack": ["at load (/u/CANARY-USER-7F3A9/app.js:1:2)"],
                "release": "2.0.0 078-05-1120",
                "props": {"customer_no": "C-99817", "note": "for canary-user-7f3a9 or C-99817"}}),
            &policy,
            "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
        );
        assert_eq!(
            e.message.as_deref(),
            Some(
                "cart failed for user [user] from [ip], customer [identifier], ssn [ssn], call [phone]"
            )
        );
        assert_eq!(e.stack, ["at load (/u/[user]/app.js:1:2)"]);
        assert_eq!(e.url_path, "/u/[user]/cart");
        assert_eq!(e.release.as_deref(), Some("2.0.0 [ssn]"));
        // The identifier property itself is never stored; its value is gone from the others.
        assert_eq!(
            e.props,
            [("note".to_owned(), "for [user] or [identifier]".to_owned())]
        );
        assert!(e.user_pseudonym.is_some());
    }
}
