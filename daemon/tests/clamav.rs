//! Malware scanning with a real clamd (Debian `clamav-daemon`): each test
//! starts its own clamd in the foreground with its own configuration, a
//! socket in a temporary directory and a database the test makes (the
//! EICAR test file's MD5 in `test.hdb`, from `sigtool --md5`; no network,
//! no freshclam), and kills it when done. Where clamd or sigtool is
//! absent the tests say so loudly and are listed as skipped.
//!
//! What they pin: EICAR is refused plain, in a zip, in a zip in a zip, in
//! a docx and in a tar.gz, with the signature's name and the engine's
//! version in the report; a clean corpus passes; an engine stopped in the
//! middle of a package, a reply that never comes, and a stream over
//! clamd's StreamMaxLength are never a pass; a real `ferryd` refuses an
//! EICAR zip at ingest with the signature in its audit record and holds
//! packages while clamd is down; and the egress side scans again on its
//! own and refuses (never holds) without its engine.

mod common;

use common::*;
use ferry_guard::{Guard, OnUnavailable, Profile, Report, ScanStatus, Verdict};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The EICAR anti-virus test file (not a virus: a string every engine
/// agrees to detect).
const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// The name the test database gives it; clamd adds `.UNOFFICIAL` to
/// signatures of databases it did not get from ClamAV.
const SIGNATURE: &str = "Ferry.Test.EICAR.UNOFFICIAL";
/// How long clamd may take to load the test database and listen.
const CLAMD_START_LIMIT: Duration = Duration::from_secs(60);
const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

fn find_tool(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&dirs)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A clamd of this test's own, killed on drop.
struct Clamd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Clamd {
    /// Starts clamd with `extra` lines of configuration, or records a
    /// skip and returns `None` when clamd or sigtool is not installed.
    fn start(extra: &str) -> Option<Clamd> {
        let (Some(clamd), Some(sigtool)) = (find_tool("clamd"), find_tool("sigtool")) else {
            skip("clamd or sigtool not installed (Debian: apt-get install clamav-daemon clamav; .ci/run installs them)");
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&db).expect("db dir");
        std::fs::create_dir(&tmp).expect("tmp dir");
        let sample = dir.path().join("eicar.txt");
        std::fs::write(&sample, EICAR).expect("sample");
        // sigtool prints MD5:SIZE:NAME; the name becomes ours.
        let out = Command::new(&sigtool)
            .arg("--md5")
            .arg(&sample)
            .output()
            .expect("sigtool");
        let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let mut f = line.splitn(3, ':');
        let (md5, size) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
        assert!(
            out.status.success() && md5.len() == 32 && size == EICAR.len().to_string(),
            "sigtool --md5: {line}"
        );
        std::fs::write(
            db.join("test.hdb"),
            format!("{md5}:{size}:Ferry.Test.EICAR\n"),
        )
        .expect("test.hdb");
        let socket = dir.path().join("clamd.sock");
        let conf = dir.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "Foreground yes\nLocalSocket {}\nDatabaseDirectory {}\nTemporaryDirectory {}\nLogFile {}\nLogTime yes\n{extra}\n",
                socket.display(),
                db.display(),
                tmp.display(),
                dir.path().join("clamd.log").display()
            ),
        )
        .expect("clamd.conf");
        let child = Command::new(&clamd)
            .arg(format!("--config-file={}", conf.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn clamd");
        let mut c = Clamd {
            child: Some(child),
            dir,
            socket,
        };
        c.wait_ready();
        Some(c)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("clamd.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + CLAMD_START_LIMIT;
        let probe = ferry_guard::Clamd::new(&self.socket, Duration::from_secs(5), 1);
        loop {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("clamd exited ({st}) before listening:\n{}", self.log());
            }
            if probe.version().is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "clamd not listening after {CLAMD_START_LIMIT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills clamd now (SIGKILL: no goodbye on open connections).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The import profile of these tests, scanning with clamd at `socket`.
fn settings(socket: &Path, on_unavailable: &str) -> serde_json::Value {
    serde_json::json!({
        "allowed_types": ["text/plain", "text/csv", "application/json", DOCX],
        "archives": { "allowed": true, "formats": ["zip", "tar", "gzip"], "max_depth": 3 },
        "office": { "action": "review" },
        "malware": {
            "engine": "clamd",
            "socket": socket.to_str().expect("utf-8"),
            "timeout_ms": 10_000,
            "on_unavailable": on_unavailable,
            "max_signature_age_days": 7,
        }
    })
}

fn guard_with(settings: serde_json::Value) -> Guard {
    let p = Profile::from_settings("import", &settings, &ferry_guard::FsLists).expect("profile");
    Guard::new(p)
}

fn guard(c: &Clamd) -> Guard {
    guard_with(settings(&c.socket, "refuse"))
}

fn inspect(g: &Guard, data: &[u8], name: &str) -> Report {
    g.inspect_bytes(data, name, "").expect("no machine error").0
}

/// Asserts EICAR was found in `member` (None: the package as a whole).
fn assert_found(r: &Report, member: Option<&str>) {
    assert_eq!(r.verdict, Verdict::Reject, "{r:#?}");
    let m = r.malware.as_ref().expect("a malware section");
    assert_eq!(m.status, ScanStatus::Found, "{r:#?}");
    assert_eq!(m.detections.len(), 1, "{r:#?}");
    assert_eq!(m.detections[0].signature, SIGNATURE);
    assert_eq!(m.detections[0].member.as_deref(), member, "{r:#?}");
    assert!(
        m.engine_version
            .as_deref()
            .is_some_and(|v| v.starts_with("ClamAV ")),
        "{r:#?}"
    );
    assert!(
        r.findings
            .iter()
            .any(|f| f.detector == "clamav" && f.pattern.as_deref() == Some(SIGNATURE)),
        "{r:#?}"
    );
    assert!(
        r.reasons.iter().any(|x| x.contains(SIGNATURE)),
        "{:?}",
        r.reasons
    );
}

// ---- archives, written by hand (the guard's own tests do the same) ------

/// A zip archive with stored (uncompressed) members.
fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    ferry_daemon::testkit::stored_zip(entries)
}

/// A ustar archive of regular files.
fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    ferry_daemon::testkit::ustar(entries)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// A minimal .docx with `extra` parts.
fn docx(extra: &[(&str, &[u8])]) -> Vec<u8> {
    let types = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/></Types>"#;
    let rels = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#;
    let doc = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>Quarterly report</w:t></w:r></w:p></w:body></w:document>"#;
    let mut entries: Vec<(&str, &[u8])> = vec![
        ("[Content_Types].xml", types),
        ("_rels/.rels", rels),
        ("word/document.xml", doc),
    ];
    entries.extend_from_slice(extra);
    zip(&entries)
}

const CSV: &[u8] = b"county,year,households\nXinjian,2025,1200\nAnyi,2025,88\n";
const JSON: &[u8] = br#"{"dataset":"rainfall","values":[12.5,8.0,0.0]}"#;

/// clamd that does not look into archives itself (`ScanArchive no`): a
/// detection inside one can only come from the guard's own walker, which
/// sends every member on its own.
const NO_ARCHIVES: &str = "ScanArchive no\nScanOLE2 no\n";

#[test]
fn eicar_plain_is_refused_with_signature_and_engine_version() {
    let Some(c) = Clamd::start("") else { return };
    let r = inspect(&guard(&c), EICAR, "readme.txt");
    assert_found(&r, None);
    let m = r.malware.as_ref().expect("malware");
    // Refused at once: the package was not inspected any further.
    assert_eq!(m.streams, 1);
    assert_eq!(m.bytes, EICAR.len() as u64);
    assert_eq!(r.digest_after, None);
    // The report (what goes to the audit log) never holds the content.
    let json = serde_json::to_string(&r).expect("json");
    assert!(!json.contains("EICAR-STANDARD"), "{json}");
}

#[test]
fn eicar_in_a_zip_is_found_by_clamd_and_by_the_member_scan() {
    let z = zip(&[("counts.csv", CSV), ("notes/readme.txt", EICAR)]);
    // clamd looking into the zip itself: found in the package as a whole.
    {
        let Some(c) = Clamd::start("") else { return };
        assert_found(&inspect(&guard(&c), &z, "data.zip"), None);
    }
    // clamd blind to archives: the member, sent on its own, is found.
    let Some(c) = Clamd::start(NO_ARCHIVES) else {
        return;
    };
    let r = inspect(&guard(&c), &z, "data.zip");
    assert_found(&r, Some("notes/readme.txt"));
    let m = r.malware.as_ref().expect("malware");
    assert_eq!(m.streams, 3, "the zip, the CSV and the text: {m:?}");
}

#[test]
fn eicar_in_a_zip_in_a_zip_is_found() {
    let Some(c) = Clamd::start(NO_ARCHIVES) else {
        return;
    };
    let inner = zip(&[("counts.csv", CSV), ("readme.txt", EICAR)]);
    let outer = zip(&[("summary.json", JSON), ("inner.zip", &inner)]);
    assert_found(
        &inspect(&guard(&c), &outer, "outer.zip"),
        Some("inner.zip!readme.txt"),
    );
}

#[test]
fn eicar_embedded_in_a_docx_is_found() {
    let Some(c) = Clamd::start(NO_ARCHIVES) else {
        return;
    };
    // Without the scan this document would only be held for review (an
    // embedded object, office.action = "review"); the scan refuses it.
    let d = docx(&[("word/embeddings/oleObject1.bin", EICAR)]);
    let r = inspect(&guard(&c), &d, "report.docx");
    assert_found(&r, Some("word/embeddings/oleObject1.bin"));
    let clean = inspect(&guard(&c), &docx(&[]), "report.docx");
    assert_eq!(clean.verdict, Verdict::Pass, "{clean:#?}");
}

#[test]
fn eicar_in_a_tar_gz_is_found() {
    let Some(c) = Clamd::start(NO_ARCHIVES) else {
        return;
    };
    let t = gzip(&tar(&[
        ("data/counts.csv", CSV),
        ("data/readme.txt", EICAR),
    ]));
    let r = inspect(&guard(&c), &t, "data.tar.gz");
    assert_eq!(r.verdict, Verdict::Reject, "{r:#?}");
    let m = r.malware.as_ref().expect("malware");
    assert_eq!(m.status, ScanStatus::Found, "{r:#?}");
    let at = m.detections[0].member.as_deref().unwrap_or_default();
    assert!(at.ends_with("data/readme.txt"), "{at}");
    assert_eq!(m.detections[0].signature, SIGNATURE);
}

#[test]
fn a_clean_corpus_passes_with_every_member_scanned() {
    let Some(c) = Clamd::start("") else { return };
    let g = guard(&c);
    let text = "Rainfall stayed below the seasonal mean.\n".repeat(1000);
    let corpus: Vec<(&str, Vec<u8>)> = vec![
        ("counts.csv", CSV.to_vec()),
        ("rain.json", JSON.to_vec()),
        ("notes.txt", text.clone().into_bytes()),
        (
            "bundle.zip",
            zip(&[("a.csv", CSV), ("b.json", JSON), ("c.txt", text.as_bytes())]),
        ),
        (
            "bundle.tar.gz",
            gzip(&tar(&[("a.csv", CSV), ("c.txt", text.as_bytes())])),
        ),
        ("report.docx", docx(&[])),
    ];
    for (name, data) in &corpus {
        let r = inspect(&g, data, name);
        assert_eq!(r.verdict, Verdict::Pass, "{name}: {r:#?}");
        let m = r.malware.as_ref().expect("malware");
        assert_eq!(m.status, ScanStatus::Clean, "{name}");
        assert_eq!(
            m.streams,
            1 + r.members,
            "{name}: the package and each member"
        );
        assert_eq!(r.digest_after, r.digest_before, "{name}: unchanged");
    }
}

/// A socket in front of clamd that passes on the first `pass` connections
/// and then kills clamd: the engine stops in the middle of a package.
fn killing_proxy(clamd: Arc<Mutex<Clamd>>, pass: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("proxy.sock");
    let l = UnixListener::bind(&path).expect("bind");
    let target = clamd.lock().expect("lock").socket.clone();
    std::thread::spawn(move || {
        for (i, c) in l.incoming().enumerate() {
            let Ok(c) = c else { return };
            if i >= pass {
                if let Ok(mut d) = clamd.lock() {
                    d.stop();
                }
                // This connection and the socket go with clamd.
                return;
            }
            let Ok(up) = UnixStream::connect(&target) else {
                continue;
            };
            let (mut a, mut b) = (
                c.try_clone().expect("clone"),
                up.try_clone().expect("clone"),
            );
            let (mut c2, mut up2) = (c, up);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut a, &mut b);
                let _ = b.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut up2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (dir, path)
}

#[test]
fn clamd_stopped_mid_package_is_never_a_pass() {
    let Some(c) = Clamd::start("") else { return };
    let c = Arc::new(Mutex::new(c));
    // Connections: the version probe, the package, then its members;
    // clamd is killed at the fourth, in the middle of the archive.
    let (_d, proxy) = killing_proxy(c.clone(), 3);
    let members: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| (format!("part{i}.csv"), CSV.to_vec()))
        .collect();
    let entries: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let z = zip(&entries);
    for (on_unavailable, hold) in [("hold", true), ("refuse", false)] {
        let g = guard_with(settings(&proxy, on_unavailable));
        let r = inspect(&g, &z, "parts.zip");
        assert_eq!(r.verdict, Verdict::Reject, "{r:#?}");
        let m = r.malware.as_ref().expect("malware");
        assert_eq!(m.status, ScanStatus::Unavailable, "{r:#?}");
        assert_eq!(m.hold, hold, "{on_unavailable}");
        assert!(m.error.is_some(), "{r:#?}");
        if hold {
            // Died in the middle: the package and its first member were
            // scanned, the second member was not.
            assert_eq!(m.streams, 2, "{r:#?}");
        }
        assert!(
            r.reasons
                .iter()
                .any(|x| x.contains("not scanned for malware, so not passed")),
            "{:?}",
            r.reasons
        );
        assert_eq!(r.digest_after, None);
    }
    // The first package got through its version probe and whole-file scan
    // before clamd died; the second one meets a dead engine at once.
    let g = guard_with(settings(&c.lock().expect("lock").socket, "hold"));
    let r = inspect(&g, CSV, "counts.csv");
    assert_eq!(r.verdict, Verdict::Reject);
    let m = r.malware.as_ref().expect("malware");
    assert_eq!(m.status, ScanStatus::Unavailable);
    assert!(
        m.error
            .as_deref()
            .unwrap_or_default()
            .contains("not reachable"),
        "{m:?}"
    );
}

#[test]
fn a_reply_that_never_comes_fails_closed_in_time() {
    // Not clamd at all: a socket that answers VERSION and then takes the
    // data and never says a word. Needs no clamd, so never skipped.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("silent.sock");
    let l = UnixListener::bind(&path).expect("bind");
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || {
                let mut cmd = [0u8; 9];
                if c.read_exact(&mut cmd).is_err() {
                    return;
                }
                if &cmd == b"zVERSION\0" {
                    let _ = c.write_all(b"ClamAV 1.4.3\0");
                    return;
                }
                // Swallow everything, answer nothing.
                let mut sink = [0u8; 4096];
                while matches!(c.read(&mut sink), Ok(n) if n > 0) {}
                std::thread::sleep(Duration::from_secs(60));
            });
        }
    });
    let mut s = settings(&path, "hold");
    s["malware"]["timeout_ms"] = serde_json::json!(500);
    let g = guard_with(s);
    let t = Instant::now();
    let r = inspect(&g, CSV, "counts.csv");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(r.verdict, Verdict::Reject, "{r:#?}");
    let m = r.malware.as_ref().expect("malware");
    assert_eq!(m.status, ScanStatus::Unavailable, "{r:#?}");
    assert!(m.hold);
    assert_eq!(m.on_unavailable, OnUnavailable::Hold);
    assert!(
        m.error
            .as_deref()
            .unwrap_or_default()
            .contains("did not answer within 500 ms"),
        "{m:?}"
    );
}

