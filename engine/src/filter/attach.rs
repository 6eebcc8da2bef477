//! Attachment and content policy: what files a message may carry.
//!
//! [`check`] looks at every [`Attachment`] of a parsed [`Message`] and returns
//! a [`Finding`] for each rule it breaks; an empty list means the attachments
//! are acceptable. The content filter ([`super::content`]) maps any finding
//! to the configured action (`[filter.attachments] action`, default reject)
//! with the finding's [`Rule::symbol`]; this module only states facts.
//!
//! What is checked, per attachment and per file inside ZIP archives:
//! - the file name: a blocked extension ([`Rule::BlockedExtension`]), a
//!   blocked extension behind a document-looking one, `invoice.pdf.exe`,
//!   also with spaces or trailing dots ([`Rule::DoubleExtension`]), Unicode
//!   direction controls that make a name read differently from what it is,
//!   `invoice\u{202e}fdp.exe` ([`Rule::DeceptiveName`]);
//! - the content: executable magic bytes whatever the name and declared type
//!   ([`Rule::ExecutableContent`]), a blocked declared type
//!   ([`Rule::BlockedType`]), a part over the size cap
//!   ([`Rule::OversizedPart`]);
//! - ZIP archives (also OOXML, ODF, JAR, which are ZIPs): every entry name and
//!   the magic bytes of every entry; nested archives are opened up to
//!   [`AttachPolicy::zip_depth_max`]. Bombs are refused from the declared
//!   sizes and ratios before anything is inflated, and overlapping entries
//!   (the non-recursive bomb) are refused outright.
//!
//! Hostile input: nothing here panics on any bytes. Work and memory are
//! bounded by the policy: at most [`AttachPolicy::zip_inflate_max`] bytes are
//! inflated per attachment (for nested archives; sniffing an entry inflates
//! only its first [`SNIFF_BYTES`]), at most [`AttachPolicy::zip_entries_max`]
//! entries are read per attachment, nesting is walked at most
//! [`ZIP_DEPTH_HARD_MAX`] deep, and at most [`FINDINGS_MAX`] findings are kept
//! per message.
//!
//! Only what the MIME parser reached is checked: parts past its limits are
//! [`Message::violations`] (`PartsExceeded`, `DepthExceeded`,
//! `DecodedTooLarge`), which the content filter judges on their own
//! (`[filter] on_limit`).
//!
//! Not done: RAR, 7-Zip, CAB, gzip/bzip2/xz and tar are not opened (see
//! [`AttachPolicy::block_unsupported_archives`]); ZIP entries compressed with
//! methods other than stored and deflate are not inspected; CRCs are not
//! verified; PDFs and Office macros are not analysed (that is ClamAV's job).

mod zip;

use super::mime::{sniff, Attachment, Message};

/// Most findings kept per message: enough to explain a verdict, bounded
/// whatever an archive holds.
pub const FINDINGS_MAX: usize = 64;

/// Bytes of a ZIP entry inflated to sniff its type.
pub const SNIFF_BYTES: usize = 1024;

/// Ceiling for [`AttachPolicy::zip_depth_max`]: the walk recurses once per
/// nested archive.
pub const ZIP_DEPTH_HARD_MAX: usize = 16;

/// Entries and archives whose declared uncompressed size is below this are
/// not held to [`AttachPolicy::zip_ratio_max`] (a small file of spaces
/// compresses 200:1 and harms nobody).
pub const RATIO_MIN_BYTES: u64 = 1024 * 1024;

/// Longest file name (in characters) kept in a finding's path and text.
pub const NAME_CHARS_MAX: usize = 128;

/// Longest [`Finding::text`], in characters: it must fit an SMTP reply line
/// with room for the code and the daemon's own words.
pub const TEXT_CHARS_MAX: usize = 200;

/// Default of [`AttachPolicy::max_part_bytes`]: 25 MiB, the attachment size
/// limit of the large free-mail providers; a larger file is not mail.
pub const PART_BYTES_MAX_DEFAULT: usize = 25 * 1024 * 1024;

/// Default of [`AttachPolicy::zip_depth_max`]: an archive in an archive in an
/// archive in an archive. Real mail rarely nests twice.
pub const ZIP_DEPTH_MAX_DEFAULT: usize = 4;

