//! TIFF under `disarm`: what the directories carry besides the picture.
//!
//! A TIFF's metadata is not a segment that can be cut out: each directory
//! (one per page) is a table of tagged entries, and an entry's value may
//! sit anywhere in the file. So the strip keeps the layout and changes
//! bytes in place, never moving anything (every offset in the file stays
//! right):
//!
//! - each directory is written again where it stands with only the entries
//!   of an allow-list (the tags a decoder needs to show the picture: size,
//!   samples, compression, strips or tiles, colour), the rest of its old
//!   length zeroed;
//! - every byte that no kept entry, directory or strip points at is then
//!   zeroed, so the values of the dropped entries (the EXIF and GPS
//!   directories, the XMP packet, IPTC, Photoshop layers, GeoTIFF keys) go
//!   with them, and so does anything hidden between the parts.
//!
//! The picture's own bytes (strips, tiles) are never read or changed. An
//! allow-list, never a deny-list: a tag nobody has named yet goes.
//!
//! Classic TIFF only (BigTIFF is not recognised as TIFF by the sniffer).
//! Old-style JPEG-in-TIFF (`JPEGInterchangeFormat`) points at a whole
//! JPEG stream with its own segments and is refused.

use crate::source::RandomRead;
use std::collections::BTreeSet;
use std::io;

/// Most directories (pages) walked.
const MAX_IFDS: usize = 4096;
/// Most entries in one directory.
const MAX_ENTRIES: u16 = 4096;
/// Most strips or tiles in one directory (their offsets are held in
/// memory while the file is walked).
const MAX_PIECES: u64 = 1 << 22;
/// Most bytes zeroed outside the image's parts: the zeros are held in
/// memory as edits until the copy is written.
pub(crate) const MAX_ZEROED: u64 = 64 * 1024 * 1024;

/// Tags kept: what a decoder needs to show the picture as intended.
const KEEP: &[u16] = &[
    254,   // NewSubfileType
    255,   // SubfileType
    256,   // ImageWidth
    257,   // ImageLength
    258,   // BitsPerSample
    259,   // Compression
    262,   // PhotometricInterpretation
    263,   // Threshholding
    264,   // CellWidth
    265,   // CellLength
    266,   // FillOrder
    273,   // StripOffsets
    274,   // Orientation
    277,   // SamplesPerPixel
    278,   // RowsPerStrip
    279,   // StripByteCounts
    280,   // MinSampleValue
    281,   // MaxSampleValue
    282,   // XResolution
    283,   // YResolution
    284,   // PlanarConfiguration
    290,   // GrayResponseUnit
    291,   // GrayResponseCurve
    292,   // T4Options
    293,   // T6Options
    296,   // ResolutionUnit
    297,   // PageNumber
    301,   // TransferFunction
    317,   // Predictor
    318,   // WhitePoint
    319,   // PrimaryChromaticities
    320,   // ColorMap
    321,   // HalftoneHints
    322,   // TileWidth
    323,   // TileLength
    324,   // TileOffsets
    325,   // TileByteCounts
    332,   // InkSet
    334,   // NumberOfInks
    336,   // DotRange
    338,   // ExtraSamples
    339,   // SampleFormat
    340,   // SMinSampleValue
    341,   // SMaxSampleValue
    342,   // TransferRange
    347,   // JPEGTables
    529,   // YCbCrCoefficients
    530,   // YCbCrSubSampling
    531,   // YCbCrPositioning
    532,   // ReferenceBlackWhite
    34675, // ICC colour profile
];

/// GeoTIFF tags: they place the picture on the ground (a georeferenced
/// image is a map).
const GEOREF: &[u16] = &[33550, 33922, 34264, 34735, 34736, 34737];

/// One thing found: an entry dropped, or bytes nothing points at.
#[derive(Debug)]
pub(crate) struct Found {
    /// Where: the directory entry, or the first of the bytes.
    pub(crate) at: u64,
    /// `image_gps`, `image_georef` or `image_metadata`.
    pub(crate) detector: &'static str,
    /// `IFD 0 tag 34853 GPSInfo`, `bytes outside the image's parts`.
    pub(crate) field: String,
}

/// The walk's result: what was found, and the in-place edits (offset,
/// new bytes of the same length) that remove it.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) found: Vec<Found>,
    pub(crate) edits: Vec<(u64, Vec<u8>)>,
}

