//! `[delivery]`: the after-queue content filter (SMTP ingress on 10024,
//! spool, delivery to the relay on 10025). Every key has its default in
//! [`super::d`]; the cross-key checks (retry schedule, connection window)
//! run after the table is read.

use std::time::Duration;

use super::{d, Checker, Node};
use crate::config::{DeliveryConfig, RelayTls};
use crate::delivery::{ConcurrencyLimits, RetryPolicy};
use crate::limits;
use crate::spool::GroupCommit;

/// The keys of `[delivery]`, in the order docs/CONFIG.md lists them.
pub(super) const DELIVERY_KEYS: &[&str] = &[
    "enabled",
    "listen",
    "hostname",
    "spool_dir",
    "relay",
    "scan",
    "commit_delay",
    "commit_records_max",
    "commit_bytes_max",
    "connect_timeout",
    "command_timeout",
    "idle_timeout",
    "session_time_max",
    "message_bytes_max",
    "rcpt_count_max",
    "errors_max",
    "connections_max_per_shard",
    "xforward",
    "chunking",
    "smtputf8",
    "retry_initial",
    "retry_factor",
    "retry_interval_max",
    "retry_jitter_percent",
    "queue_lifetime",
    "relay_connections_max",
    "relay_connections_initial",
    "relay_idle_time",
    "relay_tls",
    "relay_tls_ca_file",
    "relay_tls_server_name",
];

/// The defaults: what an absent `[delivery]` gives.
fn defaults() -> DeliveryConfig {
    DeliveryConfig {
        enabled: false,
        listen: vec![d::DELIVERY_LISTEN_DEFAULT],
        hostname: None,
        spool_dir: None,
        group_commit: GroupCommit::default(),
        relay: d::DELIVERY_RELAY_DEFAULT,
        connect_timeout: d::DELIVERY_CONNECT_TIMEOUT_DEFAULT,
        command_timeout: d::DELIVERY_COMMAND_TIMEOUT_DEFAULT,
        idle_timeout: d::INGRESS_IDLE_TIMEOUT_DEFAULT,
        session_time_max: crate::smtp::SESSION_TIME_DEFAULT,
        message_bytes_max: limits::MESSAGE_BYTES_DEFAULT,
        rcpt_count_max: crate::smtp::RCPT_COUNT_DEFAULT,
        errors_max: crate::smtp::ERRORS_DEFAULT,
        connections_max_per_shard: d::INGRESS_CONNECTIONS_PER_SHARD_DEFAULT,
        xforward: true,
        chunking: true,
        smtputf8: true,
        scan: true,
        retry: RetryPolicy::default(),
        concurrency: ConcurrencyLimits {
            total_max: crate::delivery::concurrency::DESTINATION_CONCURRENCY_DEFAULT,
            ..ConcurrencyLimits::default()
        },
        relay_idle_time: d::RELAY_IDLE_TIME_DEFAULT,
        relay_tls: RelayTls::Off,
        relay_tls_ca_file: None,
        relay_tls_server_name: None,
    }
}

