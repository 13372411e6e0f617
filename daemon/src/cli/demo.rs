//! `ferryctl demo`: both sides of a link as real `ferryd` processes on
//! loopback with a generated CA, certificates, keys, audit logs and a
//! policy; a small land-resources data set pushed through the HTTPS ingest
//! API with `ferryctl push` — one clean package, one the guard masks, one it
//! refuses, one held for approval and then approved — shown delivered (or
//! not) on the egress side, the status of both sides and the audit logs
//! verified, then cleaned up. Exits non-zero unless every step did what it
//! says.
//!
//! Run as root, the approvals use two reviewer accounts (`setpriv` to two
//! spare uids) and the admin plane separates the roles; run as another
//! user, that user holds every role and one approval is needed (a single
//! account cannot be two people).

use crate::DaemonError;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon {
    child: Child,
    name: &'static str,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(5));
    }
}

/// Stops a `ferryd` child the way an operator would: SIGTERM, then
/// SIGKILL if it has not exited within `grace`.
pub fn stop_child(child: &mut Child, grace: Duration) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub(crate) fn ferryd_path() -> Result<PathBuf, DaemonError> {
    let me = std::env::current_exe().map_err(DaemonError::io(Path::new("current_exe")))?;
    let p = me.with_file_name("ferryd");
    if p.exists() {
        Ok(p)
    } else {
        Err(DaemonError::Demo(format!(
            "ferryd not found next to ferryctl ({}); build both binaries (`cargo build --release`)",
            p.display()
        )))
    }
}

fn start(config: &Path, name: &'static str, log: &Path) -> Result<Daemon, DaemonError> {
    let log = std::fs::File::create(log).map_err(DaemonError::io(log))?;
    let child = Command::new(ferryd_path()?)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(DaemonError::io(config))?;
    Ok(Daemon { child, name })
}

/// Two spare uids the demo's reviewers act as (root only).
const REVIEWERS: [u32; 2] = [64_931, 64_932];
/// Their shared group, owning the admin socket's directory.
const ADMINS_GID: u32 = 64_930;

const CLEAN: &str = "county,arable_ha,forest_ha,construction_ha\nXinjian,10234.5,30211.0,5120.2\nAnyi,8012.1,41200.7,3311.9\n";
const NOTICE: &str =
    "Public notice: draft land-use plan for 2026-2035, open for comment until 31 December.\n";
const MEMO: &str = "土地储备会议纪要 秘 密\n第三季度收储计划（草稿）\n";

/// A fake but valid PRC identity number (ISO 7064 MOD 11-2 check).
fn fake_id() -> String {
    const BODY: &str = "36010219800101123";
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = BODY
        .chars()
        .zip(W)
        .map(|(c, w)| c.to_digit(10).unwrap_or(0) * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{BODY}{check}")
}

fn fail(msg: impl Into<String>) -> DaemonError {
    DaemonError::Demo(msg.into())
}

fn ctl(me: &Path, args: &[&str]) -> Result<String, DaemonError> {
    ctl_as(me, None, args).and_then(|(ok, out)| {
        if ok {
            Ok(out)
        } else {
            Err(fail(format!("ferryctl {}: {out}", args.join(" "))))
        }
    })
}

/// `ferryctl ARGS`, as `uid` (with `setpriv`) when given; (success, output).
fn ctl_as(me: &Path, uid: Option<u32>, args: &[&str]) -> Result<(bool, String), DaemonError> {
    let mut cmd = match uid {
        None => Command::new(me),
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={ADMINS_GID}"))
                .arg("--clear-groups")
                .arg(me);
            c
        }
    };
    let out = cmd.args(args).output().map_err(DaemonError::io(me))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or("")
}