#[test]
fn over_stream_max_length_is_not_a_pass() {
    let Some(c) = Clamd::start("StreamMaxLength 1M\n") else {
        return;
    };
    let big = "Rainfall stayed below the seasonal mean.\n".repeat(60_000);
    assert!(big.len() > 2 << 20);
    // The profile believes clamd takes more than it does: clamd says so.
    let mut s = settings(&c.socket, "hold");
    s["malware"]["max_stream_bytes"] = serde_json::json!(8 << 20);
    let r = inspect(&guard_with(s), big.as_bytes(), "notes.txt");
    assert_eq!(r.verdict, Verdict::Reject, "{r:#?}");
    let m = r.malware.as_ref().expect("malware");
    assert_eq!(m.status, ScanStatus::Unscannable, "{r:#?}");
    assert!(!m.hold, "retrying will not help");
    assert!(
        m.error
            .as_deref()
            .unwrap_or_default()
            .contains("StreamMaxLength"),
        "{m:?}"
    );
    // The profile's own limit: refused before anything is sent.
    let mut s = settings(&c.socket, "hold");
    s["malware"]["max_stream_bytes"] = serde_json::json!(1 << 20);
    let r = inspect(&guard_with(s), big.as_bytes(), "notes.txt");
    let m = r.malware.as_ref().expect("malware");
    assert_eq!(m.status, ScanStatus::Unscannable, "{r:#?}");
    assert_eq!(m.bytes, 0);
    assert!(
        m.error
            .as_deref()
            .unwrap_or_default()
            .contains("malware.max_stream_bytes"),
        "{m:?}"
    );
}

