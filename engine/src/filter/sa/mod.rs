//! SpamAssassin `.cf` rule files read into rule definitions.
//!
//! [`load`] takes the text of one or more `.cf` files (the caller reads them:
//! the stock set from `/usr/share/spamassassin/*.cf` in name order, then local
//! files) and returns a [`RuleSet`]: every rule with its kind, its Perl regex
//! and translation ([`PerlRegex`]), score (score set 0: no Bayes, no network),
//! description, tflags and origin, plus the settings that are not rules and a
//! [`Report`] that counts what is active and what is skipped, and why.
//!
//! The parser follows `Mail::SpamAssassin::Conf::Parser`: a `#` not preceded
//! by a backslash starts a comment, `\#` then becomes `#`, the directive is
//! lower-cased, `lang xx` prefixes apply only to the configured language,
//! `if`/`ifplugin`/`else`/`endif` blocks are evaluated against [`Options`],
//! `require_version` other than ours skips the rest of the file, and a later
//! definition of a rule replaces an earlier one. A malformed line is reported
//! with its file, line and column and skipped; nothing here panics on input.
//!
//! Eval rules are parsed and inventoried ([`EvalUse`]), not run: see
//! [`evals::classify`] for which need the network, Bayes or a database.

mod cond;
pub mod evals;
pub mod meta;
pub mod perl;
mod report;

use std::collections::HashMap;

pub use evals::EvalClass;
pub use meta::MetaExpr;
pub use perl::{Class, PerlRegex};

/// One `.cf` file: its name (for origins) and its text.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The file name reported in origins, e.g. `20_head_tests.cf`.
    pub file: &'a str,
    /// The file's contents (see [`decode`] for files that are not UTF-8).
    pub text: &'a str,
}

/// Decodes a `.cf` file: UTF-8 as is; a file that is not valid UTF-8 has each
/// invalid byte read as Latin-1 (several stock files carry Latin-1 text).
#[must_use]
pub fn decode(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => {
            let mut out = String::with_capacity(bytes.len());
            let mut rest = bytes;
            while !rest.is_empty() {
                match std::str::from_utf8(rest) {
                    Ok(s) => {
                        out.push_str(s);
                        break;
                    }
                    Err(e) => {
                        let (good, bad) = rest.split_at(e.valid_up_to());
                        out.push_str(std::str::from_utf8(good).unwrap_or_default());
                        let n = e.error_len().unwrap_or(bad.len()).max(1);
                        out.extend(bad[..n].iter().map(|b| char::from(*b)));
                        rest = &bad[n..];
                    }
                }
            }
            out
        }
    }
}

/// The plugins Debian's SpamAssassin 4.0.1 loads by default (`/etc/spamassassin/*.pre`).
pub const DEFAULT_PLUGINS: &[&str] = &[
    "Mail::SpamAssassin::Plugin::URIDNSBL",
    "Mail::SpamAssassin::Plugin::SPF",
    "Mail::SpamAssassin::Plugin::Pyzor",
    "Mail::SpamAssassin::Plugin::Razor2",
    "Mail::SpamAssassin::Plugin::SpamCop",
    "Mail::SpamAssassin::Plugin::AutoLearnThreshold",
    "Mail::SpamAssassin::Plugin::WelcomeListSubject",
    "Mail::SpamAssassin::Plugin::MIMEHeader",
    "Mail::SpamAssassin::Plugin::ReplaceTags",
    "Mail::SpamAssassin::Plugin::DKIM",
    "Mail::SpamAssassin::Plugin::Check",
    "Mail::SpamAssassin::Plugin::HTTPSMismatch",
    "Mail::SpamAssassin::Plugin::URIDetail",
    "Mail::SpamAssassin::Plugin::Bayes",
    "Mail::SpamAssassin::Plugin::BodyEval",
    "Mail::SpamAssassin::Plugin::DNSEval",
    "Mail::SpamAssassin::Plugin::HTMLEval",
    "Mail::SpamAssassin::Plugin::HeaderEval",
    "Mail::SpamAssassin::Plugin::MIMEEval",
    "Mail::SpamAssassin::Plugin::RelayEval",
    "Mail::SpamAssassin::Plugin::URIEval",
    "Mail::SpamAssassin::Plugin::WLBLEval",
    "Mail::SpamAssassin::Plugin::VBounce",
    "Mail::SpamAssassin::Plugin::ImageInfo",
    "Mail::SpamAssassin::Plugin::FreeMail",
    "Mail::SpamAssassin::Plugin::AskDNS",
    "Mail::SpamAssassin::Plugin::HashBL",
    "Mail::SpamAssassin::Plugin::DMARC",
];

