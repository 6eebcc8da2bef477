//! The attachment policy on messages built here: names, content, ZIPs
//! (nested, bombs, encrypted, malformed), office documents that must pass,
//! hostile messages that must stay within the caps, and arbitrary bytes
//! that must never panic.

use mb_engine::filter::attach::{
    check, check_attachment, AttachPolicy, Finding, Rule, FINDINGS_MAX,
};
use mb_engine::filter::mime::{self, sniff, Attachment, Limits, Message, Violation};
use miniz_oxide::deflate::core::{
    create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Peak heap use of the current thread, to show the caps hold.

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add_signed(delta);
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// bookkeeping touches only const-initialised thread-locals, never the heap.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result with the peak heap bytes it added.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    (r, PEAK.with(Cell::get) - base)
}

// ---------------------------------------------------------------------------
// A small ZIP writer.

const MIB: usize = 1024 * 1024;

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[derive(Clone)]
struct E {
    name: String,
    /// What goes into the archive after the local header.
    body: Vec<u8>,
    method: u16,
    flags: u16,
    crc: u32,
    compressed: u32,
    uncompressed: u32,
}

impl E {
    fn stored(name: &str, data: &[u8]) -> E {
        E {
            name: name.to_owned(),
            body: data.to_vec(),
            method: 0,
            flags: 0,
            crc: crc32(data),
            compressed: data.len() as u32,
            uncompressed: data.len() as u32,
        }
    }
    fn deflated(name: &str, data: &[u8]) -> E {
        let body = miniz_oxide::deflate::compress_to_vec(data, 6);
        E {
            name: name.to_owned(),
            compressed: body.len() as u32,
            body,
            method: 8,
            flags: 0,
            crc: crc32(data),
            uncompressed: data.len() as u32,
        }
    }
    fn encrypted(mut self) -> E {
        self.flags |= 1;
        self
    }
}