/// What went wrong: the file is not a TIFF the strip can keep intact.
pub(crate) type Walk = io::Result<Result<Plan, String>>;

/// Reads the TIFF in `src` and works out what to strip.
pub(crate) fn walk(src: &dyn RandomRead) -> Walk {
    let size = src.size();
    let mut f = File {
        src,
        size,
        le: true,
    };
    let mut head = [0u8; 8];
    if !f.read(0, &mut head)? {
        return Ok(Err("truncated TIFF: no header".into()));
    }
    f.le = match &head[..4] {
        b"II*\0" => true,
        b"MM\0*" => false,
        _ => return Ok(Err("not a classic TIFF header".into())),
    };
    let mut plan = Plan::default();
    // Regions of the file that stay: (start, end, is a directory).
    let mut kept: Vec<(u64, u64, bool)> = vec![(0, 8, false)];
    let mut seen = BTreeSet::new();
    let mut next = u64::from(f.u32(&head[4..8]));
    let mut index = 0usize;
    while next != 0 {
        if index >= MAX_IFDS {
            return Ok(Err(format!("more than {MAX_IFDS} directories (pages)")));
        }
        if !seen.insert(next) {
            return Ok(Err(format!(
                "directory {index} at byte {next} loops back to an earlier one"
            )));
        }
        match directory(&mut f, next, index, &mut plan, &mut kept)? {
            Ok(n) => next = n,
            Err(problem) => return Ok(Err(problem)),
        }
        index += 1;
    }
    if index == 0 {
        return Ok(Err("the TIFF has no directory".into()));
    }
    if let Err(problem) = overlaps(&mut kept) {
        return Ok(Err(problem));
    }
    let had_entries = !plan.found.is_empty();
    // Every byte outside what stays is zeroed; non-zero ones found here
    // are the dropped entries' values, or something hidden.
    let mut zeroed = 0u64;
    let mut first_hidden: Option<u64> = None;
    let mut at = 0u64;
    let mut gaps = Vec::new();
    for &(s, e, _) in &kept {
        if s > at {
            gaps.push((at, s));
        }
        at = at.max(e);
    }
    if at < size {
        gaps.push((at, size));
    }
    let mut buf = vec![0u8; 64 * 1024];
    for (s, e) in gaps {
        let mut pos = s;
        while pos < e {
            let n = usize::try_from((e - pos).min(buf.len() as u64)).unwrap_or(buf.len());
            if !f.read(pos, &mut buf[..n])? {
                return Ok(Err("truncated TIFF".into()));
            }
            // Zero only the runs that are not zero already.
            let mut i = 0;
            while i < n {
                if buf[i] == 0 {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < n && buf[i] != 0 {
                    i += 1;
                }
                let run = (i - start) as u64;
                zeroed += run;
                if zeroed > MAX_ZEROED {
                    return Ok(Err(format!(
                        "more than {} MiB of the file lies outside the picture and the directories that describe it",
                        MAX_ZEROED >> 20
                    )));
                }
                first_hidden.get_or_insert(pos + start as u64);
                plan.edits.push((pos + start as u64, vec![0; i - start]));
            }
            pos += n as u64;
        }
    }
    if let (Some(at), false) = (first_hidden, had_entries) {
        plan.found.push(Found {
            at,
            detector: "image_metadata",
            field: "bytes outside the picture and its directories".into(),
        });
    }
    plan.edits.sort_by_key(|(at, _)| *at);
    Ok(Ok(plan))
}

/// The file, read at offsets in its byte order.
struct File<'a> {
    src: &'a dyn RandomRead,
    size: u64,
    le: bool,
}

impl File<'_> {
    /// Fills `out` from `at`; false when the file ends first.
    fn read(&self, at: u64, out: &mut [u8]) -> io::Result<bool> {
        let mut got = 0;
        while got < out.len() {
            let n = self.src.read_at(&mut out[got..], at + got as u64)?;
            if n == 0 {
                return Ok(false);
            }
            got += n;
        }
        Ok(true)
    }

    fn u16(&self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    }

    fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    }

    fn put16(&self, v: u16) -> [u8; 2] {
        if self.le {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    }

    /// `len` bytes at `at` are inside the file.
    fn inside(&self, at: u64, len: u64) -> bool {
        at.checked_add(len).is_some_and(|end| end <= self.size)
    }
}