/// The `can(...)` features answered true by default: those SpamAssassin
/// 4.0.1 defines (`Mail::SpamAssassin::Conf::feature_*`, the plugins' `has_*`)
/// plus `compat_welcomelist_blocklist` (Debian's `init.pre` enables it).
/// A plugin's feature counts only while the plugin is in [`Options::plugins`].
/// Left out: `feature_capture_rules` (`%{NAME}` templates filled at match time
/// are not supported).
pub const DEFAULT_FEATURES: &[&str] = &[
    "Mail::SpamAssassin::Conf::compat_welcomelist_blocklist",
    "Mail::SpamAssassin::Conf::feature_bayes_auto_learn_on_error",
    "Mail::SpamAssassin::Conf::feature_bayes_stopwords",
    "Mail::SpamAssassin::Conf::feature_blocklist_welcomelist",
    "Mail::SpamAssassin::Conf::feature_bug6558_free",
    "Mail::SpamAssassin::Conf::feature_compile_regexp",
    "Mail::SpamAssassin::Conf::feature_dns_block_rule",
    "Mail::SpamAssassin::Conf::feature_dns_local_ports_permit_avoid",
    "Mail::SpamAssassin::Conf::feature_dns_query_restriction",
    "Mail::SpamAssassin::Conf::feature_edns",
    "Mail::SpamAssassin::Conf::feature_geodb",
    "Mail::SpamAssassin::Conf::feature_get_host",
    "Mail::SpamAssassin::Conf::feature_header_address_parser",
    "Mail::SpamAssassin::Conf::feature_header_first_last",
    "Mail::SpamAssassin::Conf::feature_header_match_many",
    "Mail::SpamAssassin::Conf::feature_local_tests_only",
    "Mail::SpamAssassin::Conf::feature_meta_rules_matching",
    "Mail::SpamAssassin::Conf::feature_originating_ip_headers",
    "Mail::SpamAssassin::Conf::feature_registryboundaries",
    "Mail::SpamAssassin::Conf::feature_subjprefix",
    "Mail::SpamAssassin::Conf::feature_uri_host_listed",
    "Mail::SpamAssassin::Conf::feature_welcomelist_blocklist",
    "Mail::SpamAssassin::Conf::feature_yesno_takes_args",
    "Mail::SpamAssassin::Conf::has_tflags_nolog",
    "Mail::SpamAssassin::Conf::has_tflags_nosubject",
    "Mail::SpamAssassin::Conf::perl_min_version_5010000",
    "Mail::SpamAssassin::Plugin::ASN::has_asn_geodb",
    "Mail::SpamAssassin::Plugin::ASN::has_asn_lookup_ipv6",
    "Mail::SpamAssassin::Plugin::ASN::has_check_asn",
    "Mail::SpamAssassin::Plugin::ASN::has_check_asn_tag",
    "Mail::SpamAssassin::Plugin::AskDNS::has_tag_header",
    "Mail::SpamAssassin::Plugin::BodyEval::has_check_body_length",
    "Mail::SpamAssassin::Plugin::BodyEval::has_plaintext_body_sig_ratio",
    "Mail::SpamAssassin::Plugin::DKIM::has_arc",
    "Mail::SpamAssassin::Plugin::DNSEval::has_tflags_domains_only",
    "Mail::SpamAssassin::Plugin::DNSEval::has_tflags_ips_only",
    "Mail::SpamAssassin::Plugin::DecodeShortURLs::has_autoclean",
    "Mail::SpamAssassin::Plugin::DecodeShortURLs::has_clear",
    "Mail::SpamAssassin::Plugin::DecodeShortURLs::has_get",
    "Mail::SpamAssassin::Plugin::DecodeShortURLs::has_max_redirections",
    "Mail::SpamAssassin::Plugin::DecodeShortURLs::has_short_url",
    "Mail::SpamAssassin::Plugin::DecodeShortURLs::has_short_url_code",
    "Mail::SpamAssassin::Plugin::DecodeShortURLs::has_short_url_redir",
    "Mail::SpamAssassin::Plugin::DecodeShortURLs::has_timeout",
    "Mail::SpamAssassin::Plugin::DecodeShortURLs::has_user_agent",
    "Mail::SpamAssassin::Plugin::HashBL::has_hashbl_attachments",
    "Mail::SpamAssassin::Plugin::HashBL::has_hashbl_bodyre",
    "Mail::SpamAssassin::Plugin::HashBL::has_hashbl_bodyre_num",
    "Mail::SpamAssassin::Plugin::HashBL::has_hashbl_email_domain",
    "Mail::SpamAssassin::Plugin::HashBL::has_hashbl_email_domain_alias",
    "Mail::SpamAssassin::Plugin::HashBL::has_hashbl_email_regex",
    "Mail::SpamAssassin::Plugin::HashBL::has_hashbl_email_welcomelist",
    "Mail::SpamAssassin::Plugin::HashBL::has_hashbl_email_whitelist",
    "Mail::SpamAssassin::Plugin::HashBL::has_hashbl_emails",
    "Mail::SpamAssassin::Plugin::HashBL::has_hashbl_ignore",
    "Mail::SpamAssassin::Plugin::HashBL::has_hashbl_sha256",
    "Mail::SpamAssassin::Plugin::HashBL::has_hashbl_tag",
    "Mail::SpamAssassin::Plugin::HashBL::has_hashbl_uris",
    "Mail::SpamAssassin::Plugin::MIMEEval::has_check_abundant_unicode_ratio",
    "Mail::SpamAssassin::Plugin::MIMEEval::has_check_for_ascii_text_illegal",
    "Mail::SpamAssassin::Plugin::MIMEEval::has_check_qp_ratio",
    "Mail::SpamAssassin::Plugin::MIMEHeader::has_all_header",
    "Mail::SpamAssassin::Plugin::MIMEHeader::has_tflags_concat",
    "Mail::SpamAssassin::Plugin::MIMEHeader::has_tflags_multiple",
    "Mail::SpamAssassin::Plugin::MIMEHeader::has_tflags_range",
    "Mail::SpamAssassin::Plugin::OLEVBMacro::has_olemacro_mhtml_uri",
    "Mail::SpamAssassin::Plugin::OLEVBMacro::has_olemacro_redirect_uri",
    "Mail::SpamAssassin::Plugin::OLEVBMacro::has_olertfobject",
    "Mail::SpamAssassin::Plugin::Pyzor::has_fork",
    "Mail::SpamAssassin::Plugin::Pyzor::has_perl",
    "Mail::SpamAssassin::Plugin::Razor2::has_fork",
    "Mail::SpamAssassin::Plugin::SPF::has_check_for_spf_errors",
    "Mail::SpamAssassin::Plugin::SPF::has_check_spf_skipped_noenvfrom",
    "Mail::SpamAssassin::Plugin::URIDNSBL::has_subtest_for_ranges",
    "Mail::SpamAssassin::Plugin::URIDNSBL::has_tflags_domains_only",
    "Mail::SpamAssassin::Plugin::URIDNSBL::has_tflags_notrim",
    "Mail::SpamAssassin::Plugin::URIDNSBL::has_uridnsbl_a_ns",
    "Mail::SpamAssassin::Plugin::URIDNSBL::has_uridnsbl_for_a",
    "Mail::SpamAssassin::Plugin::URIDNSBL::has_uridnsbl_skip_mailto",
    "Mail::SpamAssassin::Plugin::URIDetail::has_host_key",
];

