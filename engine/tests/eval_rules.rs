//! The rule language through its public API only, as the daemon and `mbctl`
//! use it: the signatures other modules code against, the shipped example
//! files, and a compiled set shared across threads.

use std::net::IpAddr;
use std::sync::Arc;

use mb_engine::eval::rules::{compile, Hit, Needs, RuleAction, RuleSet, Source};
use mb_engine::eval::{Code, Facts, FileDiagnostic};
use mb_engine::verdict::SmtpText;

#[test]
fn api_signatures_are_as_agreed() {
    let _: fn(&[Source<'_>]) -> Result<RuleSet, Vec<FileDiagnostic>> = compile;
    let _: for<'a> fn(&'a RuleSet, &Facts<'_>) -> Option<Hit<'a>> = RuleSet::evaluate;
    let _: for<'a> fn(&'a RuleSet, &Facts<'_>) -> Option<Hit<'a>> = RuleSet::evaluate_naive;
    let _: fn(&RuleSet) -> usize = RuleSet::len;
    let _: fn(&RuleSet) -> bool = RuleSet::is_empty;
    let _: fn(&RuleSet) -> Needs = RuleSet::needs;
    fn traits<T: Send + Sync + std::fmt::Debug + Default>() {}
    traits::<RuleSet>();
    let needs = Needs {
        client: true,
        helo: false,
        geoip: false,
        tls: false,
    };
    assert_ne!(needs, Needs::default());
}

#[test]
fn shipped_rule_files_compile() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tuning/policy");
    let mut texts = Vec::new();
    for entry in std::fs::read_dir(dir).expect("tuning/policy exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "rules") {
            let text = std::fs::read_to_string(&path).expect("readable");
            texts.push((path.display().to_string(), text));
        }
    }
    assert!(!texts.is_empty(), "no .rules files in {dir}");
    let sources: Vec<Source<'_>> = texts
        .iter()
        .map(|(file, text)| Source { file, text })
        .collect();
    let set = compile(&sources).unwrap_or_else(|diags| {
        let lines: Vec<String> = diags.iter().map(ToString::to_string).collect();
        panic!("shipped rules do not compile:\n{}", lines.join("\n"))
    });
    assert!(!set.is_empty());
    assert_eq!(
        set.needs(),
        Needs {
            client: true,
            helo: true,
            geoip: true,
            tls: true
        }
    );
}

#[test]
fn a_compiled_set_is_shared_between_threads() {
    let text = "rule trap:\n  when recipient in [\"trap@mail.example\"]\n  then discard\n\
                rule late:\n  when hour >= 22\n  then tempfail \"451 4.7.1 Late\"\n";
    let set = Arc::new(compile(&[Source { file: "t", text }]).expect("compiles"));
    let handles: Vec<_> = (0..2u64)
        .map(|n| {
            let set = Arc::clone(&set);
            std::thread::spawn(move || {
                let facts = Facts {
                    client_ip: Some(IpAddr::from([192, 0, 2, 1])),
                    recipient: if n == 0 { "Trap@Mail.Example" } else { "x@y" },
                    country: Code::parse("de"),
                    unix_time: 22 * 3600 + n,
                    ..Facts::default()
                };
                let hit = set
                    .evaluate(&facts)
                    .map(|h| (h.name.to_owned(), h.action.clone()));
                let naive = set.evaluate_naive(&facts).map(|h| h.name.to_owned());
                assert_eq!(hit.as_ref().map(|h| h.0.clone()), naive);
                hit
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert_eq!(
        results,
        [
            Some(("trap".to_owned(), RuleAction::Discard)),
            Some((
                "late".to_owned(),
                RuleAction::TempFail(SmtpText {
                    code: 451,
                    text: "4.7.1 Late".to_owned()
                })
            )),
        ]
    );
}