/// The size of one value of a TIFF field type (`None`: unknown type).
fn type_size(ty: u16) -> Option<u64> {
    Some(match ty {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 => 8,
        _ => return None,
    })
}

/// One directory entry.
struct Entry {
    /// Its 12 bytes as they are.
    raw: [u8; 12],
    tag: u16,
    ty: u16,
    count: u64,
}

/// Walks the directory at `off`: keeps its allowed entries and their
/// values and image data, records the dropped ones, and plans its rewrite.
/// Gives the next directory's offset.
fn directory(
    f: &mut File<'_>,
    off: u64,
    index: usize,
    plan: &mut Plan,
    kept: &mut Vec<(u64, u64, bool)>,
) -> io::Result<Result<u64, String>> {
    let mut nb = [0u8; 2];
    if off < 8 || !f.inside(off, 2) || !f.read(off, &mut nb)? {
        return Ok(Err(format!(
            "directory {index} at byte {off} lies outside the file"
        )));
    }
    let n = f.u16(&nb);
    if n == 0 || n > MAX_ENTRIES {
        return Ok(Err(format!(
            "directory {index} has {n} entries (1 to {MAX_ENTRIES} expected)"
        )));
    }
    let len = 2 + 12 * u64::from(n) + 4;
    let mut raw = vec![0u8; usize::try_from(len).unwrap_or(0)];
    if !f.inside(off, len) || !f.read(off, &mut raw)? {
        return Ok(Err(format!(
            "directory {index} at byte {off} runs past the end of the file"
        )));
    }
    let entries: Vec<Entry> = raw[2..raw.len() - 4]
        .chunks_exact(12)
        .map(|c| {
            let mut e = [0u8; 12];
            e.copy_from_slice(c);
            Entry {
                tag: f.u16(&e[0..2]),
                ty: f.u16(&e[2..4]),
                count: u64::from(f.u32(&e[4..8])),
                raw: e,
            }
        })
        .collect();
    let next = u64::from(f.u32(&raw[raw.len() - 4..]));
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&[0, 0]);
    let mut keeps = 0u16;
    let mut strips = (None, None);
    let mut tiles = (None, None);
    for (i, e) in entries.iter().enumerate() {
        let entry_at = off + 2 + 12 * i as u64;
        if e.tag == 513 || e.tag == 514 {
            return Ok(Err(format!(
                "directory {index} holds an old-style JPEG stream (tag {}), whose own segments the guard does not rewrite: convert the image to PNG or a JPEG",
                e.tag
            )));
        }
        if !KEEP.contains(&e.tag) {
            plan.found.push(Found {
                at: entry_at,
                detector: classify(f, e)?,
                field: format!("IFD {index} tag {} {}", e.tag, tag_name(e.tag)),
            });
            continue;
        }
        let Some(unit) = type_size(e.ty) else {
            return Ok(Err(format!(
                "directory {index}, tag {}: unknown field type {}",
                e.tag, e.ty
            )));
        };
        let Some(bytes) = e.count.checked_mul(unit) else {
            return Ok(Err(format!(
                "directory {index}, tag {}: count too large",
                e.tag
            )));
        };
        let value_at = if bytes > 4 {
            let at = u64::from(f.u32(&e.raw[8..12]));
            if !f.inside(at, bytes) {
                return Ok(Err(format!(
                    "directory {index}, tag {}: its value lies outside the file",
                    e.tag
                )));
            }
            kept.push((at, at + bytes, false));
            at
        } else {
            entry_at + 8
        };
        match e.tag {
            273 => strips.0 = Some((e.ty, e.count, value_at)),
            279 => strips.1 = Some((e.ty, e.count, value_at)),
            324 => tiles.0 = Some((e.ty, e.count, value_at)),
            325 => tiles.1 = Some((e.ty, e.count, value_at)),
            _ => {}
        }
        out.extend_from_slice(&e.raw);
        keeps += 1;
    }
    let pieces = match (strips, tiles) {
        ((Some(o), Some(c)), _) | (_, (Some(o), Some(c))) => (o, c),
        _ => {
            return Ok(Err(format!(
                "directory {index} has no complete strip or tile table (offsets and byte counts)"
            )))
        }
    };
    if let Err(problem) = image_data(f, index, pieces, kept)? {
        return Ok(Err(problem));
    }
    out[..2].copy_from_slice(&f.put16(keeps));
    out.extend_from_slice(&raw[raw.len() - 4..]);
    out.resize(raw.len(), 0);
    kept.push((off, off + len, true));
    if out != raw {
        plan.edits.push((off, out));
    }
    Ok(Ok(next))
}