/// How to read the files.
#[derive(Debug, Clone)]
pub struct Options {
    /// Plugins considered loaded (`ifplugin X`, `plugin(X)`), full Perl names.
    pub plugins: Vec<String>,
    /// Features answered true by `can(X)` / `has(X)`; unknown ones are false.
    pub features: Vec<String>,
    /// The SpamAssassin version we stand in for (`version`, `require_version`).
    pub version: (u32, u32, u32),
    /// The `lang xx` lines to apply (prefix match, as SpamAssassin does);
    /// `None` skips every `lang` line.
    pub lang: Option<String>,
    /// Eval functions implemented by the caller; rules using any other local
    /// eval are skipped as "eval not implemented".
    pub evals: Vec<String>,
    /// Compile each translated pattern with `regex::bytes` to confirm it is
    /// accepted (a failure makes the rule unsupported, with the error).
    pub validate: bool,
    /// Skip `__` sub-rules that no scored rule depends on
    /// ([`SkipReason::Unused`]). Off only to look at every sub-rule's hits.
    pub prune: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            plugins: DEFAULT_PLUGINS.iter().map(|s| (*s).to_owned()).collect(),
            features: DEFAULT_FEATURES.iter().map(|s| (*s).to_owned()).collect(),
            version: (4, 0, 1),
            lang: None,
            evals: crate::filter::scan::IMPLEMENTED_EVALS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            validate: true,
            prune: true,
        }
    }
}

impl Options {
    fn version_number(&self) -> f64 {
        let (a, b, c) = self.version;
        f64::from(a) + f64::from(b) / 1000.0 + f64::from(c) / 1_000_000.0
    }

    fn version_string(&self) -> String {
        let (a, b, c) = self.version;
        format!("{a}.{b:03}{c:03}")
    }
}

/// Where something came from: file, 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    /// The file name as given in [`Source::file`].
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A malformed or suspicious line, reported and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where.
    pub origin: Origin,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

/// Which form of a header a rule looks at (`Header:raw`, `:addr`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderForm {
    /// Decoded (RFC 2047), unfolded: the default.
    Decoded,
    /// `:raw`: undecoded, as in the message.
    Raw,
    /// `:addr`: the first address.
    Addr,
    /// `:name`: the first display name.
    Name,
    /// `:host`: the host part of the first address.
    Host,
    /// `:domain`: the registrable domain of the first address.
    Domain,
    /// `:ip`: the first IP address in the value.
    Ip,
    /// `:revip`: that IP address reversed.
    Revip,
}

/// What an eval rule is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvalTarget {
    /// `header NAME eval:...`.
    Header,
    /// `body NAME eval:...`.
    Body,
    /// `rawbody NAME eval:...`.
    Rawbody,
    /// `full NAME eval:...`.
    Full,
    /// `uri NAME eval:...`.
    Uri,
    /// `mimeheader NAME eval:...`.
    Mimeheader,
}

/// The kind of a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `header NAME Header =~ /re/`, `exists:Header`.
    Header {
        /// The header name, or `ALL`, `ToCc`, `EnvelopeFrom`, `MESSAGEID`...
        header: String,
        /// Which form of the header.
        form: HeaderForm,
        /// Other modifiers verbatim (`first`, `last`).
        modifiers: Vec<String>,
        /// `!~`: the rule hits when the pattern does not match.
        negate: bool,
        /// `[if-unset: X]`: the value used when the header is absent.
        if_unset: Option<String>,
        /// `exists:Header`: hits when the header is present (no pattern).
        exists: bool,
    },
    /// `body NAME /re/`: decoded, rendered text parts, one paragraph at a time.
    Body,
    /// `rawbody NAME /re/`: decoded parts, not rendered, line by line.
    Rawbody,
    /// `full NAME /re/`: the whole raw message.
    Full,
    /// `uri NAME /re/`: each URI found in the message.
    Uri,
    /// `mimeheader NAME Header =~ /re/`: headers of MIME parts.
    Mimeheader {
        /// The header name.
        header: String,
        /// Which form (`:raw` or decoded).
        form: HeaderForm,
        /// `!~`.
        negate: bool,
    },
    /// `meta NAME expr`.
    Meta {
        /// The expression.
        expr: MetaExpr,
    },
    /// `<type> NAME eval:function(args)`.
    Eval {
        /// The function name.
        function: String,
        /// The arguments, unquoted.
        args: Vec<String>,
        /// Which directive declared it.
        target: EvalTarget,
    },
    /// A rule type defined by a network plugin: `askdns`, `urirhssub`,
    /// `uridnssub`, `urirhsbl`, `uridnsbl`.
    Net {
        /// The directive.
        directive: String,
        /// The rest of the line after the name.
        args: String,
    },
}

impl Kind {
    /// A short label: `header`, `body`, `rawbody`, `full`, `uri`,
    /// `mimeheader`, `meta`, `eval:header`, ..., `net`.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::Header { .. } => "header",
            Self::Body => "body",
            Self::Rawbody => "rawbody",
            Self::Full => "full",
            Self::Uri => "uri",
            Self::Mimeheader { .. } => "mimeheader",
            Self::Meta { .. } => "meta",
            Self::Eval { target, .. } => match target {
                EvalTarget::Header => "eval:header",
                EvalTarget::Body => "eval:body",
                EvalTarget::Rawbody => "eval:rawbody",
                EvalTarget::Full => "eval:full",
                EvalTarget::Uri => "eval:uri",
                EvalTarget::Mimeheader => "eval:mimeheader",
            },
            Self::Net { .. } => "net",
        }
    }
}

/// Why a rule is not active.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// Needs the network (tflags `net`, a network eval or a DNS rule type).
    Net,
    /// Needs Bayes.
    Bayes,
    /// Needs a persistent database (AWL, TxRep, access db).
    Database,
    /// A local eval function not implemented (yet); the function name.
    EvalNotImplemented(String),
    /// The regex cannot be translated; the reason.
    UnsupportedRegex(String),
    /// Score 0 in score set 0: disabled, as in SpamAssassin.
    ScoreZero,
    /// A `__` sub-rule no scored rule depends on (through any chain of
    /// metas): whether it hits cannot change a score, a symbol or a verdict,
    /// so it is not run (SpamAssassin runs it and ignores the result).
    Unused,
    /// Defined only under a condition that is false; the condition.
    Conditional(String),
    /// Defined only on `lang xx` lines for another language.
    Lang,
}

impl SkipReason {
    /// A short label for counting.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::Net => "net",
            Self::Bayes => "bayes",
            Self::Database => "database",
            Self::EvalNotImplemented(_) => "eval not implemented",
            Self::UnsupportedRegex(_) => "unsupported regex",
            Self::ScoreZero => "score 0 (disabled)",
            Self::Unused => "sub-rule no scored rule uses",
            Self::Conditional(_) => "conditional false",
            Self::Lang => "lang",
        }
    }
}

/// Whether a rule runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// It runs (a `__` sub-rule runs for the metas that use it).
    Active,
    /// It does not, and why.
    Skipped(SkipReason),
}

