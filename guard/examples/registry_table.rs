//! Writes a generated land-registry parcel table for throughput figures
//! (docs/guard.md, "Performance"):
//!
//! ```text
//! cargo run --release -p ferry-guard --example registry_table -- OUT BYTES [owners|clean]
//! ```
//!
//! `owners` (the default): owners, identity numbers, phones, addresses,
//! dates, prices and remarks, the columns the de-identification example
//! profile rules cover; `clean`: the same shape without personal data.
//! Deterministic: the same arguments write the same bytes.

use std::io::Write;

/// A deterministic pseudo-random sequence (xorshift).
pub struct Rng(pub u64);

impl Rng {
    pub fn step(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.step() % n
    }
}

const SURNAMES: [&str; 8] = ["张", "王", "李", "赵", "陈", "刘", "杨", "黄"];
const GIVEN: [&str; 8] = ["伟", "芳", "娜", "敏", "静", "强", "磊", "军"];
const PLACES: [&str; 4] = [
    "湖北省武汉市洪山区珞喻路",
    "北京市朝阳区建国路",
    "河北省保定市涞水县永阳镇",
    "广东省东莞市南城街道鸿福路",
];

/// The header of both kinds of table.
pub const HEADER: &str = "宗地编号,权利人,证件号码,联系电话,坐落,登记日期,宗地面积,成交价格,备注\n";

/// One row; `owners = false` writes codes where the personal data was.
pub fn row(rng: &mut Rng, i: u64, owners: bool, out: &mut String) {
    use std::fmt::Write as _;
    let (owner, id, phone) = if owners {
        let first17 = format!(
            "420111{}{:02}{:02}{:03}",
            1950 + rng.below(50),
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(1000)
        );
        let check = ferry_guard::prc_id_check(first17.as_bytes()).unwrap_or(b'0');
        (
            format!(
                "{}{}",
                SURNAMES[rng.below(8) as usize],
                GIVEN[rng.below(8) as usize]
            ),
            format!("{first17}{}", char::from(check)),
            format!("13{:09}", rng.below(1_000_000_000)),
        )
    } else {
        (
            format!("户{:05}", rng.below(100_000)),
            format!("QZ{:08}", rng.below(100_000_000)),
            format!("T{:06}", rng.below(1_000_000)),
        )
    };
    let _ = writeln!(
        out,
        "420111GB{i:08},{owner},{id},{phone},{}{}号,20{:02}-{:02}-{:02},{}.{},{},已核实 无争议",
        PLACES[rng.below(4) as usize],
        1 + rng.below(2000),
        10 + rng.below(16),
        1 + rng.below(12),
        1 + rng.below(28),
        50 + rng.below(5000),
        rng.below(10),
        50_000 + rng.below(5_000_000),
    );
}

/// A table of at least `bytes` bytes.
pub fn table(bytes: usize, owners: bool) -> Vec<u8> {
    let mut rng = Rng(0x7AB1E);
    let mut s = String::from(HEADER);
    let mut i = 0;
    while s.len() < bytes {
        row(&mut rng, i, owners, &mut s);
        i += 1;
    }
    s.into_bytes()
}

#[allow(dead_code)]
fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(out), Some(bytes)) = (args.get(1), args.get(2).and_then(|b| b.parse::<u64>().ok()))
    else {
        eprintln!("usage: registry_table OUT BYTES [owners|clean]");
        std::process::exit(2);
    };
    let owners = args.get(3).is_none_or(|k| k != "clean");
    // Streamed in rows: a 1 GiB table needs no 1 GiB buffer.
    let mut f = std::io::BufWriter::new(std::fs::File::create(out)?);
    f.write_all(HEADER.as_bytes())?;
    let mut rng = Rng(0x7AB1E);
    let mut written = HEADER.len() as u64;
    let mut line = String::new();
    let mut i = 0;
    while written < bytes {
        line.clear();
        row(&mut rng, i, owners, &mut line);
        f.write_all(line.as_bytes())?;
        written += line.len() as u64;
        i += 1;
    }
    f.flush()
}
