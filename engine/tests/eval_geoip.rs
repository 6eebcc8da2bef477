//! GeoIP from the MaxMind test databases: every network of the published
//! source data looks up to its country and continent; broken and hostile
//! files are refused at load or give `None`, never a panic or a hang.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use mb_engine::eval::geoip::{GeoIp, Place};
use mb_engine::eval::Code;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/geoip")
}

fn load(rel: &str) -> Result<GeoIp, String> {
    let bytes = std::fs::read(dir().join(rel)).unwrap();
    GeoIp::from_bytes(bytes)
}

fn code(s: &str) -> Option<Code> {
    Code::parse(s)
}

/// (first address of network, country, continent) for every network of a
/// source-data JSON file; country as the lookup reports it (country, else
/// registered country).
fn expectations(json: &str) -> Vec<(IpAddr, Option<Code>, Option<Code>)> {
    let text =
        std::fs::read_to_string(dir().join("maxmind-test-data/source-data").join(json)).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for item in value.as_array().unwrap() {
        for (net, record) in item.as_object().unwrap() {
            let addr: IpAddr = net.split('/').next().unwrap().parse().unwrap();
            let iso = |k: &str| {
                record
                    .get(k)?
                    .get("iso_code")?
                    .as_str()
                    .and_then(Code::parse)
            };
            let country = iso("country").or_else(|| iso("registered_country"));
            let continent = record
                .get("continent")
                .and_then(|c| c.get("code"))
                .and_then(|c| c.as_str())
                .and_then(Code::parse);
            out.push((addr, country, continent));
        }
    }
    out
}

fn check_all(db: &str, json: &str) {
    let geo = load(db).unwrap();
    let want = expectations(json);
    assert!(want.len() > 50, "{json}: {}", want.len());
    let mut with_data = 0;
    for (addr, country, continent) in want {
        let got = geo.lookup(addr);
        let expect =
            (country.is_some() || continent.is_some()).then_some(Place { country, continent });
        assert_eq!(got, expect, "{db}: {addr}");
        with_data += usize::from(expect.is_some());
    }
    assert!(with_data > 50);
    assert_eq!(geo.lookup_errors(), 0);
}

#[test]
fn geoip2_country_test_database_matches_source_data() {
    check_all(
        "maxmind-test-data/GeoIP2-Country-Test.mmdb",
        "GeoIP2-Country-Test.json",
    );
}

#[test]
fn geolite2_country_test_database_matches_source_data() {
    check_all(
        "maxmind-test-data/GeoLite2-Country-Test.mmdb",
        "GeoLite2-Country-Test.json",
    );
}

#[test]
fn city_database_gives_country_and_continent() {
    check_all(
        "maxmind-test-data/GeoIP2-City-Test.mmdb",
        "GeoIP2-City-Test.json",
    );
}

#[test]
fn documented_addresses() {
    let geo = load("maxmind-test-data/GeoIP2-Country-Test.mmdb").unwrap();
    let at = |s: &str| geo.lookup(s.parse().unwrap());
    assert_eq!(
        at("81.2.69.142"),
        Some(Place {
            country: code("GB"),
            continent: code("EU")
        })
    );
    assert_eq!(at("::ffff:81.2.69.142"), at("81.2.69.142"));
    assert_eq!(
        at("2a02:d180::1"),
        Some(Place {
            country: code("DE"),
            continent: code("EU")
        })
    );
    assert_eq!(
        at("2001:218::1"),
        Some(Place {
            country: code("JP"),
            continent: code("AS")
        })
    );
    assert_eq!(at("10.0.0.1"), None);
    assert_eq!(at("::1"), None);
    let info = geo.describe();
    assert_eq!(info.database_type, "GeoIP2-Country");
    assert_eq!(info.ip_version, 6);
    assert!(info.node_count > 0 && info.build_epoch > 1_000_000_000);
    assert!(format!("{geo:?}").contains("GeoIP2-Country"));
}

#[test]
fn dbip_country_lite() {
    // DB-IP's data is CC-BY-4.0: it stays in the shared corpus beside the
    // repository, not in the source tree.
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/geoip/dbip-country-lite/dbip-country.mmdb");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the shared corpus sits beside the repository)",
            path.display()
        )
    });
    let geo = GeoIp::from_bytes(bytes).unwrap();
    let info = geo.describe();
    assert!(info.node_count > 100_000, "{info:?}");
    // Well-known anycast/operator addresses, registered where the RIR says.
    let country = |s: &str| geo.lookup(s.parse().unwrap()).and_then(|p| p.country);
    assert_eq!(country("8.8.8.8"), code("US"));
    assert_eq!(country("193.0.6.139"), code("NL")); // RIPE NCC
    assert_eq!(country("2001:67c:2e8::1"), code("NL")); // RIPE NCC
    assert_eq!(
        country("127.0.0.1").or(country("10.1.1.1")),
        country("10.1.1.1")
    );
    assert_eq!(geo.lookup_errors(), 0);
}