/// A rule definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The rule name.
    pub name: String,
    /// What it matches.
    pub kind: Kind,
    /// Its regex, for regex rules.
    pub pattern: Option<PerlRegex>,
    /// Score in set 0: the `score` line's first value (or the only one);
    /// without a `score` line 1.0 (0.01 for `T_` rules, negated for `nice`);
    /// 0 for `__` sub-rules, which never score.
    pub score: f32,
    /// The four score sets when a `score` line gave them.
    pub scores: Option<[f32; 4]>,
    /// `describe`.
    pub describe: Option<String>,
    /// `tflags`, split on whitespace (`net`, `nice`, `maxhits=N`, ...).
    pub tflags: Vec<String>,
    /// `priority` (default 0).
    pub priority: i32,
    /// Where the (last) definition is.
    pub origin: Origin,
    /// Active or skipped.
    pub status: Status,
}

impl Rule {
    /// `__` sub-rules never add to the score; metas use them.
    #[must_use]
    pub fn is_subrule(&self) -> bool {
        self.name.starts_with("__")
    }

    /// Whether the rule runs.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.status == Status::Active
    }

    /// Whether `flag` is among the tflags.
    #[must_use]
    pub fn has_tflag(&self, flag: &str) -> bool {
        self.tflags.iter().any(|t| t == flag)
    }
}

/// A setting that is not a rule, verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The directive, lower-case.
    pub name: String,
    /// The rest of the line.
    pub value: String,
    /// Where.
    pub origin: Origin,
}

/// One eval function and the rules using it.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalUse {
    /// The function name.
    pub name: String,
    /// What it needs.
    pub class: EvalClass,
    /// Whether the caller implements it ([`Options::evals`]).
    pub implemented: bool,
    /// The rules using it (definitions in effect, active or not).
    pub rules: Vec<String>,
    /// Rules using it defined only under a false condition or for another
    /// language (not in effect).
    pub inactive_rules: Vec<String>,
    /// The arguments of each use, in the order of `rules`.
    pub args: Vec<Vec<String>>,
}

pub use report::Report;

/// The rules and settings read from a set of `.cf` files.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// Every rule definition in effect, active or skipped, in definition order.
    pub rules: Vec<Rule>,
    /// `required_score` (SpamAssassin's default 5.0 when not set).
    pub required_score: f32,
    /// Settings that are not rules, in order.
    pub settings: Vec<Setting>,
    /// `util_rb_tld` entries (top-level domains), lower-case.
    pub util_rb_tld: Vec<String>,
    /// `util_rb_2tld` entries (registrar second-level domains).
    pub util_rb_2tld: Vec<String>,
    /// `util_rb_3tld` entries.
    pub util_rb_3tld: Vec<String>,
    /// `include` paths, for the caller to read and load.
    pub includes: Vec<(Origin, String)>,
    /// Counts and diagnostics.
    pub report: Report,
}

impl RuleSet {
    /// The rule named `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// The active rules.
    pub fn active(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.is_active())
    }
}

/// Rule-defining directives (plus plugin rule types).
const RULE_DIRECTIVES: &[&str] = &[
    "header",
    "body",
    "rawbody",
    "full",
    "uri",
    "mimeheader",
    "meta",
    "askdns",
    "urirhssub",
    "uridnssub",
    "urirhsbl",
    "uridnsbl",
];

/// Settings recognised (exact names).
const SETTINGS: &[&str] = &[
    "required_score",
    "required_hits",
    "add_header",
    "remove_header",
    "rewrite_header",
    "report",
    "unsafe_report",
    "report_safe",
    "report_contact",
    "report_charset",
    "report_safe_copy_headers",
    "util_rb_tld",
    "util_rb_2tld",
    "util_rb_3tld",
    "redirector_pattern",
    "include",
    "reuse",
    "test",
    "freemail_domains",
    "freemail_whitelist",
    "freemail_welcomelist",
    "freemail_import_whitelist_auth",
    "freemail_import_welcomelist_auth",
    "freemail_import_def_whitelist_auth",
    "freemail_import_def_welcomelist_auth",
    "url_shortener",
    "url_shortener_get",
    "enlist_uri_host",
    "delist_uri_host",
    "enlist_addrlist",
    "adsp_override",
    "originating_ip_headers",
    "ok_locales",
    "ok_languages",
    "trusted_networks",
    "internal_networks",
    "msa_networks",
    "use_bayes",
    "use_bayes_rules",
    "use_auto_whitelist",
    "use_txrep",
    "use_razor2",
    "use_pyzor",
    "use_dcc",
    "skip_rbl_checks",
    "skip_uribl_checks",
    "lock_method",
    "normalize_charset",
    "body_part_scan_size",
    "rawbody_part_scan_size",
    "envelope_sender_header",
    "dns_available",
    "dns_server",
    "dns_query_restriction",
    "shortcircuit",
    "loadplugin",
    "tryplugin",
    "header_end",
    "mimeheader_end",
    "hashbl_acl_freemail",
    "hashbl_ignore",
    "uri_block_cc",
    "uri_block_cidr",
    "uri_block_cont",
];

/// Setting name prefixes recognised (families of SpamAssassin settings).
const SETTING_PREFIXES: &[&str] = &[
    "def_",
    "bayes_",
    "clear_",
    "fns_",
    "txrep_",
    "auto_whitelist_",
    "auto_welcomelist_",
    "dns_",
    "uridnsbl_",
    "replace_",
    "report_",
    "whitelist_",
    "welcomelist_",
    "blacklist_",
    "blocklist_",
    "unwhitelist_",
    "unwelcomelist_",
    "unblacklist_",
    "unblocklist_",
    "pyzor_",
    "razor_",
    "dcc_",
    "spamcop_",
    "textcat_",
    "hashbl_",
    "askdns_",
    "uribl_",
    "dkim_",
    "spf_",
    "dmarc_",
    "asn_",
    "geodb_",
    "url_shortener_",
    "all_spam_to",
    "more_spam_to",
    "unwhitelist",
];

/// A rule definition seen while reading, before scores are attached.
struct Def {
    kind: Kind,
    pattern: Option<PerlRegex>,
    origin: Origin,
    /// `None` when defined in effect; else why not (condition false, lang).
    inactive: Option<SkipReason>,
}