fn policy(spool: &Path, words: &Path, reviewers: usize) -> String {
    format!(
        r#"version = 1

[policy]
name = "ferry-demo"
time_zone = "Asia/Shanghai"

[identity.registry-feed]
description = "The land registry's statistics system"
cn = "registry-feed"
role = "pusher"

[identity.spool]
description = "This link's spool (unused in the demo)"
spool = "demo"

[spool.demo]
description = "The spool"
dir = "{spool}"
channel = "public-release"
schedule = "continuous"

[approval.two-person]
reviewers = {reviewers}
roles = ["reviewer"]
expires_after_s = 3600

[profile.public]
description = "What may be published"
allowed_types = ["text/csv", "text/plain", "application/json"]
dirty_words = {{ lists = ["{words}"], action = "reject" }}
# Each kind of personal data masked by its own rule (docs/guard.md,
# "Masking rules"): mobile numbers keep 3 + 4 digits, identity numbers
# hide at least the birth date.
pii = {{ detectors = ["prc_id", "mobile", "bank_card", "email", "uscc"], action = "mask", mask = {{ mobile = {{ keep_prefix = 3, keep_suffix = 4 }}, prc_id = {{ keep_prefix = 6, keep_suffix = 4 }} }} }}

[channel.public-release]
description = "Statistics to the Internet portal"
direction = "release"
link = "demo"
destination = "outbox"
profile = "public"

[channel.reviewed-release]
description = "Notices that two reviewers must release"
direction = "release"
link = "demo"
destination = "outbox"
profile = "public"
approval = "two-person"

[[rule]]
id = "R-feed"
description = "The registry feed publishes"
effect = "allow"
identities = ["registry-feed"]
channels = ["public-release", "reviewed-release"]
"#,
        spool = s(spool),
        words = s(words),
    )
}