/// Default of [`AttachPolicy::zip_entries_max`]: a large source tree fits;
/// reading 5000 central entries costs well under a millisecond.
pub const ZIP_ENTRIES_MAX_DEFAULT: usize = 5000;

/// Default of [`AttachPolicy::zip_uncompressed_max`]: 1 GiB declared. Nothing
/// is inflated to check it, so the cost is nil; larger is a bomb.
pub const ZIP_UNCOMPRESSED_BYTES_MAX_DEFAULT: u64 = 1024 * 1024 * 1024;

/// Default of [`AttachPolicy::zip_ratio_max`]: ordinary files compress 2:1 to
/// 20:1, deflate tops out near 1032:1.
pub const ZIP_RATIO_MAX_DEFAULT: u64 = 100;

/// Default of [`AttachPolicy::zip_inflate_max`]: 16 MiB of memory per
/// attachment for nested archives (per shard, one message at a time).
pub const ZIP_INFLATE_BYTES_MAX_DEFAULT: usize = 16 * 1024 * 1024;

/// The attachment policy. Every field is plain data so the daemon can fill
/// it from its config file; lists are compared ASCII-case-insensitively, and
/// extensions may be written with or without the leading dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachPolicy {
    /// File extensions refused, at the top level and inside archives.
    /// Default: executables, scripts, installers, shortcuts and disk images
    /// that Windows opens on a double click (see [`DEFAULT_BLOCKED_EXTENSIONS`]).
    pub blocked_extensions: Vec<String>,
    /// Extensions that make a name look like a document; one of these before
    /// a blocked extension (`invoice.pdf.exe`) is [`Rule::DoubleExtension`]
    /// rather than [`Rule::BlockedExtension`]. Default
    /// [`DEFAULT_DECOY_EXTENSIONS`].
    pub decoy_extensions: Vec<String>,
    /// Declared `type/subtype`s refused ([`Rule::BlockedType`]). Default
    /// [`DEFAULT_BLOCKED_DECLARED_TYPES`] (the executable MIME types).
    pub blocked_declared_types: Vec<String>,
    /// Sniffed types ([`sniff`] constants) refused as
    /// [`Rule::ExecutableContent`], whatever the name says. Default
    /// [`DEFAULT_BLOCKED_SNIFFED_TYPES`]: Windows and DOS executables (`MZ`,
    /// PE, also DLLs), ELF, Mach-O.
    pub blocked_sniffed_types: Vec<String>,
    /// Refuse names with Unicode direction controls (U+202E and friends),
    /// which no legitimate sender needs. Default `true`.
    pub block_deceptive_names: bool,
    /// Largest decoded attachment, in bytes ([`Rule::OversizedPart`]).
    /// Default 25 MiB. The MIME parser cuts parts at its own
    /// `Limits::part_bytes_max` (default 50 MiB) and reports that as a
    /// violation of the message, so this only bites below that cap.
    pub max_part_bytes: usize,
    /// Look inside ZIP archives. Default `true`.
    pub inspect_zip: bool,
    /// Deepest archive nesting opened: an archive attached to the message is
    /// depth 1, a ZIP inside it depth 2. A ZIP found deeper is
    /// [`Rule::ArchiveTooDeep`]. Default 4; clamped to [`ZIP_DEPTH_HARD_MAX`].
    pub zip_depth_max: usize,
    /// Most entries read per attachment, over all its nested archives; more
    /// is [`Rule::ArchiveTooManyEntries`]. Default 5000.
    pub zip_entries_max: usize,
    /// Most uncompressed bytes an attachment's archives may declare, over all
    /// their entries and nested archives; more is [`Rule::ArchiveBomb`].
    /// Default 1 GiB. Nothing is inflated to check this.
    pub zip_uncompressed_max: u64,
    /// Highest compression ratio (uncompressed / compressed) of an entry, or
    /// of an archive as a whole, once it declares at least
    /// [`RATIO_MIN_BYTES`]; more is [`Rule::ArchiveBomb`]. Deflate tops out
    /// near 1032:1; ordinary files compress 2:1 to 20:1. Default 100.
    pub zip_ratio_max: u64,
    /// Most bytes inflated into memory per attachment to open nested
    /// archives (the memory cap of this module). A nested archive that does
    /// not fit what is left is [`Rule::ArchiveTooLarge`]. Default 16 MiB.
    pub zip_inflate_max: usize,
    /// Refuse encrypted ZIP entries, whose content cannot be inspected
    /// ([`Rule::ArchiveEncrypted`]; entry names are still checked, they are
    /// not encrypted). Default `true`: password-protected ZIPs with the
    /// password in the body are a common malware carrier.
    pub block_encrypted_archives: bool,
    /// Refuse what cannot be opened: RAR, 7-Zip, CAB, gzip, bzip2, xz
    /// attachments or entries, and ZIP entries compressed with a method other
    /// than stored or deflate ([`Rule::ArchiveUnsupported`]). Default
    /// `false`: those pass with only their names and magic bytes checked.
    pub block_unsupported_archives: bool,
}