#[derive(Default)]
struct Loader {
    defs: Vec<(String, Def)>,
    index: HashMap<String, usize>,
    /// Definitions under false conditions / other languages, by name.
    shadow: HashMap<String, Def>,
    scores: HashMap<String, ([f32; 4], bool)>,
    describe: HashMap<String, String>,
    tflags: HashMap<String, Vec<String>>,
    priority: HashMap<String, i32>,
    replace_rules: Vec<String>,
    replace_tag: HashMap<String, String>,
    replace_pre: HashMap<String, String>,
    replace_inter: HashMap<String, String>,
    replace_post: HashMap<String, String>,
    replace_start: Option<String>,
    replace_end: Option<String>,
    set: RuleSet,
}

struct Frame {
    value: bool,
    text: String,
    origin: Origin,
}

/// Reads `.cf` sources in order into a [`RuleSet`].
#[must_use]
pub fn load(sources: &[Source<'_>], options: &Options) -> RuleSet {
    let mut l = Loader::default();
    l.set.required_score = 5.0;
    for src in sources {
        l.file(src, options);
    }
    l.finish(options)
}

fn col(line: &str, byte: usize) -> u32 {
    let byte = byte.min(line.len());
    let n = line.char_indices().take_while(|(i, _)| *i < byte).count();
    u32::try_from(n + 1).unwrap_or(u32::MAX)
}

/// Strips a comment the way SpamAssassin does: `#` not after a backslash.
fn strip_comment(line: &str) -> &str {
    let b = line.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'#' && (i == 0 || b[i - 1] != b'\\') {
            return &line[..i];
        }
    }
    line
}

fn is_rule_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits off the first whitespace-separated word; returns it, the rest
/// (trimmed) and the byte offset of the rest within `s`.
fn word(s: &str) -> (&str, &str, usize) {
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    let rest = &s[end..];
    let trimmed = rest.trim_start();
    (&s[..end], trimmed, end + (rest.len() - trimmed.len()))
}

impl Loader {
    fn diag(&mut self, origin: Origin, message: impl Into<String>) {
        self.set.report.diagnostics.push(Diagnostic {
            origin,
            message: message.into(),
        });
    }

    fn file(&mut self, src: &Source<'_>, options: &Options) {
        self.set.report.files += 1;
        let mut stack: Vec<Frame> = Vec::new();
        let env = cond::Env {
            plugins: &options.plugins,
            features: &options.features,
            version: options.version_number(),
        };
        for (n, raw) in src.text.lines().enumerate() {
            self.set.report.lines += 1;
            let line_no = u32::try_from(n + 1).unwrap_or(u32::MAX);
            let at = |byte: usize| Origin {
                file: src.file.to_owned(),
                line: line_no,
                column: col(raw, byte),
            };
            let code = strip_comment(raw);
            let start = code.len() - code.trim_start().len();
            let owned;
            let mut text = code.trim();
            if text.is_empty() {
                continue;
            }
            if text.contains("\\#") {
                owned = text.replace("\\#", "#");
                text = owned.as_str();
            }
            // Offsets below are within `text`; map back approximately by the
            // leading indentation (exact unless `\#` preceded the column).
            let base = start;
            let (key, mut value, mut voff) = word(text);
            let mut key = key.to_ascii_lowercase().replace('-', "_");
            let mut other_lang = false;
            if key == "lang" {
                let (lang, rest, off) = word(value);
                let applies = match &options.lang {
                    Some(l) => {
                        !lang.is_empty()
                            && l.to_ascii_lowercase()
                                .starts_with(&lang.to_ascii_lowercase())
                    }
                    None => false,
                };
                if lang.is_empty() || rest.is_empty() {
                    self.diag(at(base + voff), "`lang` needs a language and a directive");
                    continue;
                }
                if !applies {
                    self.set.report.lang_lines_skipped += 1;
                    other_lang = true;
                }
                let (k, v, o) = word(rest);
                key = k.to_ascii_lowercase().replace('-', "_");
                value = v;
                voff = voff + off + o;
            }
            // Conditionals are evaluated even inside false blocks, to nest.
            match key.as_str() {
                "ifplugin" => {
                    let v = options.plugins.iter().any(|p| p == value);
                    stack.push(Frame {
                        value: v,
                        text: format!("ifplugin {value}"),
                        origin: at(base),
                    });
                    continue;
                }
                "if" => {
                    let v = match cond::eval(value, &env) {
                        Ok(v) => v,
                        Err(e) => {
                            self.diag(
                                at(base + voff),
                                format!("condition not understood ({e}); taken as false"),
                            );
                            false
                        }
                    };
                    stack.push(Frame {
                        value: v,
                        text: format!("if {value}"),
                        origin: at(base),
                    });
                    continue;
                }
                "else" => {
                    match stack.last_mut() {
                        Some(f) => {
                            f.value = !f.value;
                            f.text = format!("else of {}", f.text);
                        }
                        None => self.diag(at(base), "`else` without `if`"),
                    }
                    continue;
                }
                "endif" => {
                    if stack.pop().is_none() {
                        self.diag(at(base), "`endif` without `if`");
                    }
                    continue;
                }
                _ => {}
            }
            let false_frame = stack.iter().find(|f| !f.value).map(|f| f.text.clone());
            let inactive = match (&false_frame, other_lang) {
                (Some(c), _) => Some(SkipReason::Conditional(c.clone())),
                (None, true) => Some(SkipReason::Lang),
                (None, false) => None,
            };
            if RULE_DIRECTIVES.contains(&key.as_str()) {
                self.rule(&key, value, base + voff, &at, inactive);
                continue;
            }
            if inactive.is_some() {
                if false_frame.is_some() {
                    self.set.report.false_block_lines += 1;
                }
                continue;
            }
            if key == "require_version" {
                if value != "@@VERSION@@" && value != options.version_string() {
                    self.diag(
                        at(base + voff),
                        format!("file requires version {value}; skipping the rest of the file"),
                    );
                    break;
                }
                continue;
            }
            self.other(&key, value, base + voff, &at);
        }
        for f in stack {
            self.diag(
                f.origin,
                format!("`{}` not closed by `endif` at end of file", f.text),
            );
        }
    }