type Table = (u16, u64, u64);

/// The strips or tiles: each one's bytes stay.
fn image_data(
    f: &File<'_>,
    index: usize,
    (offsets, counts): (Table, Table),
    kept: &mut Vec<(u64, u64, bool)>,
) -> io::Result<Result<(), String>> {
    if offsets.1 != counts.1 || offsets.1 == 0 || offsets.1 > MAX_PIECES {
        return Ok(Err(format!(
            "directory {index}: {} strip or tile offsets for {} byte counts",
            offsets.1, counts.1
        )));
    }
    let read = |(ty, count, at): Table| -> io::Result<Option<Vec<u64>>> {
        let unit = match ty {
            3 => 2,
            4 => 4,
            _ => return Ok(None),
        };
        let mut b = vec![0u8; usize::try_from(count * unit).unwrap_or(0)];
        if !f.read(at, &mut b)? {
            return Ok(None);
        }
        Ok(Some(
            b.chunks_exact(unit as usize)
                .map(|c| {
                    if unit == 2 {
                        u64::from(f.u16(c))
                    } else {
                        u64::from(f.u32(c))
                    }
                })
                .collect(),
        ))
    };
    let (Some(o), Some(c)) = (read(offsets)?, read(counts)?) else {
        return Ok(Err(format!(
            "directory {index}: strip or tile tables of a type other than SHORT or LONG"
        )));
    };
    for (i, (&at, &len)) in o.iter().zip(&c).enumerate() {
        if !f.inside(at, len) {
            return Ok(Err(format!(
                "directory {index}: strip or tile {i} lies outside the file"
            )));
        }
        if len > 0 {
            kept.push((at, at + len, false));
        }
    }
    Ok(Ok(()))
}

/// Sorts the kept regions; a rewritten directory must not share bytes
/// with anything else that stays (its rewrite would change them).
fn overlaps(kept: &mut [(u64, u64, bool)]) -> Result<(), String> {
    kept.sort_unstable();
    let mut end_all = 0u64;
    let mut end_dir = 0u64;
    for &(s, e, dir) in kept.iter() {
        if (dir && s < end_all) || s < end_dir {
            return Err(format!(
                "a directory shares bytes with another part of the file (at byte {s})"
            ));
        }
        end_all = end_all.max(e);
        if dir {
            end_dir = end_dir.max(e);
        }
    }
    Ok(())
}