/// Default of [`AttachPolicy::blocked_extensions`]. Disk images (`iso`,
/// `img`, `vhd`, `vhdx`) are in: they are not opened here and are the usual
/// way around Windows' mark-of-the-web. Macro documents (`docm`, `xlsm`) and
/// `apk` are not: add them if your users never need them.
pub const DEFAULT_BLOCKED_EXTENSIONS: &[&str] = &[
    "ade",
    "adp",
    "app",
    "application",
    "appref-ms",
    "appx",
    "appxbundle",
    "bat",
    "chm",
    "cmd",
    "com",
    "cpl",
    "diagcab",
    "exe",
    "gadget",
    "hta",
    "img",
    "iso",
    "jar",
    "jnlp",
    "js",
    "jse",
    "library-ms",
    "lnk",
    "mde",
    "msc",
    "msh",
    "msi",
    "msix",
    "msixbundle",
    "msp",
    "mst",
    "pif",
    "ps1",
    "ps1xml",
    "ps2",
    "ps2xml",
    "psc1",
    "psc2",
    "reg",
    "scf",
    "scr",
    "sct",
    "settingcontent-ms",
    "shb",
    "shs",
    "vb",
    "vbe",
    "vbs",
    "vhd",
    "vhdx",
    "ws",
    "wsc",
    "wsf",
    "wsh",
    "xll",
];

/// Default of [`AttachPolicy::decoy_extensions`].
pub const DEFAULT_DECOY_EXTENSIONS: &[&str] = &[
    "avi", "bmp", "csv", "doc", "docx", "eml", "gif", "htm", "html", "jpeg", "jpg", "mov", "mp3",
    "mp4", "odp", "ods", "odt", "pdf", "png", "ppt", "pptx", "rar", "rtf", "tif", "tiff", "txt",
    "wav", "xls", "xlsx", "xml", "zip",
];

/// Default of [`AttachPolicy::blocked_declared_types`].
pub const DEFAULT_BLOCKED_DECLARED_TYPES: &[&str] = &[
    "application/hta",
    "application/vnd.microsoft.portable-executable",
    "application/x-dosexec",
    "application/x-executable",
    "application/x-mach-binary",
    "application/x-ms-dos-executable",
    "application/x-ms-installer",
    "application/x-ms-shortcut",
    "application/x-msdos-program",
    "application/x-msdownload",
    "application/x-msi",
];

/// Default of [`AttachPolicy::blocked_sniffed_types`].
pub const DEFAULT_BLOCKED_SNIFFED_TYPES: &[&str] = &[sniff::EXE, sniff::ELF, sniff::MACHO];

impl Default for AttachPolicy {
    fn default() -> Self {
        let owned = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
        AttachPolicy {
            blocked_extensions: owned(DEFAULT_BLOCKED_EXTENSIONS),
            decoy_extensions: owned(DEFAULT_DECOY_EXTENSIONS),
            blocked_declared_types: owned(DEFAULT_BLOCKED_DECLARED_TYPES),
            blocked_sniffed_types: owned(DEFAULT_BLOCKED_SNIFFED_TYPES),
            block_deceptive_names: true,
            max_part_bytes: PART_BYTES_MAX_DEFAULT,
            inspect_zip: true,
            zip_depth_max: ZIP_DEPTH_MAX_DEFAULT,
            zip_entries_max: ZIP_ENTRIES_MAX_DEFAULT,
            zip_uncompressed_max: ZIP_UNCOMPRESSED_BYTES_MAX_DEFAULT,
            zip_ratio_max: ZIP_RATIO_MAX_DEFAULT,
            zip_inflate_max: ZIP_INFLATE_BYTES_MAX_DEFAULT,
            block_encrypted_archives: true,
            block_unsupported_archives: false,
        }
    }
}