    fn rule(
        &mut self,
        key: &str,
        value: &str,
        voff: usize,
        at: &dyn Fn(usize) -> Origin,
        inactive: Option<SkipReason>,
    ) {
        let (name, rest, roff) = word(value);
        if name.is_empty() {
            self.diag(at(voff), format!("`{key}` needs a rule name"));
            return;
        }
        if !is_rule_name(name) {
            self.diag(at(voff), format!("bad rule name `{name}`"));
            return;
        }
        let rest_at = voff + roff;
        if rest.is_empty() {
            self.diag(at(rest_at), format!("`{key} {name}` has no definition"));
            return;
        }
        let parsed = match key {
            "meta" => MetaExpr::parse(rest)
                .map(|expr| (Kind::Meta { expr }, None))
                .map_err(|(o, m)| (rest_at + o, m)),
            "askdns" | "urirhssub" | "uridnssub" | "urirhsbl" | "uridnsbl" => Ok((
                Kind::Net {
                    directive: key.to_owned(),
                    args: rest.to_owned(),
                },
                None,
            )),
            _ => parse_match(key, rest).map_err(|(o, m)| (rest_at + o, m)),
        };
        let (kind, pattern) = match parsed {
            Ok(p) => p,
            Err((o, m)) => {
                self.set.report.malformed += 1;
                self.diag(at(o), m);
                return;
            }
        };
        let def = Def {
            kind,
            pattern,
            origin: at(0),
            inactive,
        };
        if def.inactive.is_some() {
            self.shadow.insert(name.to_owned(), def);
            return;
        }
        if let Some(&i) = self.index.get(name) {
            self.set.report.redefinitions += 1;
            self.defs[i].1 = def;
        } else {
            self.index.insert(name.to_owned(), self.defs.len());
            self.defs.push((name.to_owned(), def));
        }
    }

    fn other(&mut self, key: &str, value: &str, voff: usize, at: &dyn Fn(usize) -> Origin) {
        let (name, rest, roff) = word(value);
        match key {
            "score" => {
                if !is_rule_name(name) {
                    self.diag(at(voff), format!("bad rule name `{name}` in score"));
                    return;
                }
                let mut vals = Vec::new();
                let mut immutable = false;
                let mut off = voff + roff;
                let mut rest = rest;
                while !rest.is_empty() {
                    let (w, r, o) = word(rest);
                    let t = w.trim_start_matches('(').trim_end_matches(')');
                    immutable |= w.starts_with('(');
                    match t.parse::<f32>() {
                        Ok(v) if v.is_finite() => vals.push(v),
                        _ => {
                            self.diag(at(off), format!("bad score `{w}`"));
                            return;
                        }
                    }
                    off += o;
                    rest = r;
                }
                let s = match vals.as_slice() {
                    [a] => [*a; 4],
                    [a, b, c, d] => [*a, *b, *c, *d],
                    _ => {
                        self.diag(at(voff + roff), "score needs one or four values");
                        return;
                    }
                };
                self.scores
                    .insert(name.to_owned(), (s, immutable || vals.len() == 4));
            }
            "describe" => {
                if is_rule_name(name) {
                    self.describe.insert(name.to_owned(), rest.to_owned());
                } else {
                    self.diag(at(voff), format!("bad rule name `{name}` in describe"));
                }
            }
            "tflags" => {
                if is_rule_name(name) {
                    self.tflags.insert(
                        name.to_owned(),
                        rest.split_whitespace().map(str::to_owned).collect(),
                    );
                } else {
                    self.diag(at(voff), format!("bad rule name `{name}` in tflags"));
                }
            }
            "priority" => match rest.parse::<i32>() {
                Ok(p) if is_rule_name(name) => {
                    self.priority.insert(name.to_owned(), p);
                }
                _ => self.diag(at(voff), format!("bad priority line `{value}`")),
            },
            _ => self.setting(key, value, voff, at),
        }
    }

    fn setting(&mut self, key: &str, value: &str, voff: usize, at: &dyn Fn(usize) -> Origin) {
        let known = SETTINGS.contains(&key) || SETTING_PREFIXES.iter().any(|p| key.starts_with(p));
        if !known {
            *self
                .set
                .report
                .unknown_directives
                .entry(key.to_owned())
                .or_default() += 1;
            return;
        }
        *self.set.report.settings.entry(key.to_owned()).or_default() += 1;
        let words = || value.split_whitespace().map(str::to_ascii_lowercase);
        match key {
            "required_score" | "required_hits" => match value.parse::<f32>() {
                Ok(v) if v.is_finite() => self.set.required_score = v,
                _ => self.diag(at(voff), format!("bad {key} `{value}`")),
            },
            "util_rb_tld" => self.set.util_rb_tld.extend(words()),
            "util_rb_2tld" => self.set.util_rb_2tld.extend(words()),
            "util_rb_3tld" => self.set.util_rb_3tld.extend(words()),
            "clear_util_rb" => {
                self.set.util_rb_tld.clear();
                self.set.util_rb_2tld.clear();
                self.set.util_rb_3tld.clear();
            }
            "include" => self.set.includes.push((at(voff), value.to_owned())),
            "replace_rules" => self
                .replace_rules
                .extend(value.split_whitespace().map(str::to_owned)),
            "replace_start" => self.replace_start = Some(value.to_owned()),
            "replace_end" => self.replace_end = Some(value.to_owned()),
            "replace_tag" | "replace_pre" | "replace_inter" | "replace_post" => {
                let (name, rest, _) = word(value);
                if name.is_empty() || rest.is_empty() {
                    self.diag(at(voff), format!("`{key}` needs a name and a value"));
                } else {
                    let map = match key {
                        "replace_tag" => &mut self.replace_tag,
                        "replace_pre" => &mut self.replace_pre,
                        "replace_inter" => &mut self.replace_inter,
                        _ => &mut self.replace_post,
                    };
                    map.insert(name.to_owned(), rest.to_owned());
                }
            }
            _ => {}
        }
        self.set.settings.push(Setting {
            name: key.to_owned(),
            value: value.to_owned(),
            origin: at(0),
        });
    }