#[test]
fn broken_and_hostile_files_are_refused_or_none() {
    let broken = [
        ("MaxMind-DB-test-broken-pointers-24.mmdb", "past the end"),
        ("GeoIP2-City-Test-Invalid-Node-Count.mmdb", "does not fit"),
        (
            "GeoIP2-City-Test-Broken-Double-Format.mmdb",
            "unexpected size",
        ),
        // 2**40 leaf decodes through a depth-40 pointer fan-out.
        (
            "MaxMind-DB-test-pointer-decoder-dos.mmdb",
            "deeper than the limit",
        ),
        (
            "MaxMind-DB-test-pointer-decoder-dos-ipv6.mmdb",
            "deeper than the limit",
        ),
        // 65,537 values; 2 MiB + 1 payload bytes; metadata over 2 MiB.
        (
            "MaxMind-DB-test-decoder-value-limit-over.mmdb",
            "value or payload limit",
        ),
        (
            "MaxMind-DB-test-decoder-payload-limit-over.mmdb",
            "value or payload limit",
        ),
        ("MaxMind-DB-test-metadata-payload-limit.mmdb", "metadata"),
        // Thousands of pointers to one 64 KiB value.
        (
            "MaxMind-DB-test-payload-amplification-dos.mmdb",
            "value or payload limit",
        ),
        (
            "MaxMind-DB-test-payload-amplification-dos-string.mmdb",
            "value or payload limit",
        ),
        (
            "MaxMind-DB-test-payload-amplification-dos-worst-case.mmdb",
            "value or payload limit",
        ),
    ];
    for (name, why) in broken {
        let e = load(&format!("maxmind-test-data/{name}"))
            .map(|g| g.describe())
            .unwrap_err();
        assert!(e.contains(why), "{name}: {e}");
    }
    // The boundary files exactly at the limits (65,536 values; 2 MiB) load.
    for name in [
        "MaxMind-DB-test-decoder-value-limit.mmdb",
        "MaxMind-DB-test-decoder-value-limit-pointer-heavy.mmdb",
        "MaxMind-DB-test-decoder-payload-limit.mmdb",
        "MaxMind-DB-test-broken-search-tree-24.mmdb",
    ] {
        let geo = load(&format!("maxmind-test-data/{name}")).unwrap();
        for ip in ["1.1.1.1", "::1.1.1.1", "81.2.69.160", "2001:db8::1"] {
            // Records without country data: no place, and no error either.
            assert_eq!(geo.lookup(ip.parse().unwrap()), None, "{name}");
        }
    }
    assert!(GeoIp::from_bytes(Vec::new())
        .unwrap_err()
        .contains("not a MaxMind DB"));
    assert!(GeoIp::from_bytes(b"hello world".to_vec()).is_err());
}

#[test]
fn every_test_database_loads_or_errors_without_panic() {
    for entry in std::fs::read_dir(dir().join("maxmind-test-data")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "mmdb") {
            if let Ok(geo) = GeoIp::from_bytes(std::fs::read(&path).unwrap()) {
                for ip in ["1.1.1.1", "81.2.69.142", "::", "2001:220::1", "ffff::1"] {
                    let _ = geo.lookup(ip.parse().unwrap());
                }
            }
        }
    }
}

#[test]
fn truncated_and_bit_flipped_files_never_panic() {
    let good = std::fs::read(dir().join("maxmind-test-data/GeoIP2-Country-Test.mmdb")).unwrap();
    let ips: Vec<IpAddr> = [
        "81.2.69.142",
        "2a02:d180::1",
        "2001:220::1",
        "216.160.83.56",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let mut loaded = 0;
    let mut variants: Vec<Vec<u8>> = Vec::new();
    for cut in (0..good.len()).step_by(97) {
        variants.push(good[..cut].to_vec());
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..3000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut bytes = good.clone();
        let at = (seed as usize) % bytes.len();
        bytes[at] ^= 1 << ((seed >> 40) % 8);
        variants.push(bytes);
    }
    for bytes in variants {
        if let Ok(geo) = GeoIp::from_bytes(bytes) {
            loaded += 1;
            for ip in &ips {
                let _ = geo.lookup(*ip);
            }
        }
    }
    assert!(
        loaded > 100,
        "most single bit flips in data leave a loadable file: {loaded}"
    );
}