/// The rule a finding breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// The name ends in a blocked extension.
    BlockedExtension,
    /// A blocked extension behind a document-looking one (`a.pdf.exe`).
    DoubleExtension,
    /// The name holds Unicode direction controls.
    DeceptiveName,
    /// The content is an executable (by magic bytes).
    ExecutableContent,
    /// The declared type is blocked.
    BlockedType,
    /// The attachment is larger than the policy allows.
    OversizedPart,
    /// Archives nested deeper than the policy opens (reported once per
    /// attachment; the other entries are still inspected).
    ArchiveTooDeep,
    /// More archive entries than the policy reads.
    ArchiveTooManyEntries,
    /// Declared sizes, compression ratio or overlapping entries of a bomb.
    ArchiveBomb,
    /// A nested archive too large for the inflate budget: not inspected.
    ArchiveTooLarge,
    /// Encrypted entries: their content cannot be inspected.
    ArchiveEncrypted,
    /// A ZIP that cannot be read (truncated, bad offsets, lying sizes).
    ArchiveMalformed,
    /// An archive format or compression method that is not opened.
    ArchiveUnsupported,
}

impl Rule {
    /// A stable snake_case name for logs, symbols and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::BlockedExtension => "blocked_extension",
            Rule::DoubleExtension => "double_extension",
            Rule::DeceptiveName => "deceptive_name",
            Rule::ExecutableContent => "executable_content",
            Rule::BlockedType => "blocked_type",
            Rule::OversizedPart => "oversized_part",
            Rule::ArchiveTooDeep => "archive_too_deep",
            Rule::ArchiveTooManyEntries => "archive_too_many_entries",
            Rule::ArchiveBomb => "archive_bomb",
            Rule::ArchiveTooLarge => "archive_too_large",
            Rule::ArchiveEncrypted => "archive_encrypted",
            Rule::ArchiveMalformed => "archive_malformed",
            Rule::ArchiveUnsupported => "archive_unsupported",
        }
    }

    /// The symbol the content filter shows for this rule in its verdict and
    /// in `X-Spam-Status`, SpamAssassin style (`ATTACH_BLOCKED_EXT`).
    pub fn symbol(self) -> &'static str {
        match self {
            Rule::BlockedExtension => "ATTACH_BLOCKED_EXT",
            Rule::DoubleExtension => "ATTACH_DOUBLE_EXT",
            Rule::DeceptiveName => "ATTACH_DECEPTIVE_NAME",
            Rule::ExecutableContent => "ATTACH_EXECUTABLE",
            Rule::BlockedType => "ATTACH_BLOCKED_TYPE",
            Rule::OversizedPart => "ATTACH_OVERSIZED",
            Rule::ArchiveTooDeep => "ATTACH_ZIP_TOO_DEEP",
            Rule::ArchiveTooManyEntries => "ATTACH_ZIP_TOO_MANY_ENTRIES",
            Rule::ArchiveBomb => "ATTACH_ZIP_BOMB",
            Rule::ArchiveTooLarge => "ATTACH_ZIP_TOO_LARGE",
            Rule::ArchiveEncrypted => "ATTACH_ZIP_ENCRYPTED",
            Rule::ArchiveMalformed => "ATTACH_ZIP_MALFORMED",
            Rule::ArchiveUnsupported => "ATTACH_ARCHIVE_UNSUPPORTED",
        }
    }
}

/// One broken rule, for one attachment or one file inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The index of the attachment's part in [`Message::parts`].
    pub part: usize,
    /// The attachment's file name as the sender gave it, if any.
    pub filename: Option<String>,
    /// Where: the attachment's name (or `part N` when it has none), then the
    /// names of archives and entries inside it, `/`-separated:
    /// `a.zip/b.zip/x.exe`. Control and direction characters are shown as
    /// `\u{..}` escapes and each name is cut at [`NAME_CHARS_MAX`].
    pub path: String,
    /// The rule.
    pub rule: Rule,
    /// A short sentence for logs and SMTP replies: printable ASCII only, at
    /// most [`TEXT_CHARS_MAX`] characters.
    pub text: String,
}