    /// ReplaceTags, as `Mail::SpamAssassin::Plugin::ReplaceTags` does it.
    fn replace_tags(&self, re: &str) -> String {
        let start = self.replace_start.as_deref().unwrap_or("<");
        let end = self.replace_end.as_deref().unwrap_or(">");
        let mut re = re.to_owned();
        let take = |re: &mut String, what: &str| -> Option<String> {
            let open = format!("{start}{what} ");
            let i = re.find(&open)?;
            let j = re[i + open.len()..].find(end)? + i + open.len();
            let name = re[i + open.len()..j].to_owned();
            re.replace_range(i..j + end.len(), "");
            Some(name)
        };
        for _pass in 0..6 {
            let pre = take(&mut re, "pre").and_then(|n| self.replace_pre.get(&n).cloned());
            let post = take(&mut re, "post").and_then(|n| self.replace_post.get(&n).cloned());
            let inter = take(&mut re, "inter").and_then(|n| self.replace_inter.get(&n).cloned());
            // split(/(<[^<>]+>)/): text and tags alternate; Perl drops
            // trailing empty fields.
            let mut parts: Vec<(String, bool)> = Vec::new();
            let mut cur = String::new();
            let mut rest = re.as_str();
            while let Some(i) = rest.find('<') {
                match rest[i + 1..].find(['<', '>']) {
                    Some(j) if rest.as_bytes()[i + 1 + j] == b'>' && j > 0 => {
                        cur.push_str(&rest[..i]);
                        parts.push((std::mem::take(&mut cur), false));
                        parts.push((rest[i..i + 2 + j].to_owned(), true));
                        rest = &rest[i + 2 + j..];
                    }
                    _ => {
                        cur.push_str(&rest[..=i]);
                        rest = &rest[i + 1..];
                    }
                }
            }
            cur.push_str(rest);
            parts.push((cur, false));
            while parts.last().is_some_and(|p| p.0.is_empty()) {
                parts.pop();
            }
            let mut again = false;
            let mut out = String::new();
            for (text, tag) in parts {
                if !tag {
                    if text.is_empty() {
                        out.push_str(inter.as_deref().unwrap_or(""));
                    } else {
                        out.push_str(&text);
                    }
                    continue;
                }
                let name = &text[start.len()..text.len() - end.len()];
                match self.replace_tag.get(name) {
                    Some(rep) => {
                        again |= rep.contains('<') && rep.contains('>');
                        out.push_str(pre.as_deref().unwrap_or(""));
                        out.push_str(rep);
                        out.push_str(post.as_deref().unwrap_or(""));
                    }
                    None => {
                        out.push_str(pre.as_deref().unwrap_or(""));
                        out.push_str(&text);
                        out.push_str(post.as_deref().unwrap_or(""));
                    }
                }
            }
            re = out;
            if !again {
                break;
            }
        }
        re
    }

    fn finish(mut self, options: &Options) -> RuleSet {
        // ReplaceTags.
        let replace: Vec<String> = std::mem::take(&mut self.replace_rules);
        for name in &replace {
            let Some(&i) = self.index.get(name) else {
                continue;
            };
            let Some(p) = &self.defs[i].1.pattern else {
                continue;
            };
            let expanded = self.replace_tags(&p.source);
            if expanded != p.source {
                let mut np = PerlRegex::new(&expanded, &p.flags);
                np.source.clone_from(&p.source);
                np.expanded = Some(expanded);
                self.defs[i].1.pattern = Some(np);
            }
        }
        // Shadowed definitions never defined in effect.
        let mut shadow: Vec<(String, Def)> = std::mem::take(&mut self.shadow)
            .into_iter()
            .filter(|(n, _)| !self.index.contains_key(n))
            .collect();
        shadow.sort_by(|a, b| a.1.origin.cmp(&b.1.origin));
        let defs = std::mem::take(&mut self.defs);
        let mut rules = Vec::with_capacity(defs.len() + shadow.len());
        for (name, def) in defs.into_iter().chain(shadow) {
            let tflags = self.tflags.get(&name).cloned().unwrap_or_default();
            let given = self.scores.get(&name).map(|s| s.0);
            let score = if name.starts_with("__") {
                0.0
            } else if let Some(s) = given {
                s[0]
            } else {
                let base = if name.starts_with("T_") { 0.01 } else { 1.0 };
                if tflags.iter().any(|t| t == "nice") {
                    -base
                } else {
                    base
                }
            };
            let mut pattern = def.pattern;
            if options.validate {
                if let Some(p) = &mut pattern {
                    validate(p);
                }
            }
            let status = match def.inactive {
                Some(r) => Status::Skipped(r),
                None => {
                    match skip_reason(&name, &def.kind, pattern.as_ref(), &tflags, score, options) {
                        Some(r) => Status::Skipped(r),
                        None => Status::Active,
                    }
                }
            };
            rules.push(Rule {
                describe: self.describe.get(&name).cloned(),
                priority: self.priority.get(&name).copied().unwrap_or(0),
                scores: given,
                name,
                kind: def.kind,
                pattern,
                score,
                tflags,
                origin: def.origin,
                status,
            });
        }
        let mut set = self.set;
        let names: HashMap<&str, ()> = rules.iter().map(|r| (r.name.as_str(), ())).collect();
        set.report.scores_without_rule = self
            .scores
            .keys()
            .filter(|k| !names.contains_key(k.as_str()))
            .count();
        set.report.describe_without_rule = self
            .describe
            .keys()
            .filter(|k| !names.contains_key(k.as_str()))
            .count();
        set.report.tflags_without_rule = self
            .tflags
            .keys()
            .filter(|k| !names.contains_key(k.as_str()))
            .count();
        if options.prune {
            prune_unused(&mut rules);
        }
        set.rules = rules;
        report::tally(&mut set, options);
        set
    }
}

/// Marks active `__` sub-rules that no active scored rule depends on,
/// directly or through metas, as [`SkipReason::Unused`].
fn prune_unused(rules: &mut [Rule]) {
    let index: HashMap<&str, usize> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.as_str(), i))
        .collect();
    let mut needed = vec![false; rules.len()];
    let mut stack: Vec<usize> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        if r.is_active() && !r.is_subrule() {
            needed[i] = true;
            stack.push(i);
        }
    }
    while let Some(i) = stack.pop() {
        let Kind::Meta { expr } = &rules[i].kind else {
            continue;
        };
        for name in expr.rules() {
            if let Some(&j) = index.get(name) {
                if !needed[j] {
                    needed[j] = true;
                    stack.push(j);
                }
            }
        }
    }
    for (r, needed) in rules.iter_mut().zip(needed) {
        if !needed && r.is_active() {
            r.status = Status::Skipped(SkipReason::Unused);
        }
    }
}