// ---- through real ferryd --------------------------------------------------

/// An import channel whose profile scans with the clamd at `socket` on
/// both sides, packages held while the engine cannot answer.
fn ferry_policy(socket: &Path, spool: &Path) -> String {
    format!(
        r#"version = 1

[policy]
name = "clamav-test"
time_zone = "Asia/Shanghai"

[identity.feed]
description = "The public-data feed"
cn = "registry-feed"
role = "pusher"

[identity.spool]
description = "This link's spool"
spool = "e2e"

[spool.e2e]
description = "The spool"
dir = "{}"
channel = "import"
schedule = "continuous"

[profile.import]
description = "Public data brought in, scanned for malware"
allowed_types = ["text/csv", "text/plain"]
archives = {{ allowed = true, formats = ["zip"], max_depth = 2 }}
malware = {{ engine = "clamd", socket = "{}", timeout_ms = 10000, on_unavailable = "hold", max_signature_age_days = 7 }}

[channel.import]
description = "Import, scanned on both sides"
direction = "import"
link = "e2e"
destination = "outbox"
profile = "import"
egress_profile = "import"

[[rule]]
id = "R-import"
description = "The feed pushes"
effect = "allow"
identities = ["feed", "spool"]
channels = ["import"]
"#,
        spool.display(),
        socket.display()
    )
}