impl Finding {
    /// What is wrong, without the path: [`Finding::text`] after its
    /// `path: ` prefix (`.exe file disguised as .pdf`), printable ASCII.
    pub fn detail(&self) -> &str {
        let path = ascii_text(&self.path);
        self.text
            .strip_prefix(path.as_str())
            .and_then(|rest| rest.strip_prefix(": "))
            .unwrap_or(&self.text)
    }

    /// [`Finding::path`] in printable ASCII (anything else is `?`), at
    /// most `chars_max` characters, for an SMTP reply.
    pub fn ascii_path(&self, chars_max: usize) -> String {
        let mut path = ascii_text(&self.path);
        if path.len() > chars_max {
            path.truncate(chars_max.saturating_sub(3));
            path.push_str("...");
        }
        path
    }
}

/// Checks every attachment of `message` against `policy`; the findings are
/// in attachment order, at most [`FINDINGS_MAX`].
pub fn check(policy: &AttachPolicy, message: &Message) -> Vec<Finding> {
    let mut out = Findings::default();
    for a in &message.attachments {
        if out.full() {
            break;
        }
        check_into(policy, a, &mut out);
    }
    out.list
}

/// Checks one attachment; see [`check`].
pub fn check_attachment(policy: &AttachPolicy, attachment: &Attachment) -> Vec<Finding> {
    let mut out = Findings::default();
    check_into(policy, attachment, &mut out);
    out.list
}

/// The findings of a message, capped.
#[derive(Default)]
struct Findings {
    list: Vec<Finding>,
}

impl Findings {
    fn full(&self) -> bool {
        self.list.len() >= FINDINGS_MAX
    }
}

/// Where a finding is: the attachment and the path inside it.
struct Place<'a> {
    attachment: &'a Attachment,
    path: String,
}

impl Place<'_> {
    fn push(&self, out: &mut Findings, rule: Rule, text: String) {
        if out.full() {
            return;
        }
        out.list.push(Finding {
            part: self.attachment.part,
            filename: self.attachment.filename.clone(),
            path: self.path.clone(),
            rule,
            text: ascii_text(&text),
        });
    }

    /// The place of an entry inside this one.
    fn child(&self, name: &str) -> Self {
        Place {
            attachment: self.attachment,
            path: format!("{}/{}", self.path, display_name(name)),
        }
    }
}

fn check_into(policy: &AttachPolicy, a: &Attachment, out: &mut Findings) {
    let place = Place {
        attachment: a,
        path: a
            .filename
            .as_deref()
            .map_or_else(|| format!("part {}", a.part), display_name),
    };
    if let Some(name) = a.filename.as_deref() {
        check_name(policy, name, &place, out);
    }
    if list_has(&policy.blocked_declared_types, &a.declared_type) {
        let text = format!(
            "{}: declared type {} is not accepted",
            place.path, a.declared_type
        );
        place.push(out, Rule::BlockedType, text);
    }
    check_content(policy, &a.data, a.sniffed_type, &place, out);
    if a.size > policy.max_part_bytes {
        let text = format!(
            "{}: {} bytes, over the {} byte limit",
            place.path, a.size, policy.max_part_bytes
        );
        place.push(out, Rule::OversizedPart, text);
    }
    if policy.inspect_zip {
        let sniffed = a.sniffed_type == Some(sniff::ZIP);
        let named = a.filename.as_deref().is_some_and(zip_named);
        let declared = matches!(
            a.declared_type.as_str(),
            "application/zip" | "application/x-zip-compressed" | "application/x-zip"
        );
        if sniffed || named || declared {
            zip::inspect(policy, &a.data, sniffed, &place, out);
        }
    }
}

/// The content rules shared by attachments and archive entries: executable
/// magic, and formats that are not opened.
fn check_content(
    policy: &AttachPolicy,
    head: &[u8],
    sniffed: Option<&'static str>,
    place: &Place<'_>,
    out: &mut Findings,
) {
    let Some(t) = sniffed else { return };
    if list_has(&policy.blocked_sniffed_types, t) && is_executable(head, t) {
        let text = format!("{}: executable content ({t})", place.path);
        place.push(out, Rule::ExecutableContent, text);
    }
    const UNOPENED: &[&str] = &[
        sniff::RAR,
        sniff::SEVEN_ZIP,
        sniff::CAB,
        sniff::GZIP,
        sniff::BZIP2,
        sniff::XZ,
    ];
    if policy.block_unsupported_archives && UNOPENED.contains(&t) {
        let text = format!("{}: {t} archives cannot be inspected", place.path);
        place.push(out, Rule::ArchiveUnsupported, text);
    }
}