/// Why an in-effect definition is skipped; `None` when it is active.
fn skip_reason(
    name: &str,
    kind: &Kind,
    pattern: Option<&PerlRegex>,
    tflags: &[String],
    score: f32,
    options: &Options,
) -> Option<SkipReason> {
    if let Kind::Eval { function, .. } = kind {
        match evals::classify(function) {
            EvalClass::Network => return Some(SkipReason::Net),
            EvalClass::Bayes => return Some(SkipReason::Bayes),
            EvalClass::Stateful => return Some(SkipReason::Database),
            EvalClass::Local => {}
        }
    }
    // SpamAssassin skips `net` and `learn` rules without the network or
    // Bayes only among eval rules (Check.pm's run_eval_tests): a meta, or
    // a pattern rule, with those tflags still runs.
    let is_eval = matches!(kind, Kind::Eval { .. });
    if matches!(kind, Kind::Net { .. }) || is_eval && tflags.iter().any(|t| t == "net") {
        return Some(SkipReason::Net);
    }
    if is_eval && tflags.iter().any(|t| t == "learn") {
        return Some(SkipReason::Bayes);
    }
    if !name.starts_with("__") && score == 0.0 {
        return Some(SkipReason::ScoreZero);
    }
    if let Kind::Eval { function, .. } = kind {
        if !options.evals.iter().any(|e| e == function) {
            return Some(SkipReason::EvalNotImplemented(function.clone()));
        }
    }
    if let Some(Err(e)) = pattern.map(|p| &p.translated) {
        return Some(SkipReason::UnsupportedRegex(e.clone()));
    }
    None
}

fn validate(p: &mut PerlRegex) {
    if p.backtracking {
        return;
    }
    if let Ok(t) = &p.translated {
        if let Err(e) = regex::bytes::RegexBuilder::new(t)
            .size_limit(1 << 26)
            .build()
        {
            let msg = e.to_string();
            let last = msg
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            p.translated = Err(format!("rejected by the regex crate: {}", last.trim()));
        }
    }
}

/// Parses the definition of a header/body/rawbody/full/uri/mimeheader rule.
fn parse_match(key: &str, rest: &str) -> Result<(Kind, Option<PerlRegex>), (usize, String)> {
    let target = match key {
        "header" => EvalTarget::Header,
        "body" => EvalTarget::Body,
        "rawbody" => EvalTarget::Rawbody,
        "full" => EvalTarget::Full,
        "uri" => EvalTarget::Uri,
        _ => EvalTarget::Mimeheader,
    };
    let call = rest
        .strip_prefix("eval:")
        .or_else(|| rest.strip_prefix("rbleval:"));
    if let Some(call) = call {
        let off = rest.len() - call.len();
        let (function, args) = evals::parse_call(call).map_err(|(o, m)| (off + o, m))?;
        return Ok((
            Kind::Eval {
                function,
                args,
                target,
            },
            None,
        ));
    }
    match key {
        "header" | "mimeheader" => {
            if let Some(h) = rest.strip_prefix("exists:") {
                let h = h.trim();
                if key == "mimeheader" || h.is_empty() || h.contains(char::is_whitespace) {
                    return Err((0, format!("bad `exists:` test `{rest}`")));
                }
                let kind = Kind::Header {
                    header: h.to_owned(),
                    form: HeaderForm::Decoded,
                    modifiers: Vec::new(),
                    negate: false,
                    if_unset: None,
                    exists: true,
                };
                return Ok((kind, None));
            }
            let Some(op_at) = rest
                .find(['=', '!'])
                .filter(|&i| rest[i + 1..].starts_with('~'))
            else {
                return Err((0, "expected `Header =~ /regex/` or `eval:`".to_owned()));
            };
            let spec = rest[..op_at].trim();
            let negate = rest.as_bytes()[op_at] == b'!';
            if spec.is_empty() || spec.contains(char::is_whitespace) {
                return Err((0, format!("bad header name `{spec}`")));
            }
            let after = &rest[op_at + 2..];
            let re_at = op_at + 2 + (after.len() - after.trim_start().len());
            let (src, flags, used) =
                perl::split_delimited(&rest[re_at..]).map_err(|(o, m)| (re_at + o, m))?;
            let tail_at = re_at + used;
            let tail = rest[tail_at..].trim();
            let mut if_unset = None;
            if !tail.is_empty() {
                match tail
                    .strip_prefix("[if-unset:")
                    .and_then(|t| t.strip_suffix(']'))
                {
                    Some(v) => if_unset = Some(v.trim().to_owned()),
                    None => {
                        let off =
                            tail_at + (rest[tail_at..].len() - rest[tail_at..].trim_start().len());
                        return Err((off, format!("unexpected text after the regex: `{tail}`")));
                    }
                }
            }
            let mut parts = spec.split(':');
            let header = parts.next().unwrap_or_default().to_owned();
            let mut form = HeaderForm::Decoded;
            let mut modifiers = Vec::new();
            for m in parts {
                form = match m {
                    "raw" => HeaderForm::Raw,
                    "addr" => HeaderForm::Addr,
                    "name" => HeaderForm::Name,
                    "host" => HeaderForm::Host,
                    "domain" => HeaderForm::Domain,
                    "ip" => HeaderForm::Ip,
                    "revip" => HeaderForm::Revip,
                    "first" | "last" => {
                        modifiers.push(m.to_owned());
                        continue;
                    }
                    other => return Err((0, format!("unknown header modifier `:{other}`"))),
                };
            }
            if header.is_empty() {
                return Err((0, "empty header name".to_owned()));
            }
            let pattern = Some(PerlRegex::new(src, flags));
            let kind = if key == "header" {
                Kind::Header {
                    header,
                    form,
                    modifiers,
                    negate,
                    if_unset,
                    exists: false,
                }
            } else {
                Kind::Mimeheader {
                    header,
                    form,
                    negate,
                }
            };
            Ok((kind, pattern))
        }
        _ => {
            let (src, flags, used) = perl::split_delimited(rest)?;
            let tail = rest[used..].trim();
            if !tail.is_empty() {
                let off = used + (rest[used..].len() - rest[used..].trim_start().len());
                return Err((off, format!("unexpected text after the regex: `{tail}`")));
            }
            let kind = match key {
                "body" => Kind::Body,
                "rawbody" => Kind::Rawbody,
                "full" => Kind::Full,
                _ => Kind::Uri,
            };
            Ok((kind, Some(PerlRegex::new(src, flags))))
        }
    }
}