/// `curl` a file to the import channel: HTTP code and Retry-After (in one
/// string, `503 30`), and the body.
fn push_file(port: u16, ca: &SiteCa, clients: &Path, name: &str, data: &Path) -> (String, String) {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-o", "-"])
        .args(["-w", "\n%{http_code} %header{retry-after}"])
        .arg("--cacert")
        .arg(ca.crt())
        .arg("--cert")
        .arg(clients.join("registry-feed.crt"))
        .arg("--key")
        .arg(clients.join("registry-feed.key"))
        .args(["-H", &format!("X-Ferry-File-Name: {name}")])
        .args(["-H", "Content-Type: application/octet-stream"])
        .args(["--data-binary", &format!("@{}", path_str(data))])
        .arg(format!(
            "https://127.0.0.1:{port}/v1/channels/import/packages"
        ))
        .output()
        .expect("curl");
    let t = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = t.rsplit_once('\n').unwrap_or(("", ""));
    (code.trim().to_owned(), body.to_owned())
}

/// Promise: a real ferryd refuses an EICAR zip at ingest (403, the
/// signature named in the answer and in the `guard.inspected` audit
/// record), lets clean data cross (scanned on both sides), shows the
/// engine in its status, and once clamd is stopped holds packages at the
/// sender (503 with Retry-After) or in the spool, with an alarm, passing
/// none.
#[test]
fn ferryd_refuses_an_eicar_zip_and_holds_while_clamd_is_down() {
    let Some(mut c) = Clamd::start(NO_ARCHIVES) else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().to_path_buf();
    let Site {
        tb,
        ca,
        clients,
        port,
    } = Site::new(&root);
    let policy_text = ferry_policy(&c.socket, &tb.spool);
    let (audits, ingress, egress) = start(&root, &tb, &ca, port, [&policy_text, &policy_text]);

    // `ferryctl inspect` with the same profile says the same as ferryd.
    let z = root.join("data.zip");
    std::fs::write(&z, zip(&[("counts.csv", CSV), ("notes/readme.txt", EICAR)])).expect("zip");
    let policy_file = root.join("ingress/policy.toml");
    let o = ctl(&[
        "inspect",
        "--policy",
        path_str(&policy_file),
        "--profile",
        "import",
        path_str(&z),
    ]);
    let shown = text(&o);
    assert_eq!(o.status.code(), Some(1), "{shown}");
    assert!(shown.contains("malware: found"), "{shown}");
    assert!(
        shown.contains(&format!("signature {SIGNATURE} in notes/readme.txt")),
        "{shown}"
    );

    let clean = root.join("counts.csv");
    std::fs::write(&clean, CSV).expect("csv");
    let (code, body) = push_file(port, &ca, &clients, "counts.csv", &clean);
    assert_eq!(code, "202", "{body}");
    let (code, body) = push_file(port, &ca, &clients, "data.zip", &z);
    assert_eq!(code, "403", "{body}");
    assert!(body.contains(SIGNATURE), "{body}");
    wait_for(Duration::from_secs(30), "the clean file delivered", || {
        outbox_files(&tb.outbox) == vec!["counts.csv".to_string()]
    });
    let st = status(&tb.ingress_config).expect("status");
    // The scans above ran inside ferryd's sandbox (seccomp allow-list, and
    // Landlock where the kernel has it): connecting to clamd is allowed.
    assert_eq!(st["hardening"]["seccomp_action"], "kill_process", "{st}");
    let m = &st["malware"];
    assert_eq!(m["scanned"], 2, "{st}");
    assert_eq!(m["detected"], 1, "{st}");
    assert_eq!(m["engines"][0]["reachable"], true, "{st}");
    assert!(
        m["engines"][0]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("ClamAV")),
        "{st}"
    );
    // Custom signatures only: the database's age cannot be known.
    assert!(
        m["engines"][0]["warning"]
            .as_str()
            .is_some_and(|w| w.contains("unknown")),
        "{st}"
    );
    assert_eq!(st["rejected"], 1, "{st}");
    let est = status(&tb.egress_config).expect("egress status");
    assert_eq!(
        est["malware"]["scanned"], 1,
        "the egress side scans again: {est}"
    );

    // clamd stops: held at the sender, alarmed, never passed.
    c.stop();
    let (code, body) = push_file(port, &ca, &clients, "counts-2.csv", &clean);
    assert_eq!(
        code, "503 30",
        "held at the sender, try again in 30 s: {body}"
    );
    assert!(body.contains("on_unavailable"), "{body}");
    let st = status(&tb.ingress_config).expect("status");
    assert_eq!(st["malware"]["unavailable"], 1, "{st}");
    assert_eq!(st["malware"]["held"], 1, "{st}");
    let alarms = st["alarms"].to_string();
    assert!(alarms.contains("malware scan failed:"), "{alarms}");
    assert_eq!(st["channels"]["import"]["accepted"], 1, "{st}");
    // A spool file waits in the spool (not set aside, not queued).
    ferry_daemon::testkit::spool_file(&tb.spool, "late.csv", CSV).expect("spool");
    wait_for(Duration::from_secs(20), "the spool file held", || {
        status(&tb.ingress_config).is_some_and(|st| st["malware"]["held"] == 2)
    });
    // Not asked again at once (the intake backs off for 30 s).
    std::thread::sleep(Duration::from_millis(1500));
    assert!(tb.spool.join("late.csv").exists(), "left in the spool");
    assert!(!tb.spool.join(".rejected/late.csv").exists());
    let st = status(&tb.ingress_config).expect("status");
    assert_eq!(st["channels"]["import"]["accepted"], 1, "{st}");
    let shown = text(&ctl(&["status", "--config", path_str(&tb.ingress_config)]));
    assert!(shown.contains("malware scans"), "{shown}");
    assert!(shown.contains("ALARM: malware scan failed"), "{shown}");
    ingress.stop();
    egress.stop();
    assert_eq!(outbox_files(&tb.outbox), vec!["counts.csv".to_string()]);

    // The audit log: the signature and the engine for the refusal, the
    // unscanned hold as a failure, never the content.
    let recs = audit_records(&audits[0], "guard.inspected");
    let refused = recs
        .iter()
        .find(|r| r.to_string().contains("\"malware_signature\""))
        .unwrap_or_else(|| panic!("no record with the signature: {recs:#?}"));
    let r = refused.to_string();
    assert!(r.contains(SIGNATURE), "{r}");
    assert!(r.contains("ClamAV"), "{r}");
    assert!(r.contains("refused"), "{r}");
    let unscanned = recs
        .iter()
        .filter(|r| r.to_string().contains("\"malware\":\"unavailable\""))
        .count();
    assert_eq!(unscanned, 2, "the push and one spool attempt: {recs:#?}");
    let all = ctl_ok(&["audit", "export", "--dir", path_str(&audits[0])]);
    assert!(!all.contains("EICAR-STANDARD"), "content in the audit log");
}