/// Whether sniffed executable content really is one: `MZ` is only two
/// letters, so a text file starting with them (a CSV row `MZ,Mozambique`)
/// is not a DOS executable; a real one has a PE header or binary bytes in
/// its 64-byte DOS header.
fn is_executable(head: &[u8], sniffed: &str) -> bool {
    if sniffed != sniff::EXE {
        return true;
    }
    let dos = &head[..head.len().min(64)];
    let pe = head
        .get(0x3c..0x40)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
        .and_then(|at| usize::try_from(at).ok())
        .and_then(|at| head.get(at..at.checked_add(4)?))
        .is_some_and(|sig| sig == b"PE\0\0");
    pe || dos
        .iter()
        .any(|b| *b < 0x09 || (0x0e..0x20).contains(b) || *b == 0x7f)
}

/// The name rules: direction controls, blocked and double extensions.
fn check_name(policy: &AttachPolicy, name: &str, place: &Place<'_>, out: &mut Findings) {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    if policy.block_deceptive_names && base.chars().any(is_direction_control) {
        let text = format!(
            "{}: file name uses Unicode direction controls to hide its type",
            place.path
        );
        place.push(out, Rule::DeceptiveName, text);
    }
    // What Windows sees: invisible characters dropped, trailing dots and
    // spaces ignored.
    let visible: String = base
        .chars()
        .filter(|c| !is_direction_control(*c) && !is_invisible(*c))
        .collect();
    let visible = visible.trim_end_matches(['.', ' ']);
    let mut exts = visible.rsplit('.');
    let (Some(last), Some(_stem)) = (exts.next(), exts.clone().next()) else {
        return;
    };
    let last = last.trim();
    if !list_has(&policy.blocked_extensions, last) {
        return;
    }
    let decoy = exts
        .next()
        .map(str::trim)
        .filter(|d| exts.clone().next().is_some() && list_has(&policy.decoy_extensions, d));
    let last = last.to_ascii_lowercase();
    match decoy {
        Some(d) => {
            let text = format!(
                "{}: .{last} file disguised as .{}",
                place.path,
                d.to_ascii_lowercase()
            );
            place.push(out, Rule::DoubleExtension, text);
        }
        None => {
            let text = format!("{}: .{last} files are not accepted", place.path);
            place.push(out, Rule::BlockedExtension, text);
        }
    }
}

/// Characters that reorder how text is shown: bidi embeddings, overrides,
/// isolates and marks.
fn is_direction_control(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// Zero-width and other format characters that show as nothing.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}' | '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}'
    ) || c.is_control()
}

/// Whether `list` holds `item`, ASCII-case-insensitively, ignoring a leading
/// dot in the list entry.
fn list_has(list: &[String], item: &str) -> bool {
    list.iter()
        .any(|e| e.strip_prefix('.').unwrap_or(e).eq_ignore_ascii_case(item))
}

/// A file name fit for a log line: controls and direction characters
/// escaped, at most [`NAME_CHARS_MAX`] characters.
fn display_name(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if i == NAME_CHARS_MAX {
            out.push_str("...");
            break;
        }
        if c.is_control() || is_direction_control(c) || is_invisible(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether a file name ends in `.zip` (trailing dots and spaces ignored,
/// as Windows does).
fn zip_named(name: &str) -> bool {
    let n = name.trim_end_matches(['.', ' ']).as_bytes();
    n.len() > 4 && n[n.len() - 4..].eq_ignore_ascii_case(b".zip")
}

/// Printable ASCII only (for SMTP replies), at most [`TEXT_CHARS_MAX`]
/// characters: anything else becomes `?`.
fn ascii_text(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(TEXT_CHARS_MAX)
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.chars().nth(TEXT_CHARS_MAX).is_some() {
        out.truncate(TEXT_CHARS_MAX - 3);
        out.push_str("...");
    }
    out
}
