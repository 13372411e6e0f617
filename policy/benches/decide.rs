//! Decision latency for a policy with 1 000 rules and 100 identities.
//!
//!   cargo bench -p ferry-policy --bench decide
//!
//! Prints decisions per second and p50/p99 per-decision latency (measured
//! one decision at a time over 200 000 requests), then runs criterion.

use criterion::{black_box, Criterion, Throughput};
use ferry_policy::{parse_str, NoUsage, Policy, Request, Subject};
use std::fmt::Write;
use std::time::Instant;

const IDENTITIES: usize = 100;
const CHANNELS: usize = 10;
const RULES: usize = 1000;

fn policy_text() -> String {
    let mut t = String::from(
        "[policy]\ntime_zone = \"Asia/Shanghai\"\n\n[window.night]\nfrom = \"22:00\"\nto = \"06:00\"\n\n",
    );
    for i in 0..IDENTITIES {
        let _ = writeln!(
            t,
            "[identity.id{i}]\ncn = \"system-{i}.example\"\nrole = \"pusher\"\n"
        );
    }
    for c in 0..CHANNELS {
        let dir = if c % 2 == 0 { "release" } else { "import" };
        let windows = if c == 0 {
            "windows = [\"night\"]\n"
        } else {
            ""
        };
        let _ = writeln!(
            t,
            "[channel.ch{c}]\ndirection = \"{dir}\"\nlink = \"link-{c}\"\nprofile = \"p{c}\"\napproval = \"a{c}\"\n{windows}\n\
             [profile.p{c}]\nallowed_types = [\"text/csv\"]\n\n\
             [approval.a{c}]\nreviewers = 2\nroles = [\"reviewer\"]\nexpires_after_s = 3600\n"
        );
    }
    for r in 0..RULES {
        let effect = if r % 10 == 9 { "deny" } else { "allow" };
        let a = r % IDENTITIES;
        let b = (r * 7 + 3) % IDENTITIES;
        let c = r % CHANNELS;
        let _ = writeln!(
            t,
            "[[rule]]\nid = \"r{r}\"\neffect = \"{effect}\"\nidentities = [\"id{a}\", \"id{b}\"]\nchannels = [\"ch{c}\"]\ncontent_types = [\"text/csv\", \"application/json\"]\nnames = [\"data-{r}-*.csv\", \"*.json\"]\nmax_package_bytes = {}\n",
            1_000_000 + r
        );
    }
    t
}

fn requests() -> Vec<Request> {
    let at = time::OffsetDateTime::from_unix_timestamp(1_796_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (0..1024)
        .map(|i| {
            let id = (i * 37) % IDENTITIES;
            let r = (i * 13) % RULES;
            Request {
                identity: Subject {
                    subject: format!("CN=system-{id}.example"),
                    common_name: Some(format!("system-{id}.example")),
                    role: Some("pusher".into()),
                    ..Subject::default()
                },
                channel: format!("ch{}", i % CHANNELS),
                file_name: if i % 3 == 0 {
                    format!("data-{r}-x.csv")
                } else {
                    format!("f{i}.json")
                },
                content_type: if i % 3 == 0 {
                    "text/csv".into()
                } else {
                    "application/json".into()
                },
                size_bytes: 1000 + i as u64,
                at,
            }
        })
        .collect()
}

fn percentiles(policy: &Policy, reqs: &[Request]) {
    const N: usize = 200_000;
    let mut lat = Vec::with_capacity(N);
    let mut allowed = 0usize;
    let start = Instant::now();
    for i in 0..N {
        let r = &reqs[i % reqs.len()];
        let t = Instant::now();
        let d = policy.decide(black_box(r), &NoUsage);
        lat.push(t.elapsed().as_nanos() as u64);
        allowed += usize::from(d.is_allowed());
    }
    let total = start.elapsed();
    lat.sort_unstable();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "policy: {RULES} rules, {IDENTITIES} identities, {CHANNELS} channels; {N} decisions ({allowed} allowed)\n\
         decisions/s: {:.0}\np50: {:.2} µs  p99: {:.2} µs  max: {:.2} µs",
        N as f64 / total.as_secs_f64(),
        p(0.50) as f64 / 1000.0,
        p(0.99) as f64 / 1000.0,
        *lat.last().unwrap_or(&0) as f64 / 1000.0,
    );
}

fn main() {
    let text = policy_text();
    let (policy, warnings) = match parse_str(&text, "bench.toml") {
        Ok(p) => p,
        Err(e) => panic!("bench policy invalid: {e}"),
    };
    println!("bench policy: {} warnings", warnings.len());
    let reqs = requests();
    percentiles(&policy, &reqs);

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(reqs.len() as u64));
    g.bench_function("1000_rules_100_identities_batch_1024", |b| {
        b.iter(|| {
            for r in &reqs {
                black_box(policy.decide(black_box(r), &NoUsage));
            }
        })
    });
    g.finish();
    c.final_summary();
}