/// Names what a dropped entry holds: a GPS position (the GPS directory, or
/// an XMP packet that mentions one), a georeference, or other metadata.
fn classify(f: &File<'_>, e: &Entry) -> io::Result<&'static str> {
    if e.tag == 34853 {
        return Ok("image_gps");
    }
    if GEOREF.contains(&e.tag) {
        return Ok("image_georef");
    }
    if e.tag == 700 && e.count > 4 && e.count <= 1024 * 1024 {
        let at = u64::from(f.u32(&e.raw[8..12]));
        let mut b = vec![0u8; usize::try_from(e.count).unwrap_or(0)];
        if f.inside(at, e.count) && f.read(at, &mut b)? && crate::disarm::xmp_has_gps(&b) {
            return Ok("image_gps");
        }
    }
    Ok("image_metadata")
}

/// Names of the tags the report most often meets.
fn tag_name(tag: u16) -> &'static str {
    match tag {
        269 => "DocumentName",
        270 => "ImageDescription",
        271 => "Make",
        272 => "Model",
        285 => "PageName",
        305 => "Software",
        306 => "DateTime",
        315 => "Artist",
        316 => "HostComputer",
        330 => "SubIFDs",
        700 => "XMP",
        33432 => "Copyright",
        33550 => "ModelPixelScale",
        33723 => "IPTC",
        33922 => "ModelTiepoint",
        34264 => "ModelTransformation",
        34377 => "Photoshop",
        34665 => "ExifIFD",
        34735 => "GeoKeyDirectory",
        34736 => "GeoDoubleParams",
        34737 => "GeoAsciiParams",
        34853 => "GPSInfo",
        37724 => "ImageSourceData",
        40965 => "InteropIFD",
        42112 => "GDAL_METADATA",
        42113 => "GDAL_NODATA",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian TIFF: one 4×1 grey strip, with `extra` entries
    /// (tag, type, count, value bytes) in its only directory.
    pub(crate) fn tiny(extra: &[(u16, u16, u32, Vec<u8>)], trailer: &[u8]) -> Vec<u8> {
        let mut entries: Vec<(u16, u16, u32, Vec<u8>)> = vec![
            (256, 3, 1, 4u16.to_le_bytes().to_vec()),
            (257, 3, 1, 1u16.to_le_bytes().to_vec()),
            (258, 3, 1, 8u16.to_le_bytes().to_vec()),
            (259, 3, 1, 1u16.to_le_bytes().to_vec()),
            (262, 3, 1, 1u16.to_le_bytes().to_vec()),
            (273, 4, 1, vec![]), // patched below
            (277, 3, 1, 1u16.to_le_bytes().to_vec()),
            (278, 3, 1, 1u16.to_le_bytes().to_vec()),
            (279, 4, 1, 4u32.to_le_bytes().to_vec()),
        ];
        entries.extend(extra.iter().cloned());
        entries.sort_by_key(|e| e.0);
        let n = entries.len();
        let ifd_len = 2 + 12 * n + 4;
        let pixels_at = 8 + ifd_len;
        let mut values_at = pixels_at + 4;
        let mut ifd = (n as u16).to_le_bytes().to_vec();
        let mut values = Vec::new();
        for (tag, ty, count, mut v) in entries {
            if tag == 273 {
                v = (pixels_at as u32).to_le_bytes().to_vec();
            }
            ifd.extend_from_slice(&tag.to_le_bytes());
            ifd.extend_from_slice(&ty.to_le_bytes());
            ifd.extend_from_slice(&count.to_le_bytes());
            if v.len() <= 4 {
                let mut inline = v.clone();
                inline.resize(4, 0);
                ifd.extend_from_slice(&inline);
            } else {
                ifd.extend_from_slice(&(values_at as u32).to_le_bytes());
                values_at += v.len();
                values.extend_from_slice(&v);
            }
        }
        ifd.extend_from_slice(&0u32.to_le_bytes());
        let mut out = b"II*\0".to_vec();
        out.extend_from_slice(&8u32.to_le_bytes());
        out.extend_from_slice(&ifd);
        out.extend_from_slice(&[10, 20, 30, 40]);
        out.extend_from_slice(&values);
        out.extend_from_slice(trailer);
        out
    }

    fn apply(data: &[u8], plan: &Plan) -> Vec<u8> {
        let mut out = data.to_vec();
        for (at, b) in &plan.edits {
            let at = *at as usize;
            out[at..at + b.len()].copy_from_slice(b);
        }
        out
    }

    fn run(data: &[u8]) -> Result<Plan, String> {
        walk(&data).expect("in memory")
    }

    #[test]
    fn a_clean_tiff_has_nothing_to_strip() {
        let t = tiny(&[], &[]);
        let plan = run(&t).expect("valid");
        assert!(plan.found.is_empty(), "{:?}", plan.found);
        assert!(plan.edits.is_empty());
    }

    #[test]
    fn metadata_entries_and_their_values_go_and_the_pixels_stay() {
        let xmp = b"<x:xmpmeta><exif:GPSLatitude>28,40.1N</exif:GPSLatitude></x:xmpmeta>".to_vec();
        let make = b"SecretCam 9000\0".to_vec();
        let t = tiny(
            &[
                (271, 2, make.len() as u32, make.clone()),
                (700, 1, xmp.len() as u32, xmp.clone()),
                (34853, 4, 1, 9999u32.to_le_bytes().to_vec()),
            ],
            &[],
        );
        let plan = run(&t).expect("valid");
        let kinds: Vec<_> = plan
            .found
            .iter()
            .map(|f| (f.detector, f.field.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("image_metadata", "IFD 0 tag 271 Make"),
                ("image_gps", "IFD 0 tag 700 XMP"),
                ("image_gps", "IFD 0 tag 34853 GPSInfo"),
            ]
        );
        let out = apply(&t, &plan);
        assert_eq!(out.len(), t.len(), "nothing moves");
        assert!(memchr::memmem::find(&out, b"SecretCam").is_none());
        assert!(memchr::memmem::find(&out, b"GPSLatitude").is_none());
        // The pixels are where they were.
        let again = run(&out).expect("the stripped file is a TIFF");
        assert!(again.found.is_empty(), "{:?}", again.found);
        assert!(again.edits.is_empty(), "stripping is idempotent");
        assert!(memchr::memmem::find(&out, &[10, 20, 30, 40]).is_some());
    }

    #[test]
    fn hidden_bytes_nothing_points_at_are_found_and_zeroed() {
        let t = tiny(&[], b"hidden payload");
        let plan = run(&t).expect("valid");
        assert_eq!(plan.found.len(), 1);
        assert_eq!(plan.found[0].detector, "image_metadata");
        let out = apply(&t, &plan);
        assert!(memchr::memmem::find(&out, b"hidden").is_none());
        assert!(run(&out).expect("valid").found.is_empty());
    }

    #[test]
    fn geotiff_keys_are_a_georeference() {
        let tie = vec![0u8; 48];
        let t = tiny(&[(33922, 12, 6, tie)], &[]);
        let plan = run(&t).expect("valid");
        assert_eq!(plan.found[0].detector, "image_georef");
    }

    /// Where the value field of the entry for `tag` is.
    fn value_field(t: &[u8], tag: u16) -> usize {
        let n = usize::from(u16::from_le_bytes([t[8], t[9]]));
        (0..n)
            .map(|i| 8 + 2 + 12 * i)
            .find(|&at| u16::from_le_bytes([t[at], t[at + 1]]) == tag)
            .expect("the entry")
            + 8
    }

    #[test]
    fn broken_structures_are_named() {
        let t = tiny(&[], &[]);
        // A loop: the directory's next pointer points at itself.
        let mut l = t.clone();
        let next_at = 8 + 2 + 12 * 9;
        l[next_at..next_at + 4].copy_from_slice(&8u32.to_le_bytes());
        assert!(run(&l).unwrap_err().contains("loops back"));
        // A strip outside the file.
        let mut s = t.clone();
        let v = value_field(&s, 273);
        s[v..v + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(run(&s).unwrap_err().contains("outside the file"));
        // Truncated.
        assert!(run(&t[..20]).is_err());
        // Old-style JPEG.
        let j = tiny(&[(513, 4, 1, 0u32.to_le_bytes().to_vec())], &[]);
        assert!(run(&j).unwrap_err().contains("old-style JPEG"));
    }

    #[test]
    fn a_directory_overlapping_the_pixels_is_refused() {
        for extra in [vec![], vec![(271, 2, 4, b"abc\0".to_vec())]] {
            let mut t = tiny(&extra, &[]);
            // Point the strip at the directory itself: a rewrite of the
            // directory would change the picture.
            let v = value_field(&t, 273);
            t[v..v + 4].copy_from_slice(&8u32.to_le_bytes());
            assert!(run(&t).unwrap_err().contains("shares bytes"));
        }
    }

    proptest::proptest! {
        #[test]
        fn mutated_tiffs_never_panic_and_a_strip_is_final(
            flips in proptest::collection::vec((0usize..400, proptest::num::u8::ANY), 0..8),
            cut in 0usize..400,
        ) {
            let mut t = tiny(
                &[(271, 2, 6, b"Maker\0".to_vec()), (34853, 4, 1, vec![1, 0, 0, 0])],
                b"tail",
            );
            for (at, b) in flips {
                if let Some(x) = t.get_mut(at) {
                    *x = b;
                }
            }
            t.truncate(cut.max(1).min(t.len()));
            if let Ok(plan) = run(&t) {
                let out = apply(&t, &plan);
                let again = run(&out).expect("a stripped TIFF walks again");
                proptest::prop_assert!(again.found.is_empty());
                proptest::prop_assert!(again.edits.is_empty());
            }
        }
    }
}