impl Checker {
    /// `[delivery]`.
    pub(super) fn delivery(&mut self, node: &Node) -> DeliveryConfig {
        let mut out = defaults();
        // Cross-key checks only look at keys that were valid on their own.
        let mut retry_ok = true;
        let mut window_ok = true;
        for (name, value) in self.table("delivery", node, "[delivery]") {
            let key = format!("delivery.{name}");
            let k = key.as_str();
            match name.as_str() {
                "enabled" => {
                    if let Some(b) = self.boolean(k, value, "enabled = true") {
                        out.enabled = b;
                    }
                }
                "listen" => {
                    if let Some(list) = self.listen(k, value) {
                        out.listen = list;
                    }
                }
                "hostname" => out.hostname = self.hostname(k, value),
                "spool_dir" => {
                    out.spool_dir = self.path(k, value, r#"spool_dir = "/var/spool/mailborder""#);
                }
                "relay" => {
                    if let Some(a) = self.tcp_address(k, value) {
                        out.relay = a;
                    }
                }
                "scan" => {
                    if let Some(b) = self.boolean(k, value, "scan = false") {
                        out.scan = b;
                    }
                }
                "commit_delay" => {
                    let range = (Duration::ZERO, d::COMMIT_DELAY_MAX);
                    if let Some(v) = self.duration(k, value, r#"commit_delay = "2ms""#, range) {
                        out.group_commit.max_delay = v;
                    }
                }
                "commit_records_max" => {
                    let (lo, hi) = d::COMMIT_RECORDS_RANGE;
                    if let Some(n) = self.integer(k, value, "commit_records_max = 256", lo, hi) {
                        out.group_commit.max_records = u32::try_from(n).unwrap_or(u32::MAX);
                    }
                }
                "commit_bytes_max" => {
                    let example = r#"commit_bytes_max = "4MiB""#;
                    if let Some(n) = self.bytes(k, value, example, d::COMMIT_BYTES_RANGE) {
                        out.group_commit.max_bytes = n;
                    }
                }
                "connect_timeout" => {
                    let range = (d::DELIVERY_TIMEOUT_MIN, d::DELIVERY_CONNECT_TIMEOUT_MAX);
                    if let Some(v) = self.duration(k, value, r#"connect_timeout = "30s""#, range) {
                        out.connect_timeout = v;
                    }
                }
                "command_timeout" => {
                    let range = (d::DELIVERY_TIMEOUT_MIN, d::DELIVERY_COMMAND_TIMEOUT_MAX);
                    if let Some(v) = self.duration(k, value, r#"command_timeout = "10m""#, range) {
                        out.command_timeout = v;
                    }
                }
                "relay_idle_time" => {
                    let range = d::RELAY_IDLE_TIME_RANGE;
                    if let Some(v) = self.duration(k, value, r#"relay_idle_time = "2s""#, range) {
                        out.relay_idle_time = v;
                    }
                }
                "idle_timeout" => {
                    let range = d::INGRESS_IDLE_TIMEOUT_RANGE;
                    if let Some(v) = self.duration(k, value, r#"idle_timeout = "5m""#, range) {
                        out.idle_timeout = v;
                    }
                }
                "session_time_max" => {
                    let range = d::SESSION_TIME_RANGE;
                    if let Some(v) = self.duration(k, value, r#"session_time_max = "30m""#, range) {
                        out.session_time_max = v;
                    }
                }
                "message_bytes_max" => {
                    let range = (d::MESSAGE_BYTES_MIN, crate::spool::BODY_BYTES_MAX as u64);
                    let example = r#"message_bytes_max = "50MiB""#;
                    if let Some(n) = self.bytes(k, value, example, range) {
                        out.message_bytes_max = n;
                    }
                }
                "rcpt_count_max" => {
                    let hi = limits::RCPT_COUNT_MAX as i64;
                    if let Some(n) = self.integer(k, value, "rcpt_count_max = 1000", 1, hi) {
                        out.rcpt_count_max = u32::try_from(n).unwrap_or(u32::MAX);
                    }
                }
                "errors_max" => {
                    let (lo, hi) = d::INGRESS_ERRORS_RANGE;
                    if let Some(n) = self.integer(k, value, "errors_max = 20", lo, hi) {
                        out.errors_max = u32::try_from(n).unwrap_or(u32::MAX);
                    }
                }
                "connections_max_per_shard" => {
                    let hi = i64::from(d::CONNECTIONS_MAX_PER_SHARD_MAX);
                    let example = "connections_max_per_shard = 100";
                    if let Some(n) = self.integer(k, value, example, 1, hi) {
                        out.connections_max_per_shard = u32::try_from(n).unwrap_or(u32::MAX);
                    }
                }
                "xforward" => {
                    if let Some(b) = self.boolean(k, value, "xforward = false") {
                        out.xforward = b;
                    }
                }
                "chunking" => {
                    if let Some(b) = self.boolean(k, value, "chunking = false") {
                        out.chunking = b;
                    }
                }
                "smtputf8" => {
                    if let Some(b) = self.boolean(k, value, "smtputf8 = false") {
                        out.smtputf8 = b;
                    }
                }
                "retry_initial" => {
                    let range = d::RETRY_INTERVAL_RANGE;
                    match self.duration(k, value, r#"retry_initial = "5m""#, range) {
                        Some(v) => out.retry.initial = v,
                        None => retry_ok = false,
                    }
                }
                "retry_factor" => {
                    let (lo, hi) = d::RETRY_FACTOR_RANGE;
                    match self.integer(k, value, "retry_factor = 2", lo, hi) {
                        Some(n) => out.retry.factor = u32::try_from(n).unwrap_or(1),
                        None => retry_ok = false,
                    }
                }
                "retry_interval_max" => {
                    let range = d::RETRY_INTERVAL_RANGE;
                    match self.duration(k, value, r#"retry_interval_max = "4000s""#, range) {
                        Some(v) => out.retry.interval_max = v,
                        None => retry_ok = false,
                    }
                }
                "retry_jitter_percent" => {
                    match self.integer(k, value, "retry_jitter_percent = 20", 0, 100) {
                        Some(n) => out.retry.jitter_percent = u32::try_from(n).unwrap_or(0),
                        None => retry_ok = false,
                    }
                }
                "queue_lifetime" => {
                    let range = d::QUEUE_LIFETIME_RANGE;
                    match self.duration(k, value, r#"queue_lifetime = "120h""#, range) {
                        Some(v) => out.retry.lifetime_max = v,
                        None => retry_ok = false,
                    }
                }
                "relay_connections_max" => {
                    let (lo, hi) = d::RELAY_CONNECTIONS_RANGE;
                    match self.integer(k, value, "relay_connections_max = 20", lo, hi) {
                        Some(n) => {
                            let n = u32::try_from(n).unwrap_or(1);
                            out.concurrency.total_max = n;
                            out.concurrency.per_destination_max = n;
                        }
                        None => window_ok = false,
                    }
                }
                "relay_connections_initial" => {
                    let (lo, hi) = d::RELAY_CONNECTIONS_RANGE;
                    match self.integer(k, value, "relay_connections_initial = 5", lo, hi) {
                        Some(n) => out.concurrency.initial = u32::try_from(n).unwrap_or(1),
                        None => window_ok = false,
                    }
                }
                "relay_tls" => {
                    if let Some(mode) = self.relay_tls(k, value) {
                        out.relay_tls = mode;
                    }
                }
                "relay_tls_ca_file" => {
                    let example = r#"relay_tls_ca_file = "/etc/mailborder/relay-ca.pem""#;
                    out.relay_tls_ca_file = self.path(k, value, example);
                }
                "relay_tls_server_name" => {
                    out.relay_tls_server_name = self.server_name(k, value);
                }
                _ => {
                    self.unknown(k, name, DELIVERY_KEYS);
                }
            }
        }
        self.relay_tls_cross_checks(node, &out);
        if retry_ok {
            if let Err(e) = out.retry.check() {
                let (key, fix) = match e {
                    crate::delivery::RetryPolicyError::Initial => (
                        "delivery.retry_initial",
                        "lower retry_initial or raise retry_interval_max",
                    ),
                    crate::delivery::RetryPolicyError::Lifetime => (
                        "delivery.queue_lifetime",
                        "raise queue_lifetime to at least retry_initial",
                    ),
                    crate::delivery::RetryPolicyError::Factor
                    | crate::delivery::RetryPolicyError::Jitter => {
                        ("delivery.retry_factor", "use the documented range")
                    }
                };
                self.error(key, format!("{e}: {fix}"));
            }
        }
        if window_ok && out.concurrency.initial > out.concurrency.per_destination_max {
            let (initial, max) = (out.concurrency.initial, out.concurrency.per_destination_max);
            self.error(
                "delivery.relay_connections_initial",
                format!(
                    "relay_connections_initial = {initial} is above relay_connections_max = \
                     {max}: lower it to at most {max}"
                ),
            );
        }
        out
    }

    /// `delivery.listen`: one address or a list.
    fn listen(&mut self, key: &str, node: &Node) -> Option<Vec<std::net::SocketAddr>> {
        let example = r#"listen = ["127.0.0.1:10024"]"#;
        let items = self.address_items(key, node, example)?;
        if items.is_empty() {
            return self.fail(
                key,
                "no ingress address: list at least one, e.g. `listen = [\"127.0.0.1:10024\"]`, \
                 or set enabled = false",
            );
        }
        self.addresses(
            items,
            "the ingress accepts mail for any recipient and trusts XFORWARD, so keep it \
             reachable by your Postfix only (firewall it)",
        )
    }

    /// `delivery.relay_tls`: `off`, `may`, `encrypt` or `verify`.
    fn relay_tls(&mut self, key: &str, node: &Node) -> Option<RelayTls> {
        let text = self.string(key, node, r#"relay_tls = "verify""#)?;
        let mode = [
            RelayTls::Off,
            RelayTls::May,
            RelayTls::Encrypt,
            RelayTls::Verify,
        ]
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(text));
        if mode.is_none() {
            let hint = match text.to_ascii_lowercase().as_str() {
                "opportunistic" | "optional" => " (`may` is opportunistic TLS)",
                "required" | "secure" | "dane" => {
                    " (`encrypt` requires TLS, `verify` also checks the certificate)"
                }
                "none" | "no" | "false" => " (`off` is plaintext)",
                _ => "",
            };
            return self.fail(
                key,
                format!("`{text}` is not one of \"off\", \"may\", \"encrypt\", \"verify\"{hint}"),
            );
        }
        mode
    }

    /// `delivery.relay_tls_server_name`: a DNS name or an IP address.
    fn server_name(&mut self, key: &str, node: &Node) -> Option<String> {
        let text = self.string(key, node, r#"relay_tls_server_name = "relay.example.com""#)?;
        if text.parse::<std::net::IpAddr>().is_ok() {
            return Some(text.to_owned());
        }
        let name = text.strip_suffix('.').unwrap_or(text);
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return self.fail(
                key,
                format!(
                    "`{text}` is not a host name or IP address: write the name in the relay's \
                     certificate, e.g. \"relay.example.com\""
                ),
            );
        }
        Some(name.to_ascii_lowercase())
    }

    /// The `relay_tls*` keys together: `verify` needs a name to check the
    /// certificate against (the relay is an IP address); the CA file and
    /// name do nothing without `verify`.
    fn relay_tls_cross_checks(&mut self, node: &Node, out: &DeliveryConfig) {
        let set = |key: &str| matches!(node, Node::Table(entries) if entries.iter().any(|(n, _)| n == key));
        // An invalid name was reported already.
        if out.relay_tls == RelayTls::Verify && !set("relay_tls_server_name") {
            let ip = out.relay.ip();
            self.error(
                "delivery.relay_tls",
                format!(
                    "relay_tls = \"verify\" checks the relay's certificate against a name, and \
                     relay = {} is an IP address: set relay_tls_server_name to the name in its \
                     certificate, e.g. relay_tls_server_name = \"relay.example.com\" (or \
                     \"{ip}\" if the certificate lists that address)",
                    out.relay
                ),
            );
        }
        if out.relay_tls != RelayTls::Verify {
            for name in ["relay_tls_ca_file", "relay_tls_server_name"] {
                if set(name) {
                    self.warning(
                        &format!("delivery.{name}"),
                        format!(
                            "{name} is used only with relay_tls = \"verify\" (it is \"{}\"): \
                             no certificate is checked",
                            out.relay_tls.name()
                        ),
                    );
                }
            }
        }
    }

    /// `delivery.hostname`: a host name for the greeting and DSNs.
    fn hostname(&mut self, key: &str, node: &Node) -> Option<String> {
        let text = self.string(key, node, r#"hostname = "mx.example.com""#)?;
        let valid = !text.is_empty()
            && text.len() <= 253
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid {
            return self.fail(
                key,
                format!(
                    "`{text}` is not a host name: letters, digits, `-` and `.` only, e.g. \
                     \"mx.example.com\""
                ),
            );
        }
        Some(text.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, Severity};
    use std::time::Duration;

    #[test]
    fn delivery_defaults_are_off_and_on_loopback() {
        let c = parse("").config.expect("defaults");
        let d = &c.delivery;
        assert!(!d.enabled);
        assert_eq!(d.listen, ["127.0.0.1:10024".parse().unwrap()]);
        assert_eq!(d.relay, "127.0.0.1:10025".parse().unwrap());
        assert_eq!(d.retry, crate::delivery::RetryPolicy::default());
        assert!(d.scan && d.xforward);
        assert_eq!(d.relay_idle_time, Duration::from_secs(2));
    }

    #[test]
    fn delivery_keys_are_read() {
        let text = r#"
[delivery]
enabled = true
listen = ["127.0.0.1:2525", "[::1]:2525"]
hostname = "Filter.Example"
spool_dir = "/var/spool/mailborder"
relay = "127.0.0.1:2526"
commit_delay = "2ms"
commit_records_max = 64
commit_bytes_max = "1MiB"
connect_timeout = "1s"
command_timeout = "2s"
retry_initial = "1s"
retry_factor = 1
retry_interval_max = "2s"
retry_jitter_percent = 0
queue_lifetime = "1m"
relay_connections_max = 4
relay_connections_initial = 2
relay_idle_time = "0s"
"#;
        let checked = parse(text);
        assert_eq!(checked.diagnostics, [], "{text}");
        let d = checked.config.expect("valid").delivery;
        assert!(d.enabled);
        assert_eq!(d.listen.len(), 2);
        assert_eq!(d.hostname.as_deref(), Some("filter.example"));
        assert_eq!(d.group_commit.max_delay, Duration::from_millis(2));
        assert_eq!(d.group_commit.max_records, 64);
        assert_eq!(d.retry.initial, Duration::from_secs(1));
        assert_eq!(d.retry.factor, 1);
        assert_eq!(d.retry.lifetime_max, Duration::from_secs(60));
        assert_eq!(d.concurrency.per_destination_max, 4);
        assert_eq!(d.concurrency.initial, 2);
        assert_eq!(d.relay_idle_time, Duration::ZERO);
    }

    #[test]
    fn delivery_mistakes_are_all_reported() {
        let text = r#"
[delivery]
enabled = "yes"
listen = []
relay = "localhost:25"
retry_initial = "2h"
retry_interval_max = "1h"
relay_connections_max = 2
relay_connections_initial = 3
commit_delay = "5s"
retry = "1s"
relay_idle_time = "1h"
"#;
        let checked = parse(text);
        assert!(checked.config.is_none());
        let keys: Vec<&str> = checked
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "delivery.enabled",
                "delivery.listen",
                "delivery.relay",
                "delivery.commit_delay",
                "delivery.retry",
                "delivery.relay_idle_time",
                "delivery.retry_initial",
                "delivery.relay_connections_initial",
            ]
        );
    }

    #[test]
    fn relay_tls_defaults_to_off() {
        let d = parse("").config.expect("defaults").delivery;
        assert_eq!(d.relay_tls, crate::config::RelayTls::Off);
        assert_eq!(d.relay_tls_ca_file, None);
        assert_eq!(d.relay_tls_server_name, None);
    }

    #[test]
    fn relay_tls_keys_are_read() {
        use crate::config::RelayTls;
        let text = r#"
[delivery]
relay = "192.0.2.1:25"
relay_tls = "verify"
relay_tls_ca_file = "/etc/mailborder/relay-ca.pem"
relay_tls_server_name = "Relay.Example.COM."
"#;
        let checked = parse(text);
        assert_eq!(checked.diagnostics, [], "{text}");
        let d = checked.config.expect("valid").delivery;
        assert_eq!(d.relay_tls, RelayTls::Verify);
        assert!(d.relay_tls.required());
        assert_eq!(
            d.relay_tls_ca_file.as_deref(),
            Some(std::path::Path::new("/etc/mailborder/relay-ca.pem"))
        );
        assert_eq!(
            d.relay_tls_server_name.as_deref(),
            Some("relay.example.com")
        );
        for (word, mode) in [
            ("off", RelayTls::Off),
            ("MAY", RelayTls::May),
            ("encrypt", RelayTls::Encrypt),
        ] {
            let text = format!("[delivery]\nrelay_tls = \"{word}\"\n");
            let checked = parse(&text);
            assert_eq!(checked.diagnostics, [], "{text}");
            assert_eq!(checked.config.expect("valid").delivery.relay_tls, mode);
        }
        // An IP address is a valid name (checked against an IP SAN).
        let text = "[delivery]\nrelay_tls = \"verify\"\nrelay_tls_server_name = \"127.0.0.1\"\n";
        let checked = parse(text);
        assert_eq!(checked.diagnostics, [], "{text}");
    }

    #[test]
    fn relay_tls_mistakes_are_reported_with_their_keys() {
        let errors = |text: &str| -> Vec<(String, String)> {
            let checked = parse(text);
            checked
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| (d.key.clone(), d.message.clone()))
                .collect()
        };
        let e = errors("[delivery]\nrelay_tls = \"required\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "delivery.relay_tls");
        assert!(e[0].1.contains("`encrypt` requires TLS"), "{e:?}");
        // verify without a name: the relay is an IP address.
        let e = errors("[delivery]\nrelay = \"10.1.2.3:25\"\nrelay_tls = \"verify\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "delivery.relay_tls");
        assert!(e[0].1.contains("relay_tls_server_name"), "{e:?}");
        assert!(e[0].1.contains("10.1.2.3"), "{e:?}");
        // A bad name is reported once, on its own key.
        let e = errors(
            "[delivery]\nrelay_tls = \"verify\"\nrelay_tls_server_name = \"bad name!\"\n\
             relay_tls_ca_file = \"\"\n",
        );
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "delivery.relay_tls_server_name",
                "delivery.relay_tls_ca_file"
            ]
        );
        let e = errors("[delivery]\nrelay_tls = 1\n");
        assert_eq!(e[0].0, "delivery.relay_tls");
    }

    #[test]
    fn relay_tls_settings_without_verify_warn() {
        let text = "[delivery]\nrelay_tls = \"may\"\nrelay_tls_ca_file = \"/etc/ca.pem\"\n";
        let checked = parse(text);
        assert!(checked.config.is_some());
        let warnings: Vec<&str> = checked
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .map(|d| d.key.as_str())
            .collect();
        assert_eq!(warnings, ["delivery.relay_tls_ca_file"]);
    }
}