fn zip_of(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u32;
        let header = |sig: &[u8], central: bool| {
            let mut h = Vec::new();
            h.extend_from_slice(sig);
            if central {
                h.extend_from_slice(&20u16.to_le_bytes()); // made by
            }
            h.extend_from_slice(&20u16.to_le_bytes()); // needed
            h.extend_from_slice(&e.flags.to_le_bytes());
            h.extend_from_slice(&e.method.to_le_bytes());
            h.extend_from_slice(&[0, 0, 0x21, 0]); // time, date
            h.extend_from_slice(&e.crc.to_le_bytes());
            h.extend_from_slice(&e.compressed.to_le_bytes());
            h.extend_from_slice(&e.uncompressed.to_le_bytes());
            h.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // extra
            if central {
                h.extend_from_slice(&[0; 6]); // comment, disk, internal attributes
                h.extend_from_slice(&[0; 4]); // external attributes
                h.extend_from_slice(&offset.to_le_bytes());
            }
            h.extend_from_slice(e.name.as_bytes());
            h
        };
        out.extend_from_slice(&header(b"PK\x03\x04", false));
        out.extend_from_slice(&e.body);
        central.extend_from_slice(&header(b"PK\x01\x02", true));
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A deflate stream that really inflates to `mib` MiB of zeros, built in
/// O(1) work: one sync-flushed MiB repeated (every back-reference stays in
/// zeros), then an empty final block.
fn zeros_deflate(mib: usize) -> Vec<u8> {
    let mut c = CompressorOxide::new(create_comp_flags_from_zip_params(6, 0, 0));
    let zeros = vec![0u8; MIB];
    let mut chunk = vec![0u8; 64 * 1024];
    let (status, used, n) =
        miniz_oxide::deflate::core::compress(&mut c, &zeros, &mut chunk, TDEFLFlush::Sync);
    assert_eq!((status, used), (TDEFLStatus::Okay, MIB));
    chunk.truncate(n);
    let mut out = Vec::with_capacity(chunk.len() * mib + 8);
    for _ in 0..mib {
        out.extend_from_slice(&chunk);
    }
    out.extend_from_slice(&[0x03, 0x00]); // final fixed-Huffman block, empty
    out
}

/// A minimal PE file: DOS header pointing at a PE signature.
fn pe() -> Vec<u8> {
    let mut v = vec![0u8; 512];
    v[..2].copy_from_slice(b"MZ");
    v[0x3c] = 0x80;
    v[0x80..0x84].copy_from_slice(b"PE\0\0");
    v
}

fn pdf() -> Vec<u8> {
    b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".to_vec()
}

/// A .docx-shaped ZIP (OOXML), with an optional extra entry.
fn docx(extra: Option<E>) -> Vec<u8> {
    let mut entries = vec![
        E::deflated("[Content_Types].xml", b"<?xml version=\"1.0\"?><Types/>"),
        E::deflated("_rels/.rels", b"<?xml version=\"1.0\"?><Relationships/>"),
        E::deflated("word/document.xml", &b"<w:p>hello</w:p>".repeat(200)),
        E::stored("word/media/image1.png", b"\x89PNG\r\n\x1a\n0000"),
    ];
    entries.extend(extra);
    zip_of(&entries)
}

// ---------------------------------------------------------------------------
// Messages.

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, c) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push('\n');
        }
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                out.push(A[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A multipart message with a text body and these attachments
/// (file name, declared type, bytes), parsed with the default limits.
fn mail(files: &[(&str, &str, &[u8])]) -> Message {
    let mut m = String::from(
        "From: a@example.org\nTo: b@example.net\nSubject: files\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"XX\"\n\n--XX\n\
         Content-Type: text/plain\n\nsee attached\n",
    );
    for (name, ctype, data) in files {
        m.push_str(&format!(
            "--XX\nContent-Type: {ctype}; name=\"{name}\"\n\
             Content-Disposition: attachment; filename=\"{name}\"\n\
             Content-Transfer-Encoding: base64\n\n{}\n",
            base64(data)
        ));
    }
    m.push_str("--XX--\n");
    mime::parse(m.as_bytes(), &Limits::default())
}

/// The findings for one file: through a MIME message for ASCII names, as
/// a bare attachment otherwise.
fn one(name: &str, data: &[u8]) -> Vec<Finding> {
    if !name.is_ascii() {
        return check_attachment(&AttachPolicy::default(), &attachment(data.to_vec(), name));
    }
    let m = mail(&[(name, "application/octet-stream", data)]);
    assert_eq!(m.attachments.len(), 1, "{:?}", m.violations);
    check(&AttachPolicy::default(), &m)
}

fn rules(f: &[Finding]) -> Vec<Rule> {
    f.iter().map(|f| f.rule).collect()
}

fn attachment(data: Vec<u8>, name: &str) -> Attachment {
    Attachment {
        filename: Some(name.to_owned()),
        declared_type: "application/octet-stream".to_owned(),
        sniffed_type: sniff::sniff(&data),
        size: data.len(),
        depth: 1,
        part: 1,
        data,
    }
}

// ---------------------------------------------------------------------------
// Names and content.

#[test]
fn clean_files_pass() {
    let m = mail(&[
        ("report.pdf", "application/pdf", &pdf()),
        (
            "letter.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            &docx(None),
        ),
        ("photo.jpg", "image/jpeg", b"\xff\xd8\xff\xe0JFIF"),
        ("countries.csv", "text/csv", b"MZ,Mozambique\nNA,Namibia\n"),
        ("notes.txt", "text/plain", b"an exe is a program\n"),
    ]);
    assert_eq!(m.attachments.len(), 5);
    let f = check(&AttachPolicy::default(), &m);
    assert!(f.is_empty(), "{f:#?}");
}

#[test]
fn blocked_extension() {
    let f = one("setup.EXE", b"not really a program");
    assert_eq!(rules(&f), [Rule::BlockedExtension]);
    assert_eq!(f[0].part, 2);
    assert_eq!(f[0].filename.as_deref(), Some("setup.EXE"));
    assert_eq!(f[0].path, "setup.EXE");
    assert!(f[0].text.contains(".exe"), "{}", f[0].text);
    for name in [
        "run.js", "x.vbs", "a.hta", "b.lnk", "disk.iso", "c.ps1", "d.scr.",
    ] {
        assert_eq!(rules(&one(name, b"x")), [Rule::BlockedExtension], "{name}");
    }
    for name in ["exe", "notes.txt", "archive.exe.txt", "a.jsx"] {
        assert!(one(name, b"x").is_empty(), "{name}");
    }
}

#[test]
fn policy_lists_are_case_and_dot_insensitive() {
    let policy = AttachPolicy {
        blocked_extensions: vec![".DOCM".to_owned()],
        ..AttachPolicy::default()
    };
    let a = attachment(b"x".to_vec(), "plan.docm");
    assert_eq!(
        rules(&check_attachment(&policy, &a)),
        [Rule::BlockedExtension]
    );
}

#[test]
fn double_extension() {
    for name in [
        "invoice.pdf.exe",
        "invoice.PDF.scr",
        "invoice.pdf      .exe",
        "scan.jpg.exe. . ",
        "invoice.pdf\u{200b}.exe",
    ] {
        let f = one(name, b"x");
        assert_eq!(rules(&f), [Rule::DoubleExtension], "{name}");
    }
    let f = one("invoice.pdf.exe", b"x");
    assert!(
        f[0].text.contains(".exe file disguised as .pdf"),
        "{}",
        f[0].text
    );
    // a document name with a dot in the stem is not a double extension
    assert_eq!(rules(&one("pdf.exe", b"x")), [Rule::BlockedExtension]);
    assert!(one("annual.report.pdf", b"x").is_empty());
}

#[test]
fn direction_controls_in_names() {
    // shows as "invoiceexe.pdf"
    let f = one("invoice\u{202e}fdp.exe", b"x");
    assert_eq!(rules(&f), [Rule::DeceptiveName, Rule::BlockedExtension]);
    assert!(f[0].path.contains("\\u{202e}"), "{}", f[0].path);
    assert!(f.iter().all(|f| f.text.is_ascii()));
    // the trick also works on harmless-looking real extensions
    assert_eq!(
        rules(&one("photo\u{202e}gpj.txt", b"x")),
        [Rule::DeceptiveName]
    );
    let policy = AttachPolicy {
        block_deceptive_names: false,
        ..AttachPolicy::default()
    };
    let a = attachment(b"x".to_vec(), "photo\u{202e}gpj.txt");
    assert!(check_attachment(&policy, &a).is_empty());
}

#[test]
fn executable_content_whatever_the_name() {
    let f = one("invoice.pdf", &pe());
    assert_eq!(rules(&f), [Rule::ExecutableContent]);
    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    elf.resize(64, 0);
    assert_eq!(rules(&one("readme", &elf)), [Rule::ExecutableContent]);
    // a DOS program without a PE header still has binary header bytes
    let mut dos = b"MZ\x90\x00\x03\x00".to_vec();
    dos.resize(64, 0);
    assert_eq!(rules(&one("old.dat", &dos)), [Rule::ExecutableContent]);
}

#[test]
fn blocked_declared_type() {
    let m = mail(&[("update", "application/x-msdownload", b"hello")]);
    assert_eq!(
        rules(&check(&AttachPolicy::default(), &m)),
        [Rule::BlockedType]
    );
}

#[test]
fn oversized_part() {
    let policy = AttachPolicy {
        max_part_bytes: 1000,
        ..AttachPolicy::default()
    };
    let m = mail(&[("big.txt", "text/plain", &[b'a'; 1001])]);
    let f = check(&policy, &m);
    assert_eq!(rules(&f), [Rule::OversizedPart]);
    assert!(f[0].text.contains("1001 bytes"), "{}", f[0].text);
    let m = mail(&[("ok.txt", "text/plain", &[b'a'; 1000])]);
    assert!(check(&policy, &m).is_empty());
}

// ---------------------------------------------------------------------------
// ZIP archives.

#[test]
fn exe_inside_zip_inside_zip() {
    let inner = zip_of(&[
        E::deflated("readme.txt", b"hello"),
        E::deflated("tools/run.bin", &pe()),
    ]);
    let outer = zip_of(&[E::deflated("b.zip", &inner)]);
    let f = one("a.zip", &outer);
    assert_eq!(rules(&f), [Rule::ExecutableContent]);
    assert_eq!(f[0].path, "a.zip/b.zip/tools/run.bin");
    assert_eq!(f[0].part, 2);

    let inner = zip_of(&[E::stored("invoice.pdf.exe", b"x")]);
    let outer = zip_of(&[E::stored("b.zip", &inner)]);
    let f = one("a.zip", &outer);
    assert_eq!(rules(&f), [Rule::DoubleExtension]);
    assert_eq!(f[0].path, "a.zip/b.zip/invoice.pdf.exe");
}

#[test]
fn office_documents_pass_unless_they_carry_programs() {
    assert!(one("letter.docx", &docx(None)).is_empty());
    let zipped = zip_of(&[E::deflated("letter.docx", &docx(None))]);
    assert!(one("letters.zip", &zipped).is_empty());
    let bad = docx(Some(E::deflated("word/embeddings/tool.exe", &pe())));
    let f = one("letter.docx", &bad);
    assert_eq!(
        rules(&f),
        [Rule::BlockedExtension, Rule::ExecutableContent],
        "{f:#?}"
    );
    assert_eq!(f[0].path, "letter.docx/word/embeddings/tool.exe");
}

/// `depth` ZIPs, each inside the next, the innermost holding a PE.
fn nested(depth: usize) -> Vec<u8> {
    let mut z = zip_of(&[E::deflated("x.exe", &pe())]);
    for i in 1..depth {
        z = zip_of(&[E::deflated(&format!("l{i}.zip"), &z)]);
    }
    z
}

#[test]
fn depth_cap() {
    let policy = AttachPolicy {
        zip_depth_max: 3,
        ..AttachPolicy::default()
    };
    let f = check_attachment(&policy, &attachment(nested(3), "n.zip"));
    assert_eq!(
        rules(&f),
        [Rule::BlockedExtension, Rule::ExecutableContent],
        "{f:#?}"
    );
    assert_eq!(f[0].path, "n.zip/l2.zip/l1.zip/x.exe");
    let f = check_attachment(&policy, &attachment(nested(4), "n.zip"));
    assert_eq!(rules(&f), [Rule::ArchiveTooDeep], "{f:#?}");
    assert_eq!(f[0].path, "n.zip/l3.zip/l2.zip/l1.zip");
    // far deeper than any cap: still one finding, quickly
    let f = check_attachment(&AttachPolicy::default(), &attachment(nested(40), "n.zip"));
    assert_eq!(rules(&f), [Rule::ArchiveTooDeep]);
}

#[test]
fn entries_cap() {
    let entries: Vec<E> = (0..50)
        .map(|i| E::stored(&format!("f{i}.txt"), b"x"))
        .collect();
    let z = zip_of(&entries);
    let policy = AttachPolicy {
        zip_entries_max: 49,
        ..AttachPolicy::default()
    };
    let f = check_attachment(&policy, &attachment(z.clone(), "many.zip"));
    assert_eq!(rules(&f), [Rule::ArchiveTooManyEntries]);
    let policy = AttachPolicy {
        zip_entries_max: 50,
        ..AttachPolicy::default()
    };
    assert!(check_attachment(&policy, &attachment(z, "many.zip")).is_empty());
}

#[test]
fn zip_bomb_is_flagged_quickly_within_memory() {
    // 1 GiB of zeros in about 1 MiB, honestly declared
    let body = zeros_deflate(1024);
    let bomb = E {
        name: "zeros.bin".to_owned(),
        compressed: body.len() as u32,
        uncompressed: 1 << 30,
        crc: 0,
        body,
        method: 8,
        flags: 0,
    };
    let z = zip_of(std::slice::from_ref(&bomb));
    let a = attachment(z, "bomb.zip");
    let t = Instant::now();
    let (f, peak) = peak_of(|| check_attachment(&AttachPolicy::default(), &a));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(rules(&f), [Rule::ArchiveBomb], "{f:#?}");
    assert!(peak < MIB, "peak {peak}");

    // the same stream declared small, nested so it must be inflated: the
    // output cap stops it
    let liar = E {
        name: "inner.zip".to_owned(),
        uncompressed: 4096,
        ..bomb
    };
    // its first bytes must look like a ZIP to be opened: prefix a real one
    let mut body = Vec::new();
    let mut c = CompressorOxide::new(create_comp_flags_from_zip_params(6, 0, 0));
    let mut buf = vec![0u8; 64 * 1024];
    let start = zip_of(&[E::stored("a.txt", b"a")]);
    let (_, _, n) =
        miniz_oxide::deflate::core::compress(&mut c, &start, &mut buf, TDEFLFlush::Sync);
    body.extend_from_slice(&buf[..n]);
    // zeros after a sync flush: a stored block of 64 KiB - 1 zeros, repeated
    let block: Vec<u8> = [&[0x00, 0xff, 0xff, 0x00, 0x00][..], &[0u8; 0xffff][..]].concat();
    for _ in 0..64 {
        body.extend_from_slice(&block);
    }
    body.extend_from_slice(&[0x03, 0x00]);
    let liar = E {
        compressed: body.len() as u32,
        body,
        ..liar
    };
    let z = zip_of(&[liar]);
    let a = attachment(z, "outer.zip");
    let (f, peak) = peak_of(|| check_attachment(&AttachPolicy::default(), &a));
    assert_eq!(rules(&f), [Rule::ArchiveBomb], "{f:#?}");
    assert!(
        f[0].text.contains("past its declared size"),
        "{}",
        f[0].text
    );
    assert!(peak < MIB, "peak {peak}");

    // 1 GiB declared in total over many small entries
    let entries: Vec<E> = (0..1100)
        .map(|i| E {
            name: format!("z{i}"),
            uncompressed: MIB as u32,
            ..E::stored("", b"")
        })
        .collect();
    let z = zip_of(&entries);
    let f = check_attachment(&AttachPolicy::default(), &attachment(z, "many.zip"));
    assert_eq!(rules(&f), [Rule::ArchiveBomb], "{f:#?}");
}

#[test]
fn recursive_bomb_stops_at_the_first_broken_rule() {
    // the shape of 42.zip: layers of copies, the innermost files 1 GiB of
    // zeros each (declared honestly, here only 1 MiB of real stream)
    let body = zeros_deflate(1);
    let zeros = E {
        name: "0.dat".to_owned(),
        compressed: body.len() as u32,
        uncompressed: 1 << 30,
        crc: 0,
        body,
        method: 8,
        flags: 0,
    };
    let mut layer = zip_of(&vec![zeros; 4]);
    for level in 0..4 {
        let copies: Vec<E> = (0..4)
            .map(|i| E::deflated(&format!("l{level}-{i}.zip"), &layer))
            .collect();
        layer = zip_of(&copies);
    }
    let a = attachment(layer, "42.zip");
    let t = Instant::now();
    let (f, peak) = peak_of(|| check_attachment(&AttachPolicy::default(), &a));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(rules(&f), [Rule::ArchiveTooDeep], "{f:#?}");
    assert!(peak < 2 * MIB, "peak {peak}");
    let policy = AttachPolicy {
        zip_depth_max: 5,
        ..AttachPolicy::default()
    };
    let f = check_attachment(&policy, &a);
    assert_eq!(rules(&f), [Rule::ArchiveBomb], "{f:#?}");
    assert!(f[0].path.ends_with("l0-0.zip"), "{}", f[0].path);
}

#[test]
fn overlapping_entries_are_a_bomb() {
    // Fifield's construction, in miniature: three central entries pointing
    // at one local header and its data
    let mut z = zip_of(&[E::deflated("a.txt", &[b'a'; 1000])]);
    let eocd = z.len() - 22;
    let cd_offset = u32::from_le_bytes(z[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
    let central = z[cd_offset..eocd].to_vec();
    z.truncate(cd_offset);
    for _ in 0..3 {
        z.extend_from_slice(&central);
    }
    z.extend_from_slice(b"PK\x05\x06\0\0\0\0\x03\0\x03\0");
    z.extend_from_slice(&(central.len() as u32 * 3).to_le_bytes());
    z.extend_from_slice(&(cd_offset as u32).to_le_bytes());
    z.extend_from_slice(&[0, 0]);
    let f = check_attachment(&AttachPolicy::default(), &attachment(z, "o.zip"));
    assert_eq!(rules(&f), [Rule::ArchiveBomb], "{f:#?}");
    assert!(f[0].text.contains("overlapping"), "{}", f[0].text);
}

#[test]
fn nested_archive_over_the_inflate_budget() {
    let inner = zip_of(&[E::stored("data.txt", &vec![b'x'; 100_000])]);
    let outer = zip_of(&[E::deflated("inner.zip", &inner)]);
    let policy = AttachPolicy {
        zip_inflate_max: 50_000,
        ..AttachPolicy::default()
    };
    let f = check_attachment(&policy, &attachment(outer.clone(), "o.zip"));
    assert_eq!(rules(&f), [Rule::ArchiveTooLarge], "{f:#?}");
    assert!(check_attachment(&AttachPolicy::default(), &attachment(outer, "o.zip")).is_empty());
}

#[test]
fn encrypted_zip() {
    let z = zip_of(&[
        E::stored("invoice.pdf", b"\x12\x34 ciphertext").encrypted(),
        E::stored("readme.txt", b"password: 1234"),
    ]);
    let f = one("invoice.zip", &z);
    assert_eq!(rules(&f), [Rule::ArchiveEncrypted]);
    assert_eq!(f[0].path, "invoice.zip");
    // names are not encrypted: still checked
    let z = zip_of(&[E::stored("invoice.pdf.exe", b"\x12\x34").encrypted()]);
    assert_eq!(
        rules(&one("invoice.zip", &z)),
        [Rule::DoubleExtension, Rule::ArchiveEncrypted]
    );
    let policy = AttachPolicy {
        block_encrypted_archives: false,
        ..AttachPolicy::default()
    };
    let z = zip_of(&[E::stored("invoice.pdf", b"\x12\x34").encrypted()]);
    assert!(check_attachment(&policy, &attachment(z, "i.zip")).is_empty());
}

#[test]
fn truncated_and_malformed_zips() {
    let z = zip_of(&[
        E::deflated("a.txt", &b"hello world ".repeat(100)),
        E::deflated("b.txt", &b"more text ".repeat(100)),
    ]);
    for cut in [z.len() - 1, z.len() - 22, z.len() / 2, 10] {
        let f = check_attachment(
            &AttachPolicy::default(),
            &attachment(z[..cut].to_vec(), "t.zip"),
        );
        assert_eq!(rules(&f), [Rule::ArchiveMalformed], "cut at {cut}: {f:#?}");
    }
    // the local header names another file than the central directory
    let mut z = zip_of(&[E::stored("a.txt", b"hello")]);
    let at = 30;
    assert_eq!(&z[at..at + 5], b"a.txt");
    z[at] = b'x';
    let f = check_attachment(&AttachPolicy::default(), &attachment(z, "m.zip"));
    assert_eq!(rules(&f), [Rule::ArchiveMalformed]);
    assert!(f[0].text.contains("names differ"), "{}", f[0].text);
    // corrupt deflate data
    let mut e = E::deflated("a.txt", b"hello hello hello hello");
    e.body = vec![0xff; e.body.len()];
    let f = check_attachment(&AttachPolicy::default(), &attachment(zip_of(&[e]), "c.zip"));
    assert_eq!(rules(&f), [Rule::ArchiveMalformed]);
    // a nested archive whose deflate stream is cut short
    let text: Vec<u8> = (0..20_000u32)
        .map(|i| b"abcdefghij"[(i.wrapping_mul(2_654_435_761) >> 28) as usize % 10])
        .collect();
    let mut e = E::deflated("in.zip", &zip_of(&[E::stored("t.txt", &text)]));
    e.body.truncate(e.body.len() / 2);
    e.compressed = e.body.len() as u32;
    let f = check_attachment(&AttachPolicy::default(), &attachment(zip_of(&[e]), "c.zip"));
    assert_eq!(rules(&f), [Rule::ArchiveMalformed], "{f:#?}");
    assert!(f[0].text.contains("truncated"), "{}", f[0].text);
    // a stored entry whose two sizes differ
    let mut e = E::stored("a.txt", b"hello");
    e.uncompressed = 10;
    let f = check_attachment(&AttachPolicy::default(), &attachment(zip_of(&[e]), "s.zip"));
    assert_eq!(rules(&f), [Rule::ArchiveMalformed], "{f:#?}");
    // junk before the archive (a self-extractor stub) is tolerated
    let mut z = b"junk before the archive".to_vec();
    z.extend_from_slice(&zip_of(&[E::deflated("x.exe", b"x")]));
    let a = attachment(z, "j.zip");
    assert_eq!(a.sniffed_type, None);
    let f = check_attachment(&AttachPolicy::default(), &a);
    assert_eq!(rules(&f), [Rule::BlockedExtension]);
    assert_eq!(f[0].path, "j.zip/x.exe");
    // a file called .zip that is no ZIP at all is not an archive finding
    assert!(one("notes.zip", b"just text").is_empty());
    // nor is the trick hidden one level down
    let mut inner = b"junk".to_vec();
    inner.extend_from_slice(&zip_of(&[E::deflated("y.exe", b"y")]));
    let z = zip_of(&[E::deflated("in.zip", &inner), E::stored("t.zip", b"text")]);
    let f = check_attachment(&AttachPolicy::default(), &attachment(z, "o.zip"));
    assert_eq!(rules(&f), [Rule::BlockedExtension]);
    assert_eq!(f[0].path, "o.zip/in.zip/y.exe");
}

#[test]
fn unsupported_archives_are_refused_only_when_asked() {
    let rar = b"Rar!\x1a\x07\x01\x00 something".to_vec();
    assert!(one("files.rar", &rar).is_empty());
    let policy = AttachPolicy {
        block_unsupported_archives: true,
        ..AttachPolicy::default()
    };
    let f = check_attachment(&policy, &attachment(rar.clone(), "files.rar"));
    assert_eq!(rules(&f), [Rule::ArchiveUnsupported]);
    let z = zip_of(&[E::stored("inner.rar", &rar)]);
    let f = check_attachment(&policy, &attachment(z, "z.zip"));
    assert_eq!(rules(&f), [Rule::ArchiveUnsupported]);
    assert_eq!(f[0].path, "z.zip/inner.rar");
    let mut e = E::stored("x.bin", b"bzip2 data");
    e.method = 12;
    let z = zip_of(&[e]);
    let f = check_attachment(&policy, &attachment(z.clone(), "z.zip"));
    assert_eq!(rules(&f), [Rule::ArchiveUnsupported]);
    assert!(check_attachment(&AttachPolicy::default(), &attachment(z, "z.zip")).is_empty());
}

#[test]
fn texts_fit_an_smtp_reply() {
    let name = format!("{}.exe", "\u{e9}\r\n".repeat(300));
    let f = one(&name, b"x");
    assert_eq!(rules(&f), [Rule::BlockedExtension]);
    assert!(
        f[0].text.len() <= 200 && f[0].text.ends_with("..."),
        "{}",
        f[0].text
    );
    assert!(f[0].text.bytes().all(|b| b == b' ' || b.is_ascii_graphic()));
    assert!(!f[0].path.contains(['\r', '\n']), "{}", f[0].path);
}

#[test]
fn findings_are_capped() {
    let entries: Vec<E> = (0..500)
        .map(|i| E::stored(&format!("f{i}.exe"), b"x"))
        .collect();
    let f = check_attachment(
        &AttachPolicy::default(),
        &attachment(zip_of(&entries), "z.zip"),
    );
    assert_eq!(f.len(), FINDINGS_MAX);
}

#[test]
fn inspection_can_be_turned_off() {
    let policy = AttachPolicy {
        inspect_zip: false,
        ..AttachPolicy::default()
    };
    let z = zip_of(&[E::stored("x.exe", b"x")]);
    assert!(check_attachment(&policy, &attachment(z, "z.zip")).is_empty());
}

// ---------------------------------------------------------------------------
// Hostile messages: parse + check stay within the limits.

fn hostile_limits() -> Limits {
    Limits {
        depth_max: 8,
        parts_max: 64,
        headers_max: 200,
        header_bytes_max: 4096,
        message_bytes_max: 8 * MIB,
        decoded_bytes_max: 2 * MIB,
        part_bytes_max: MIB,
    }
}

fn deep_nesting(levels: usize) -> Vec<u8> {
    let mut m = String::from("Subject: deep\n");
    for i in 0..levels {
        m.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n"
        ));
    }
    m.push_str("Content-Type: application/octet-stream; name=\"x.exe\"\n\nMZ\n");
    for i in (0..levels).rev() {
        m.push_str(&format!("--b{i}--\n"));
    }
    m.into_bytes()
}

fn huge_headers() -> Vec<u8> {
    let mut m = Vec::new();
    for i in 0..20_000 {
        m.extend_from_slice(format!("X-H{i}: value\n").as_bytes());
    }
    m.extend_from_slice(b"Subject: ");
    m.extend_from_slice(&vec![b'a'; 2 * MIB]);
    m.extend_from_slice(b"\n\tfolded\n\nbody\n");
    m
}

fn many_parts(n: usize) -> Vec<u8> {
    let mut m = String::from("Content-Type: multipart/mixed; boundary=\"B\"\n\n");
    for i in 0..n {
        m.push_str(&format!(
            "--B\nContent-Type: application/zip; name=\"p{i}.zip\"\n\
             Content-Transfer-Encoding: base64\n\n{}\n",
            base64(&nested(3))
        ));
    }
    m.push_str("--B--\n");
    m.into_bytes()
}

/// A message carrying a ZIP bomb and an oversized base64 part.
fn bomb_mail() -> Vec<u8> {
    let body = zeros_deflate(512);
    let bomb = E {
        name: "zeros.bin".to_owned(),
        compressed: body.len() as u32,
        uncompressed: 512 << 20,
        crc: 0,
        body,
        method: 8,
        flags: 0,
    };
    let z = zip_of(&[bomb]);
    let mut m = String::from("Content-Type: multipart/mixed; boundary=\"B\"\n\n");
    m.push_str(&format!(
        "--B\nContent-Type: application/zip; name=\"bomb.zip\"\n\
         Content-Transfer-Encoding: base64\n\n{}\n",
        base64(&z)
    ));
    m.push_str(&format!(
        "--B\nContent-Type: application/octet-stream; name=\"big.bin\"\n\
         Content-Transfer-Encoding: base64\n\n{}\n--B--\n",
        base64(&vec![7u8; 3 * MIB])
    ));
    m.into_bytes()
}

#[test]
fn hostile_messages_stay_within_the_caps() {
    let limits = hostile_limits();
    let policy = AttachPolicy {
        zip_inflate_max: MIB,
        ..AttachPolicy::default()
    };
    let cases: [(&str, Vec<u8>, Violation); 4] = [
        ("deep nesting", deep_nesting(500), Violation::DepthExceeded),
        ("huge headers", huge_headers(), Violation::HeadersExceeded),
        ("many parts", many_parts(200), Violation::PartsExceeded),
        ("bomb", bomb_mail(), Violation::DecodedTooLarge),
    ];
    for (what, raw, expected) in cases {
        let t = Instant::now();
        let ((m, f), peak) = peak_of(|| {
            let m = mime::parse(&raw, &limits);
            let f = check(&policy, &m);
            (m, f)
        });
        assert!(m.has(&expected), "{what}: {:?}", m.violations);
        assert!(m.parts.len() <= limits.parts_max, "{what}");
        assert!(
            m.parts.iter().all(|p| p.depth <= limits.depth_max),
            "{what}"
        );
        let headers: usize = m.parts.iter().map(|p| p.headers.len()).sum();
        assert!(headers <= limits.headers_max, "{what}");
        let decoded: usize = m.attachments.iter().map(|a| a.data.len()).sum();
        assert!(decoded <= limits.decoded_bytes_max, "{what}");
        assert!(f.len() <= FINDINGS_MAX, "{what}");
        // the message itself, what the parser may keep, and the inflate cap
        let bound = raw.len() + 2 * limits.decoded_bytes_max + policy.zip_inflate_max + 4 * MIB;
        assert!(peak <= bound, "{what}: peak {peak} > {bound}");
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{what}: {:?}",
            t.elapsed()
        );
        match what {
            "many parts" => assert!(
                !f.is_empty()
                    && f.iter()
                        .all(|f| f.rule == Rule::ExecutableContent
                            || f.rule == Rule::BlockedExtension),
                "{f:#?}"
            ),
            "bomb" => assert!(f.iter().any(|f| f.rule == Rule::ArchiveBomb), "{f:#?}"),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// Arbitrary bytes never panic.

fn arbitrary_policy() -> AttachPolicy {
    AttachPolicy {
        zip_depth_max: 3,
        zip_entries_max: 64,
        zip_inflate_max: 64 * 1024,
        block_unsupported_archives: true,
        ..AttachPolicy::default()
    }
}

fn check_bytes(data: Vec<u8>, name: &str) {
    let a = attachment(data, name);
    let mut forced = a.clone();
    forced.sniffed_type = Some(sniff::ZIP);
    for a in [a, forced] {
        for p in [AttachPolicy::default(), arbitrary_policy()] {
            let f = check_attachment(&p, &a);
            assert!(f.len() <= FINDINGS_MAX);
            assert!(f
                .iter()
                .all(|f| f.text.is_ascii() && !f.text.contains('\n')));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048),
                                   name in "\\PC{0,40}") {
        check_bytes(data, &name);
    }

    #[test]
    fn mutated_zips_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
                                cut in any::<usize>()) {
        let inner = zip_of(&[E::deflated("x.exe", &pe()), E::stored("a.txt", b"hello")]);
        let mut z = zip_of(&[E::deflated("in.zip", &inner), E::deflated("b.pdf", &pdf())]);
        for (at, b) in flips {
            let at = at % z.len();
            z[at] = b;
        }
        let cut = cut % (z.len() + 1);
        check_bytes(z[..cut].to_vec(), "m.zip");
        check_bytes(z, "m.zip");
    }
}