/// Promise: the egress side scans again on its own. An ingress side whose
/// profile does not scan lets an EICAR zip and a clean file through; the
/// egress side, scanning with its own clamd, delivers the clean file,
/// refuses the zip (never delivered, `package.failed` with the signature
/// in the reason, the `egress refused:` alarm); with its clamd stopped it
/// refuses even a clean file (nothing waits on this side) and raises the
/// malware alarm.
#[test]
fn the_egress_side_scans_again_and_refuses_without_an_engine() {
    let Some(mut c) = Clamd::start(NO_ARCHIVES) else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().to_path_buf();
    let Site {
        tb,
        ca,
        clients,
        port,
    } = Site::new(&root);
    let scanning = ferry_policy(&c.socket, &tb.spool);
    let not_scanning: String = scanning
        .lines()
        .filter(|l| !l.starts_with("malware = "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(scanning, not_scanning);
    let (audits, ingress, egress) = start(&root, &tb, &ca, port, [&not_scanning, &scanning]);

    let z = root.join("data.zip");
    std::fs::write(&z, zip(&[("counts.csv", CSV), ("notes/readme.txt", EICAR)])).expect("zip");
    let clean = root.join("counts.csv");
    std::fs::write(&clean, CSV).expect("csv");
    for (name, path) in [("data.zip", &z), ("counts.csv", &clean)] {
        let (code, body) = push_file(port, &ca, &clients, name, path);
        assert_eq!(code, "202", "the ingress side does not scan: {body}");
    }
    wait_for(Duration::from_secs(30), "the clean file delivered", || {
        outbox_files(&tb.outbox) == vec!["counts.csv".to_string()]
    });
    wait_for(Duration::from_secs(30), "the zip refused", || {
        status(&tb.egress_config).is_some_and(|st| st["malware"]["detected"] == 1)
    });
    let st = status(&tb.egress_config).expect("status");
    assert!(st["alarms"].to_string().contains("egress refused:"), "{st}");

    // The egress side's clamd stops: a clean file is refused, not held.
    c.stop();
    let (code, body) = push_file(port, &ca, &clients, "counts-2.csv", &clean);
    assert_eq!(code, "202", "{body}");
    wait_for(
        Duration::from_secs(30),
        "the unscanned file refused",
        || status(&tb.egress_config).is_some_and(|st| st["malware"]["unavailable"] == 1),
    );
    let st = status(&tb.egress_config).expect("status");
    let alarms = st["alarms"].to_string();
    assert!(alarms.contains("malware scan failed:"), "{alarms}");
    assert_eq!(st["rejected"], 2, "{st}");
    ingress.stop();
    egress.stop();
    assert_eq!(outbox_files(&tb.outbox), vec!["counts.csv".to_string()]);
    let failed = audit_records(&audits[1], "package.failed");
    assert_eq!(failed.len(), 2, "{failed:#?}");
    assert!(
        failed.iter().any(|r| r.to_string().contains(SIGNATURE)),
        "{failed:#?}"
    );
    let rescanned = audit_records(&audits[1], "guard.reinspected");
    assert!(
        rescanned
            .iter()
            .any(|r| r.to_string().contains("\"malware\":\"unavailable\"")),
        "{rescanned:#?}"
    );
}

/// A testbed with a site CA, the ingest server's certificate and the
/// `registry-feed` client's, and a free port for ingest.
struct Site {
    tb: ferry_daemon::testkit::Testbed,
    ca: SiteCa,
    clients: PathBuf,
    port: u16,
}

impl Site {
    fn new(root: &Path) -> Site {
        let tb = testbed(root, |_| {});
        let ca = SiteCa::init(&root.join("ca"));
        ca.server(&root.join("ingress/tls"), "ingest");
        let clients = root.join("clients");
        ca.client(&clients, "registry-feed", "pusher");
        Site {
            tb,
            ca,
            clients,
            port: free_tcp_port(),
        }
    }
}

/// Starts both daemons of `tb`, the ingress side under `policies[0]` with
/// HTTPS ingest on `port`, the egress side under `policies[1]`, each with
/// its own audit log (returned in that order).
fn start(
    root: &Path,
    tb: &ferry_daemon::testkit::Testbed,
    ca: &SiteCa,
    port: u16,
    policies: [&str; 2],
) -> (Vec<PathBuf>, Daemon, Daemon) {
    let mut audits = Vec::new();
    for ((side, config), text) in [
        ("ingress", &tb.ingress_config),
        ("egress", &tb.egress_config),
    ]
    .into_iter()
    .zip(policies)
    {
        std::fs::write(root.join(side).join("policy.toml"), text).expect("policy");
        append_config(config, "[policy]\nfile = \"policy.toml\"\n");
        audits.push(with_audit(root, config, side));
    }
    append_config(&tb.ingress_config, &ingest_section(port, ca, ""));
    let egress = Daemon::start(&tb.egress_config);
    let mut ingress = Daemon::start(&tb.ingress_config);
    ingress.wait_listening(&[port], "ingest listening");
    (audits, ingress, egress)
}

// ---- signatures brought in over the link -----------------------------------

/// `ferry_policy` with a second channel, `av-signatures`, that carries
/// signature files (no content profile: a database is not a document).
fn signature_policy(socket: &Path, spool: &Path) -> String {
    format!(
        r#"{}
[channel.av-signatures]
description = "ClamAV databases from the non-classified side"
direction = "import"
link = "e2e"
destination = "outbox"

[[rule]]
id = "R-signatures"
description = "The feed brings signatures"
effect = "allow"
identities = ["feed"]
channels = ["av-signatures"]
"#,
        ferry_policy(socket, spool)
    )
}

/// Pushes `data` as `name` on the `av-signatures` channel; the HTTP code.
fn push_signature(site: &Site, name: &str, data: &[u8]) -> String {
    let f = site
        .tb
        .spool
        .parent()
        .expect("root")
        .join(format!("push-{name}"));
    std::fs::write(&f, data).expect("write");
    let o = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg("--cacert")
        .arg(site.ca.crt())
        .arg("--cert")
        .arg(site.clients.join("registry-feed.crt"))
        .arg("--key")
        .arg(site.clients.join("registry-feed.key"))
        .args(["-H", &format!("X-Ferry-File-Name: {name}")])
        .args(["-H", "Content-Type: application/octet-stream"])
        .args(["--data-binary", &format!("@{}", path_str(&f))])
        .arg(format!(
            "https://127.0.0.1:{}/v1/channels/av-signatures/packages",
            site.port
        ))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// An unsigned container `daily.cud` holding `hdb` (as `daily.hdb`), built
/// by `sigtool --build` with `version`; with `age_days`, its header and
/// `daily.info` are dated that many days back (by Python's tarfile, MD5
/// recomputed), as an old database that came late would be.
fn daily_cud(dir: &Path, hdb: &str, version: u32, age_days: u32) -> Option<Vec<u8>> {
    let build = dir.join(format!("build-{version}"));
    std::fs::create_dir_all(&build).expect("build dir");
    std::fs::write(build.join("daily.hdb"), hdb).expect("hdb");
    std::fs::write(build.join("COPYING"), "test database\n").expect("COPYING");
    let mut child = Command::new(find_tool("sigtool")?)
        .args(["--build=daily.cud", "--unsigned", "--max-bad-sigs=0"])
        .current_dir(&build)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sigtool");
    // It asks for the version number and the builder's name.
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{version}\nferry-test\n").as_bytes())
        .expect("answer sigtool");
    assert!(child.wait().expect("sigtool").success(), "sigtool --build");
    let cud = build.join("daily.cud");
    if age_days > 0 {
        let script = r#"
import sys, tarfile, io, time, hashlib
p, days = sys.argv[1], int(sys.argv[2])
d = open(p, 'rb').read()
t = tarfile.open(fileobj=io.BytesIO(d[512:]))
files = [(m.name, t.extractfile(m).read()) for m in t.getmembers()]
when_s = int(time.time()) - days * 86400
when = time.strftime('%d %b %Y %H-%M +0000', time.gmtime(when_s))
def redate(line):
    f = line.split(':'); f[1] = when; f[8] = str(when_s); return ':'.join(f)
out = io.BytesIO()
with tarfile.open(fileobj=out, mode='w:gz') as z:
    for name, data in files:
        if name.endswith('.info'):
            lines = data.decode().split('\n'); lines[0] = redate(lines[0]); data = '\n'.join(lines).encode()
        ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = 0o644
        z.addfile(ti, io.BytesIO(data))
body = out.getvalue()
h = d[:512].rstrip(b' \0').decode().split(':')
h = redate(':'.join(h)).split(':'); h[5] = hashlib.md5(body).hexdigest()
head = ':'.join(h).encode()
open(p, 'wb').write(head + b' ' * (512 - len(head)) + body)
"#;
        let ok = Command::new("python3")
            .args(["-c", script])
            .arg(&cud)
            .arg(age_days.to_string())
            .status()
            .ok()?
            .success();
        assert!(ok, "redating daily.cud");
    }
    Some(std::fs::read(cud).expect("daily.cud"))
}

/// What the test's clamd says of `data`.
fn scan(c: &Clamd, data: &[u8]) -> ferry_guard::Detection {
    ferry_guard::Clamd::new(&c.socket, Duration::from_secs(10), 1 << 20)
        .scan_reader(&mut &data[..])
        .expect("clamd answers")
}

/// The database directory's files and contents.
fn database(c: &Clamd) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(c.dir.path().join("db"))
        .expect("db dir")
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    v.sort();
    v
}

/// `ferryctl signatures apply`: exit code and what it printed.
fn apply(config: &Path) -> (i32, String) {
    let o = Command::new(ferryctl())
        .args(["signatures", "apply", "--config"])
        .arg(config)
        .output()
        .expect("ferryctl");
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// Promise (docs/operations.md, "Bringing ClamAV signatures in"): a
/// signature file reaches clamd only over the link and only verified. A
/// new `.hdb` crosses two real ferryd, is applied and loaded (a file clean
/// before is detected after); a file with a name that is not a database,
/// a database clamscan cannot load, an unsigned container without
/// `allow_unsigned`-style trust broken by one flipped byte, and an old
/// container sent again are each refused — the database directory byte
/// for byte as it was, clamd still answering, the refusal audited,
/// counted and alarmed by the egress ferryd; and a container dated 40
/// days back makes `ferryctl selfcheck` warn about the database's age.
#[test]
fn signature_packages_are_verified_applied_and_refused_through_ferry() {
    let Some(c) = Clamd::start(NO_ARCHIVES) else {
        return;
    };
    if Command::new("python3").arg("-V").output().is_err() {
        skip("python3 not found: the dated test database cannot be made");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().to_path_buf();
    let site = Site::new(&root);
    let policy = signature_policy(&c.socket, &site.tb.spool);
    append_config(
        &site.tb.egress_config,
        &format!(
            "\n[signatures]\nchannel = \"av-signatures\"\ndatabase_dir = \"{}\"\nsocket = \"{}\"\nallow_unsigned = true\n",
            c.dir.path().join("db").display(),
            c.socket.display()
        ),
    );
    let (audits, ingress, egress) = start(&root, &site.tb, &site.ca, site.port, [&policy, &policy]);

    // A marker no signature knows yet.
    let marker = b"ferry signature import marker: parcel survey 2026\n";
    assert_eq!(scan(&c, marker), ferry_guard::Detection::Clean);
    let mfile = root.join("marker.bin");
    std::fs::write(&mfile, marker).expect("marker");
    let out = Command::new(find_tool("sigtool").expect("sigtool"))
        .arg("--md5")
        .arg(&mfile)
        .output()
        .expect("sigtool");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let (md5, size) = {
        let mut f = line.splitn(3, ':');
        (
            f.next().unwrap_or("").to_owned(),
            f.next().unwrap_or("").to_owned(),
        )
    };
    let hdb = format!("{md5}:{size}:Ferry.Test.Marker\n");

    // 1. A good .hdb crosses and is applied.
    assert_eq!(push_signature(&site, "marker.hdb", hdb.as_bytes()), "202");
    wait_for(Duration::from_secs(30), "marker.hdb delivered", || {
        outbox_files(&site.tb.outbox).contains(&"marker.hdb".to_string())
    });
    let (code, text) = apply(&site.tb.egress_config);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("applied  marker.hdb"), "{text}");
    assert!(
        outbox_files(&site.tb.outbox).is_empty(),
        "taken out of the outbox"
    );
    assert!(database(&c)
        .iter()
        .any(|(n, d)| n == "marker.hdb" && d == hdb.as_bytes()));
    wait_for(Duration::from_secs(60), "clamd detects the marker", || {
        scan(&c, marker)
            == ferry_guard::Detection::Found(vec!["Ferry.Test.Marker.UNOFFICIAL".into()])
    });

    // 2. Attacks: none of them changes the database.
    let before = database(&c);
    let cud5 = daily_cud(&root, &hdb, 5, 0).expect("daily.cud");
    let mut flipped = cud5.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x55;
    for (name, data) in [
        ("clamd.conf", b"DatabaseDirectory /tmp\n".to_vec()),
        ("broken.ndb", b"this is not a signature line\n".to_vec()),
        ("daily.cud", flipped),
    ] {
        assert_eq!(push_signature(&site, name, &data), "202", "{name}");
    }
    wait_for(Duration::from_secs(30), "three files delivered", || {
        outbox_files(&site.tb.outbox).len() == 3
    });
    let (code, text) = apply(&site.tb.egress_config);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("REFUSED  clamd.conf"), "{text}");
    assert!(
        text.contains("REFUSED  broken.ndb") && text.contains("clamscan could not load it"),
        "{text}"
    );
    assert!(
        text.contains("REFUSED  daily.cud") && text.contains("does not match the MD5"),
        "{text}"
    );
    assert_eq!(database(&c), before, "nothing of a refused file is used");
    assert_eq!(
        scan(&c, marker),
        ferry_guard::Detection::Found(vec!["Ferry.Test.Marker.UNOFFICIAL".into()])
    );
    let st = status(&site.tb.egress_config).expect("status");
    assert_eq!(st["signatures_refused"], 3, "{st}");
    assert_eq!(st["signatures_applied"], 1, "{st}");
    assert!(st["alarms"].to_string().contains("signatures:"), "{st}");

    // 3. A container, then the same version again (a replay), and an
    // older database dated 40 days back under a newer version.
    assert_eq!(push_signature(&site, "daily.cud", &cud5), "202");
    wait_for(Duration::from_secs(30), "daily.cud delivered", || {
        outbox_files(&site.tb.outbox).len() == 1
    });
    let (code, text) = apply(&site.tb.egress_config);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("applied  daily.cud") && text.contains("version 5"),
        "{text}"
    );
    wait_for(Duration::from_secs(60), "clamd reports database 5", || {
        ferry_guard::Clamd::new(&c.socket, Duration::from_secs(5), 1)
            .version()
            .is_ok_and(|v| v.database_version == Some(5))
    });
    assert_eq!(push_signature(&site, "daily.cud", &cud5), "202");
    wait_for(Duration::from_secs(30), "the replay delivered", || {
        outbox_files(&site.tb.outbox).len() == 1
    });
    let (code, text) = apply(&site.tb.egress_config);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("version 5 is not newer than version 5"),
        "{text}"
    );
    let old = daily_cud(&root, &hdb, 6, 40).expect("dated daily.cud");
    assert_eq!(push_signature(&site, "daily.cud", &old), "202");
    wait_for(
        Duration::from_secs(30),
        "the dated database delivered",
        || outbox_files(&site.tb.outbox).len() == 1,
    );
    let (code, text) = apply(&site.tb.egress_config);
    assert_eq!(code, 0, "{text}");
    wait_for(Duration::from_secs(60), "clamd reports database 6", || {
        ferry_guard::Clamd::new(&c.socket, Duration::from_secs(5), 1)
            .version()
            .is_ok_and(|v| v.database_version == Some(6))
    });
    wait_for(
        Duration::from_secs(60),
        "status shows the database's age",
        || {
            status(&site.tb.egress_config).is_some_and(|st| {
                st["malware"]["engines"][0]["database_age_days"]
                    .as_u64()
                    .is_some_and(|d| d >= 40)
            })
        },
    );
    let o = Command::new(ferryctl())
        .args(["selfcheck", "--config"])
        .arg(&site.tb.egress_config)
        .output()
        .expect("selfcheck");
    let sc = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(sc.contains("40 days old"), "{sc}");

    // 4. Two databases of one name sent before one run: the second waits
    // as `daily.1.cud`; they are applied in the order they were sent, both
    // under the name they were sent with, so clamd never loads two dailies.
    for v in [7, 8] {
        let cud = daily_cud(&root, &hdb, v, 0).expect("daily.cud");
        assert_eq!(push_signature(&site, "daily.cud", &cud), "202");
        wait_for(Duration::from_secs(30), "daily.cud delivered", || {
            outbox_files(&site.tb.outbox).len() == usize::from(v == 8) + 1
        });
    }
    assert_eq!(
        outbox_files(&site.tb.outbox),
        ["daily.1.cud", "daily.cud"],
        "the name sort puts the newer first"
    );
    let (code, text) = apply(&site.tb.egress_config);
    assert_eq!(code, 0, "{text}");
    let (v7, v8) = (
        text.find("applied  daily.cud").expect("v7 applied"),
        text.rfind("applied  daily.cud").expect("v8 applied"),
    );
    assert!(v7 < v8 && text[v7..].contains("version 7"), "{text}");
    assert!(text[v8..].contains("version 8"), "{text}");
    let names: Vec<String> = database(&c).into_iter().map(|(n, _)| n).collect();
    assert!(
        names.iter().any(|n| n == "daily.cud") && !names.iter().any(|n| n == "daily.1.cud"),
        "{names:?}"
    );
    wait_for(Duration::from_secs(60), "clamd reports database 8", || {
        ferry_guard::Clamd::new(&c.socket, Duration::from_secs(5), 1)
            .version()
            .is_ok_and(|v| v.database_version == Some(8))
    });

    ingress.stop();
    egress.stop();
    // With the egress ferryd down nothing can be recorded: nothing is
    // applied, the file stays in the outbox for the next run.
    let kept = site.tb.outbox.join(".signatures/applied");
    let (file, sidecar) = std::fs::read_dir(&kept)
        .expect("applied dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("marker.hdb"))
        .map(|p| {
            (
                p.clone(),
                PathBuf::from(format!("{}.ferry.json", p.display())),
            )
        })
        .next()
        .expect("the applied marker.hdb");
    std::fs::copy(&file, site.tb.outbox.join("again.hdb")).expect("copy");
    std::fs::copy(&sidecar, site.tb.outbox.join("again.hdb.ferry.json")).expect("copy");
    let before = database(&c);
    let (code, text) = apply(&site.tb.egress_config);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("nothing was applied"), "{text}");
    assert_eq!(database(&c), before);
    assert!(outbox_files(&site.tb.outbox).contains(&"again.hdb".to_string()));
    let applied = audit_records(&audits[1], "signatures.applied");
    let refused = audit_records(&audits[1], "signatures.refused");
    assert_eq!(applied.len(), 5, "{applied:#?}");
    assert!(
        applied.iter().any(|r| r["details"]["file"] == "daily.cud"
            && r["details"]["delivered_as"] == "daily.1.cud"),
        "{applied:#?}"
    );
    assert_eq!(refused.len(), 4, "{refused:#?}");
    for r in &refused {
        assert!(
            r["details"]["reason"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{r}"
        );
    }
    assert!(
        applied.iter().any(|r| r["details"]["version"] == "6"),
        "{applied:#?}"
    );
}