/// Runs the demo; with `keep`, leaves everything in that directory.
pub fn run(keep: Option<&Path>) -> Result<(), DaemonError> {
    let started = Instant::now();
    let me = std::env::current_exe().map_err(DaemonError::io(Path::new("current_exe")))?;
    let root_user = nix::unistd::geteuid().is_root()
        && Command::new("setpriv")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    let tmp;
    // Where the state really is when `--keep DIR` could not hold it (see
    // below); DIR is then a link to it.
    let mut kept_elsewhere = None;
    let root = match keep {
        Some(d) => {
            if d.exists()
                && std::fs::read_dir(d)
                    .map(|mut r| r.next().is_some())
                    .unwrap_or(false)
            {
                return Err(fail(format!(
                    "{} is not empty; give --keep a new directory",
                    d.display()
                )));
            }
            // Made first, so the check below reads their real modes.
            if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(DaemonError::io(parent))?;
            }
            if root_user && !others_can_reach(d) {
                // The reviewer accounts read the ingress configuration and
                // connect to its socket, so they must traverse every
                // directory above it; DIR's are closed to them (/root, a
                // `mktemp -d`). Nothing above DIR is opened: the state goes
                // to a new directory under KEPT_STATE_PARENT, as open as the
                // demo's temporary one, and DIR becomes a link to it.
                let work = tempfile::Builder::new()
                    .prefix("ferry-demo-")
                    .tempdir_in(KEPT_STATE_PARENT)
                    .map_err(DaemonError::io(Path::new(KEPT_STATE_PARENT)))?
                    .keep();
                if d.exists() {
                    // Empty (checked above): the link takes its place.
                    std::fs::remove_dir(d).map_err(DaemonError::io(d))?;
                }
                std::os::unix::fs::symlink(&work, d).map_err(DaemonError::io(d))?;
                println!(
                    "   {} is closed to the reviewer accounts; the state is kept in {} and {} links to it",
                    d.display(),
                    work.display(),
                    d.display()
                );
                kept_elsewhere = Some(work.clone());
                work
            } else {
                std::fs::create_dir_all(d).map_err(DaemonError::io(d))?;
                d.to_path_buf()
            }
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix("ferry-demo-")
                .tempdir()
                .map_err(DaemonError::io(Path::new("temp dir")))?;
            tmp.path().to_path_buf()
        }
    };
    let n_reviewers = if root_user { 2 } else { 1 };

    println!("1. keys for both sides, a site CA, a server and a client certificate, audit logs, a policy");
    let tb = crate::testkit::create(&root, &crate::testkit::TestbedOptions::loopback("demo")?)?;
    let ca = root.join("ca");
    let clients = root.join("clients");
    ctl(&me, &["certs", "init-ca", "--dir", s(&ca)])?;
    ctl(
        &me,
        &[
            "certs",
            "issue-server",
            "--ca",
            s(&ca),
            "--out",
            s(&root.join("ingress/tls")),
            "--name",
            "ingest",
            "--ip",
            "127.0.0.1",
        ],
    )?;
    ctl(
        &me,
        &[
            "certs",
            "issue-client",
            "--ca",
            s(&ca),
            "--out",
            s(&clients),
            "--name",
            "registry-feed",
            "--role",
            "pusher",
        ],
    )?;
    let words = root.join("words/classified.txt");
    std::fs::create_dir_all(root.join("words")).map_err(DaemonError::io(&root))?;
    std::fs::write(&words, "绝密\n机密\n秘密\n").map_err(DaemonError::io(&words))?;
    let policy_text = policy(&tb.spool, &words, n_reviewers);
    let port = crate::testkit::free_port(crate::testkit::Proto::Tcp)?;
    let run_dir = root.join("run");
    std::fs::create_dir_all(&run_dir).map_err(DaemonError::io(&run_dir))?;
    let admin = if root_user {
        // The reviewers reach the configuration and the socket only.
        for d in [&root, &root.join("ingress")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
                .map_err(DaemonError::io(d))?;
        }
        nix::unistd::chown(&run_dir, None, Some(nix::unistd::Gid::from_raw(ADMINS_GID)))
            .map_err(|e| fail(format!("chgrp {}: {e}", run_dir.display())))?;
        std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o2750))
            .map_err(DaemonError::io(&run_dir))?;
        format!(
            "\n[admin]\nsocket = \"{}\"\nsysadmin = [\"uid:0\"]\nreviewer = [\"uid:{}\", \"uid:{}\"]\n",
            s(&run_dir.join("ingress.sock")),
            REVIEWERS[0],
            REVIEWERS[1]
        )
    } else {
        String::new()
    };
    let mut verify_keys = Vec::new();
    for (side, config) in [
        ("ingress", &tb.ingress_config),
        ("egress", &tb.egress_config),
    ] {
        let dir = root.join(side);
        let pfile = dir.join("policy.toml");
        std::fs::write(&pfile, &policy_text).map_err(DaemonError::io(&pfile))?;
        let audit = dir.join("audit");
        let key = dir.join("audit.verify");
        ctl(
            &me,
            &[
                "audit",
                "init",
                "--dir",
                s(&audit),
                "--verify-key-out",
                s(&key),
            ],
        )?;
        verify_keys.push((side, audit.clone(), key));
        let mut extra = String::from(
            "\n[policy]\nfile = \"policy.toml\"\n\n[audit]\ndir = \"audit\"\nmin_free_bytes_accept = 0\n",
        );
        if side == "ingress" {
            extra.push_str(&format!(
                "\n[ingest]\nlisten = \"127.0.0.1:{port}\"\ncert = \"tls/ingest.crt\"\nkey = \"tls/ingest.key\"\nclient_ca = [\"{}\"]\nmin_free_bytes = 0\n{admin}",
                s(&ca.join("ca.crt"))
            ));
        }
        let text = std::fs::read_to_string(config).map_err(DaemonError::io(config))?;
        std::fs::write(config, format!("{text}{extra}")).map_err(DaemonError::io(config))?;
        std::fs::set_permissions(config, std::fs::Permissions::from_mode(0o644))
            .map_err(DaemonError::io(config))?;
    }

    println!("2. starting the egress and the ingress ferryd on loopback");
    let mut egress = start(&tb.egress_config, "egress", &root.join("egress/ferryd.log"))?;
    let mut ingress = start(
        &tb.ingress_config,
        "ingress",
        &root.join("ingress/ferryd.log"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        check_alive(&mut [&mut egress, &mut ingress], &root)?;
        if Instant::now() > deadline {
            return Err(fail("the ingest API did not come up within 20 s"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    println!("3. pushing four packages over HTTPS with a client certificate (ferryctl push)");
    let data = root.join("data");
    std::fs::create_dir_all(&data).map_err(DaemonError::io(&data))?;
    let id = fake_id();
    let owners = format!("parcel,owner_id,phone,area_m2\nA-001,{id},13812345678,1200.5\n");
    let files = [
        ("landuse-stats-2026.csv", CLEAN, "public-release", "pass"),
        (
            "parcel-owners.csv",
            owners.as_str(),
            "public-release",
            "masked",
        ),
        ("reserve-memo.txt", MEMO, "public-release", "refused"),
        ("planning-notice.txt", NOTICE, "reviewed-release", "held"),
    ];
    let url = format!("https://127.0.0.1:{port}");
    let mut held_id = String::new();
    for (name, body, channel, expect) in files {
        let path = data.join(name);
        std::fs::write(&path, body).map_err(DaemonError::io(&path))?;
        let (ok, out) = ctl_as(
            &me,
            None,
            &[
                "push",
                "--url",
                &url,
                "--channel",
                channel,
                "--cert",
                s(&clients.join("registry-feed.crt")),
                "--key",
                s(&clients.join("registry-feed.key")),
                "--cacert",
                s(&ca.join("ca.crt")),
                "--json",
                s(&path),
            ],
        )?;
        let v: serde_json::Value = out
            .lines()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_default();
        let text = v.to_string();
        let as_expected = match expect {
            "pass" => ok && text.contains("\"pass\""),
            "masked" => ok && text.contains("\"masked\""),
            "refused" => !ok && text.contains("403") && text.contains("dirty_word"),
            _ => ok && text.contains("awaiting_approval"),
        };
        if !as_expected {
            return Err(fail(format!(
                "pushing {name}: expected {expect}, got: {out}"
            )));
        }
        let shown = match expect {
            "pass" => "202, guard: pass".to_owned(),
            "masked" => "202, guard: masked (identity and phone numbers)".to_owned(),
            "refused" => "403, refused by the guard: marked 秘密".to_owned(),
            _ => format!("202, held for {n_reviewers} approval(s)"),
        };
        println!("   {name:<24} -> {channel:<17} {shown}");
        if expect == "held" {
            held_id = find_package_id(&v).unwrap_or_default();
        }
    }
    if held_id.is_empty() {
        return Err(fail("the held package's id was not in push's answer"));
    }

    println!("4. approvals: the held package is listed, then approved");
    let config = s(&tb.ingress_config).to_owned();
    let reviewers: Vec<Option<u32>> = if root_user {
        REVIEWERS.iter().map(|u| Some(*u)).collect()
    } else {
        vec![None]
    };
    let (ok, list) = ctl_as(
        &me,
        reviewers[0],
        &["approvals", "list", "--config", &config],
    )?;
    if !ok || !list.contains(&held_id) {
        return Err(fail(format!(
            "approvals list does not show {held_id}: {list}"
        )));
    }
    for (i, r) in reviewers.iter().enumerate() {
        let why = format!("checked by reviewer {}", i + 1);
        let (ok, out) = ctl_as(
            &me,
            *r,
            &[
                "approvals",
                "approve",
                "--config",
                &config,
                &held_id,
                "--reason",
                &why,
            ],
        )?;
        if !ok {
            return Err(fail(format!("approval {} refused: {out}", i + 1)));
        }
        let who = r.map_or_else(|| "this account".to_owned(), |u| format!("uid {u}"));
        let state = if out.contains("\"queued\"") {
            "queued"
        } else {
            "still held"
        };
        println!("   approved by {who}: {state}");
    }

    println!("5. on the egress side (inspected again before delivery):");
    let expect_delivered = [
        "landuse-stats-2026.csv",
        "parcel-owners.csv",
        "planning-notice.txt",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        check_alive(&mut [&mut egress, &mut ingress], &root)?;
        if expect_delivered.iter().all(|n| tb.outbox.join(n).exists()) {
            break;
        }
        if Instant::now() > deadline {
            return Err(fail(format!(
                "not everything was delivered within 30 s; see the logs under {}",
                root.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let read = |n: &str| std::fs::read_to_string(tb.outbox.join(n)).unwrap_or_default();
    if read("landuse-stats-2026.csv") != CLEAN || read("planning-notice.txt") != NOTICE {
        return Err(fail("a clean package arrived changed"));
    }
    let masked = read("parcel-owners.csv");
    let masked_id = format!("{}********{}", &id[..6], &id[14..]);
    if masked.contains(&id)
        || masked.contains("13812345678")
        || !masked.contains("138****5678")
        || !masked.contains(&masked_id)
    {
        return Err(fail(format!(
            "parcel-owners.csv is not masked as the profile says: {masked}"
        )));
    }
    if tb.outbox.join("reserve-memo.txt").exists() {
        return Err(fail("the refused memo was delivered"));
    }
    for n in expect_delivered {
        let side: serde_json::Value = std::fs::read(tb.outbox.join(format!("{n}.ferry.json")))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        println!(
            "   {n:<24} {:>4} bytes  seq {}  egress guard: {}",
            read(n).len(),
            side["seq"],
            side["egress_guard"]["verdict"].as_str().unwrap_or("?")
        );
    }
    println!("   reserve-memo.txt         not delivered (refused on the ingress side)");
    println!("   masked line: {}", masked.lines().nth(1).unwrap_or(""));

    std::thread::sleep(Duration::from_millis(1200));
    println!("6. ferryctl status:");
    for cfg in [&tb.ingress_config, &tb.egress_config] {
        let (ok, out) = ctl_as(&me, None, &["status", "--config", s(cfg)])?;
        if !ok {
            return Err(fail(format!("status: {out}")));
        }
        for l in out.lines() {
            println!("   {l}");
        }
    }
    drop(ingress);
    drop(egress);
    println!("7. both sides stopped; the audit officer verifies both audit logs:");
    for (side, dir, key) in &verify_keys {
        let (ok, out) = ctl_as(
            &me,
            None,
            &["audit", "verify", "--dir", s(dir), "--key", s(key)],
        )?;
        if !ok {
            return Err(fail(format!("audit verify ({side}): {out}")));
        }
        println!("   {side}: {}", out.lines().last().unwrap_or("verified"));
    }
    match (keep, &kept_elsewhere) {
        (Some(d), None) => println!("8. state kept in {}", d.display()),
        (Some(d), Some(work)) => println!(
            "8. state kept in {} (a link to {}; remove both when done)",
            d.display(),
            work.display()
        ),
        (None, _) => println!("8. temporary directory removed"),
    }
    println!("demo passed in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Where `--keep DIR` puts the state when the reviewer accounts cannot
/// reach DIR: open to every account like `/tmp`, and not emptied at boot.
const KEPT_STATE_PARENT: &str = "/var/tmp";

/// True when an account that is neither the owner nor in the group of the
/// directories above `dir` can traverse them (all have `o+x`); one that
/// cannot be read counts as closed. `dir` itself is the demo's and is
/// opened by it.
fn others_can_reach(dir: &Path) -> bool {
    let Ok(abs) = std::path::absolute(dir) else {
        return false;
    };
    abs.ancestors()
        .skip(1)
        .all(|a| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

fn check_alive(daemons: &mut [&mut Daemon], root: &Path) -> Result<(), DaemonError> {
    for d in daemons.iter_mut() {
        if let Ok(Some(code)) = d.child.try_wait() {
            return Err(fail(format!(
                "the {} ferryd exited ({code}); see {}/{}/ferryd.log",
                d.name,
                root.display(),
                d.name
            )));
        }
    }
    Ok(())
}

/// `package_id` anywhere in push's JSON answer.
fn find_package_id(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Object(m) => m
            .get("package_id")
            .and_then(|x| x.as_str().map(str::to_owned))
            .or_else(|| m.values().find_map(find_package_id)),
        serde_json::Value::Array(a) => a.iter().find_map(find_package_id),
        _ => None,
    }
}
