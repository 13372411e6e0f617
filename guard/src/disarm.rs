//! `disarm`: what an image carries besides the picture. A photograph's
//! EXIF block holds the camera, the time and often the GPS position where
//! it was taken (geodata, under the same rules as coordinates in a
//! table); XMP, IPTC and comments hold names and free text no detector
//! reads. Under `disarm = "strip"` they are cut out of a JPEG or PNG at the
//! top level of a package (the picture's own bytes are untouched, so the
//! image is the same image); under `"refuse"` such an image is refused.
//!
//! The walk keeps an allow-list, never a deny-list: the segments and
//! chunks a decoder needs to show the picture as intended (JFIF, the ICC
//! colour profile, Adobe's colour transform; PNG's critical chunks and
//! colour, transparency and animation chunks) stay; everything else —
//! including segments and chunks nobody has named yet — is metadata and
//! goes. Nothing is parsed beyond what finding the boundaries and naming
//! what goes needs (is there a GPS directory?).
//!
//! TIFF keeps its metadata in directory entries that point anywhere in
//! the file, so it is stripped in place instead ([`crate::tiff`]).

use crate::inspect::{Ctx, Halt};
use crate::report::{Action, FindingKind};
use crate::sniff::Kind;
use std::io::{self, Read};

/// Longest PNG chunk read into memory to name what it holds (`eXIf`,
/// `iTXt`); a longer one is removed all the same, named by its type only.
const CHUNK_PEEK_MAX: usize = 1024 * 1024;
/// Largest TIFF inside an archive walked (in memory; at the top level the
/// package is read where it lies).
const TIFF_NESTED_MAX: u64 = 64 * 1024 * 1024;
/// Longest PNG chunk (the PNG limit).
const PNG_CHUNK_MAX: u32 = 0x7FFF_FFFF;

/// Bytes `start..end` of the image become these.
type Edit = (u64, u64, Vec<u8>);

/// One thing to cut: bytes `start..end` of the image.
#[derive(Debug)]
struct Cut {
    start: u64,
    end: u64,
    /// `image_gps` or `image_metadata`.
    detector: &'static str,
    /// The segment or chunk: `APP1 Exif`, `COM`, `tEXt`, …
    field: String,
}

/// Walks a JPEG, PNG or TIFF under a profile with `disarm`: structure
/// checked as the opaque path checks it, metadata found, and stripped
/// (top level) or refused.
pub(crate) fn image(
    ctx: &mut Ctx<'_>,
    r: &mut dyn Read,
    kind: Kind,
    top: bool,
) -> Result<(), Halt> {
    let Some(mode) = ctx.profile.disarm else {
        return crate::opaque::inspect(ctx, r, kind);
    };
    // What is found, and the edits that remove it: cuts for JPEG and PNG,
    // bytes changed in place for TIFF (nothing in it may move).
    let (found, edits): (Vec<Cut>, Vec<Edit>) = if kind == Kind::Tiff {
        let walked = if top {
            // Read where it lies; the stream is still read to its end
            // (digests, the malware scan).
            let w = crate::tiff::walk(ctx.src)?;
            crate::source::drain(r)?;
            w
        } else {
            let mut data = Vec::new();
            Read::take(&mut *r, TIFF_NESTED_MAX + 1).read_to_end(&mut data)?;
            if data.len() as u64 > TIFF_NESTED_MAX {
                return Err(ctx.reject(format!(
                    "a TIFF inside an archive is checked in memory, up to {} MiB, and this one is larger: send it on its own",
                    TIFF_NESTED_MAX >> 20
                )));
            }
            crate::tiff::walk(&data.as_slice())?
        };
        let plan = match walked {
            Ok(plan) => plan,
            Err(problem) => return Err(ctx.reject(format!("TIFF: {problem}"))),
        };
        let found = plan
            .found
            .into_iter()
            .map(|f| Cut {
                start: f.at,
                end: f.at,
                detector: f.detector,
                field: f.field,
            })
            .collect();
        let edits = plan
            .edits
            .into_iter()
            .map(|(at, b)| (at, at + b.len() as u64, b))
            .collect();
        (found, edits)
    } else {
        let mut b = Bytes::new(r);
        let walked = if kind == Kind::Jpeg {
            jpeg(&mut b)
        } else {
            png(&mut b)
        };
        let cuts = match walked? {
            Ok(cuts) => cuts,
            Err(problem) => return Err(ctx.reject(problem)),
        };
        let edits = cuts.iter().map(|c| (c.start, c.end, Vec::new())).collect();
        (cuts, edits)
    };
    let action = mode.action();
    let mut strip = false;
    for c in &found {
        let loc = ctx.location(None, Some(c.field.clone()), Some(c.start));
        let taken = ctx.finding(FindingKind::Disarm, c.detector, loc, None, None, action);
        if taken == Action::Reject && mode == crate::profile::Disarm::Refuse {
            let what = match c.detector {
                "image_gps" => "a GPS position",
                "image_georef" => "a georeference (GeoTIFF keys)",
                _ => "metadata",
            };
            ctx.add_reason(format!(
                "the image carries {what} ({} at byte {}), and the profile sets disarm = \"refuse\"",
                c.field, c.start
            ));
        }
        strip |= taken == Action::Mask && top;
    }
    if strip {
        ctx.stripped = true;
        for (start, end, bytes) in edits {
            ctx.edit(start, end, crate::emit::Op::Replace(bytes))?;
        }
    }
    crate::opaque::uninspectable(ctx, kind);
    Ok(())
}

/// A byte reader that knows its position, over the unbuffered stream.
struct Bytes<'a> {
    r: &'a mut dyn Read,
    buf: Vec<u8>,
    at: usize,
    len: usize,
    /// Position of `buf[0]` in the stream.
    base: u64,
}

impl<'a> Bytes<'a> {
    fn new(r: &'a mut dyn Read) -> Bytes<'a> {
        Bytes {
            r,
            buf: vec![0; 64 * 1024],
            at: 0,
            len: 0,
            base: 0,
        }
    }

    /// Position of the next byte.
    fn pos(&self) -> u64 {
        self.base + self.at as u64
    }

    fn fill(&mut self) -> io::Result<bool> {
        if self.at < self.len {
            return Ok(true);
        }
        self.base += self.len as u64;
        self.at = 0;
        self.len = 0;
        loop {
            match self.r.read(&mut self.buf) {
                Ok(n) => {
                    self.len = n;
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn byte(&mut self) -> io::Result<Option<u8>> {
        if !self.fill()? {
            return Ok(None);
        }
        let b = self.buf[self.at];
        self.at += 1;
        Ok(Some(b))
    }

    /// Fills `out`; false when the stream ends first.
    fn exact(&mut self, out: &mut [u8]) -> io::Result<bool> {
        let mut got = 0;
        while got < out.len() {
            if !self.fill()? {
                return Ok(false);
            }
            let k = (self.len - self.at).min(out.len() - got);
            out[got..got + k].copy_from_slice(&self.buf[self.at..self.at + k]);
            self.at += k;
            got += k;
        }
        Ok(true)
    }

    /// Skips `n` bytes, handing each run of them to `seen`; false when the
    /// stream ends first.
    fn skip(&mut self, mut n: u64, seen: &mut dyn FnMut(&[u8])) -> io::Result<bool> {
        while n > 0 {
            if !self.fill()? {
                return Ok(false);
            }
            let k = ((self.len - self.at) as u64).min(n) as usize;
            seen(&self.buf[self.at..self.at + k]);
            self.at += k;
            n -= k as u64;
        }
        Ok(true)
    }

    /// Skips to the next 0xFF byte; false at the end of the stream.
    fn skip_to_ff(&mut self) -> io::Result<bool> {
        loop {
            if !self.fill()? {
                return Ok(false);
            }
            match memchr::memchr(0xFF, &self.buf[self.at..self.len]) {
                Some(i) => {
                    self.at += i;
                    return Ok(true);
                }
                None => self.at = self.len,
            }
        }
    }

    /// True when nothing follows.
    fn at_end(&mut self) -> io::Result<bool> {
        Ok(!self.fill()?)
    }
}

/// What the walk found: the cuts, or why the image is malformed.
type Walk = io::Result<Result<Vec<Cut>, String>>;

/// Walks the JPEG's markers from SOI to EOI, through the entropy-coded
/// data of every scan (progressive images have several, and segments may
/// sit between them).
fn jpeg(b: &mut Bytes<'_>) -> Walk {
    let mut soi = [0u8; 2];
    if !b.exact(&mut soi)? || soi != [0xFF, 0xD8] {
        return Ok(Err("not a JPEG: no SOI marker".into()));
    }
    let truncated = || {
        Ok(Err(
            "truncated JPEG: it ends before the EOI marker".to_string()
        ))
    };
    let mut cuts = Vec::new();
    // After a scan header, the entropy-coded data runs to the next marker.
    let mut in_scan = false;
    loop {
        if in_scan {
            // In the data, 0xFF 0x00 is a stuffed 0xFF and 0xFF 0xD0..D7 a
            // restart marker; any other marker ends the scan.
            if !b.skip_to_ff()? {
                return truncated();
            }
        }
        let start = b.pos();
        match b.byte()? {
            None => return truncated(),
            Some(0xFF) => {}
            Some(_) => {
                return Ok(Err(format!(
                    "corrupt JPEG: byte {start} should start a marker"
                )))
            }
        }
        // Fill bytes: any number of 0xFF before the marker code.
        let mut code = 0xFF;
        while code == 0xFF {
            code = match b.byte()? {
                Some(c) => c,
                None => return truncated(),
            };
        }
        // Where the marker's own 0xFF is (fill bytes before it stay).
        let start = b.pos() - 2;
        match code {
            0x00 | 0xD0..=0xD7 if in_scan => continue,
            0xD9 => {
                if !b.at_end()? {
                    return Ok(Err(
                        "data appended after the JPEG's EOI marker would not be inspected".into(),
                    ));
                }
                return Ok(Ok(cuts));
            }
            0x01 | 0xD0..=0xD7 => continue,
            0xD8 => return Ok(Err("corrupt JPEG: a second SOI marker".into())),
            0x00 => {
                return Ok(Err(format!(
                    "corrupt JPEG: a stuffed byte outside a scan at byte {start}"
                )))
            }
            _ => {}
        }
        let mut len = [0u8; 2];
        if !b.exact(&mut len)? {
            return truncated();
        }
        let len = u16::from_be_bytes(len);
        if len < 2 {
            return Ok(Err(format!(
                "corrupt JPEG: segment length {len} at byte {start}"
            )));
        }
        let mut payload = vec![0u8; usize::from(len) - 2];
        if !b.exact(&mut payload)? {
            return truncated();
        }
        in_scan = code == 0xDA;
        let end = b.pos();
        if let Some((detector, field)) = jpeg_metadata(code, &payload) {
            cuts.push(Cut {
                start,
                end,
                detector,
                field,
            });
        }
    }
}

/// An application or comment segment that is metadata, named; `None` for
/// what the picture needs.
fn jpeg_metadata(code: u8, payload: &[u8]) -> Option<(&'static str, String)> {
    let app = match code {
        0xE0..=0xEF => code - 0xE0,
        0xFE => return Some(("image_metadata", "COM".into())),
        _ => return None,
    };
    let id = |p: &[u8]| payload.starts_with(p);
    match app {
        0 if id(b"JFIF\0") || id(b"JFXX\0") => None,
        2 if id(b"ICC_PROFILE\0") => None,
        14 if id(b"Adobe") => None,
        1 if id(b"Exif\0\0") => {
            let gps = exif_has_gps(&payload[6..]);
            Some((
                if gps { "image_gps" } else { "image_metadata" },
                "APP1 Exif".into(),
            ))
        }
        1 if id(b"http://ns.adobe.com/xap/1.0/") => Some((
            if xmp_has_gps(payload) {
                "image_gps"
            } else {
                "image_metadata"
            },
            "APP1 XMP".into(),
        )),
        13 => Some(("image_metadata", "APP13 IPTC/Photoshop".into())),
        n => Some(("image_metadata", format!("APP{n}"))),
    }
}

/// Does this TIFF structure (an EXIF block) have a GPS directory in its
/// first directory (tag 0x8825)? A malformed block says no: it is cut out
/// all the same, only named less precisely.
fn exif_has_gps(tiff: &[u8]) -> bool {
    let le = match tiff.get(..2) {
        Some(b"II") => true,
        Some(b"MM") => false,
        _ => return false,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b = tiff.get(at..at.checked_add(2)?)?;
        Some(if le {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b = tiff.get(at..at.checked_add(4)?)?;
        let a = [b[0], b[1], b[2], b[3]];
        Some(if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    };
    let Some(ifd) = u32_at(4).and_then(|o| usize::try_from(o).ok()) else {
        return false;
    };
    let Some(n) = u16_at(ifd) else {
        return false;
    };
    (0..usize::from(n)).any(|i| {
        ifd.checked_add(2 + 12 * i)
            .and_then(u16_at)
            .is_some_and(|tag| tag == 0x8825)
    })
}

/// Does an XMP packet hold a GPS position (`exif:GPSLatitude`)?
pub(crate) fn xmp_has_gps(xmp: &[u8]) -> bool {
    memchr::memmem::find(xmp, b"GPSLatitude").is_some()
        || memchr::memmem::find(xmp, b"GPSLongitude").is_some()
}

/// PNG chunks a decoder needs to show the picture as intended: the
/// critical ones, colour, transparency, pixel size and animation.
const PNG_KEEP: &[&[u8; 4]] = &[
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB",
    b"cICP", b"mDCv", b"cLLi", b"bKGD", b"hIST", b"pHYs", b"sPLT", b"acTL", b"fcTL", b"fdAT",
];

/// Walks the PNG's chunks with their CRCs, IHDR first and IEND last.
fn png(b: &mut Bytes<'_>) -> Walk {
    let mut sig = [0u8; 8];
    if !b.exact(&mut sig)? || sig != *b"\x89PNG\r\n\x1a\n" {
        return Ok(Err("truncated PNG: no signature".into()));
    }
    let truncated = || Ok(Err("truncated PNG: a chunk ends early".to_string()));
    let mut cuts = Vec::new();
    let mut first = true;
    loop {
        let start = b.pos();
        let mut hdr = [0u8; 8];
        if !b.exact(&mut hdr)? {
            return Ok(Err("truncated PNG: it ends before the IEND chunk".into()));
        }
        let len = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let ty = [hdr[4], hdr[5], hdr[6], hdr[7]];
        if len > PNG_CHUNK_MAX || !ty.iter().all(u8::is_ascii_alphabetic) {
            return Ok(Err("corrupt PNG: a chunk header is invalid".into()));
        }
        if first && &ty != b"IHDR" {
            return Ok(Err("corrupt PNG: the first chunk is not IHDR".into()));
        }
        first = false;
        let keep = PNG_KEEP.contains(&&ty);
        let name = String::from_utf8_lossy(&ty).into_owned();
        if !keep && ty[0].is_ascii_uppercase() {
            // A critical chunk no decoder knows: the image cannot be shown,
            // so it cannot be vouched for either.
            return Ok(Err(format!(
                "corrupt PNG: unknown critical chunk {name} at byte {start}"
            )));
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&ty);
        let peek = !keep && (len as usize) <= CHUNK_PEEK_MAX;
        let mut data = Vec::new();
        if !b.skip(u64::from(len), &mut |s| {
            crc.update(s);
            if peek {
                data.extend_from_slice(s);
            }
        })? {
            return truncated();
        }
        let mut c = [0u8; 4];
        if !b.exact(&mut c)? {
            return truncated();
        }
        if u32::from_be_bytes(c) != crc.finalize() {
            return Ok(Err(format!(
                "corrupt PNG: the checksum of chunk {name} at byte {start} does not match"
            )));
        }
        if !keep {
            let gps = match &ty {
                b"eXIf" => exif_has_gps(&data),
                b"iTXt" | b"tEXt" | b"zTXt" => xmp_has_gps(&data),
                _ => false,
            };
            cuts.push(Cut {
                start,
                end: b.pos(),
                detector: if gps { "image_gps" } else { "image_metadata" },
                field: name,
            });
        }
        if &ty == b"IEND" {
            if !b.at_end()? {
                return Ok(Err(
                    "data appended after the PNG's IEND chunk would not be inspected".into(),
                ));
            }
            return Ok(Ok(cuts));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(f: fn(&mut Bytes<'_>) -> Walk, data: &[u8]) -> Result<Vec<Cut>, String> {
        let mut r: &[u8] = data;
        let mut b = Bytes::new(&mut r);
        match f(&mut b) {
            Ok(w) => w,
            Err(e) => Err(e.to_string()),
        }
    }

    fn seg(code: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0xFF, code];
        v.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// An EXIF block whose first directory has one entry, `tag`.
    fn exif(tag: u16) -> Vec<u8> {
        let mut v = b"Exif\0\0II*\0\x08\0\0\0\x01\0".to_vec();
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&[4, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        v.extend_from_slice(&[0, 0, 0, 0]);
        v
    }

    fn tiny_jpeg(extra: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        v.extend(seg(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
        for e in extra {
            v.extend_from_slice(e);
        }
        v.extend(seg(0xDB, &[0; 65]));
        v.extend(seg(0xDA, &[1, 1, 0, 0, 63, 0]));
        // Entropy data with a stuffed byte and a restart marker.
        v.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56]);
        v.extend_from_slice(&[0xFF, 0xD9]);
        v
    }

    #[test]
    fn jpeg_keeps_the_picture_and_names_what_goes() {
        let gps = seg(0xE1, &exif(0x8825));
        let plain = seg(0xE1, &exif(0x010F));
        let com = seg(0xFE, b"taken by someone");
        let img = tiny_jpeg(&[gps.clone(), plain.clone(), com.clone()]);
        let cuts = walk(jpeg, &img).unwrap();
        let names: Vec<_> = cuts
            .iter()
            .map(|c| (c.detector, c.field.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("image_gps", "APP1 Exif"),
                ("image_metadata", "APP1 Exif"),
                ("image_metadata", "COM")
            ]
        );
        // The cuts are exactly the three segments, back to back after JFIF.
        let first = 2 + 18;
        assert_eq!(cuts[0].start, first as u64);
        assert_eq!(cuts[0].end - cuts[0].start, gps.len() as u64);
        assert_eq!(
            cuts[2].end,
            (first + gps.len() + plain.len() + com.len()) as u64
        );
        assert!(walk(jpeg, &tiny_jpeg(&[])).unwrap().is_empty());
    }

    #[test]
    fn jpeg_structure_faults_are_named() {
        let img = tiny_jpeg(&[]);
        assert!(walk(jpeg, &img[..img.len() - 2])
            .unwrap_err()
            .contains("truncated"));
        let mut tail = img.clone();
        tail.extend_from_slice(b"zip");
        assert!(walk(jpeg, &tail).unwrap_err().contains("appended"));
        assert!(walk(jpeg, b"\xFF\xD8\xFF\xE1\x00\x01")
            .unwrap_err()
            .contains("length"));
        assert!(walk(jpeg, b"GIF89a").unwrap_err().contains("SOI"));
    }

    fn chunk(ty: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut v = (data.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(ty);
        v.extend_from_slice(data);
        let mut c = crc32fast::Hasher::new();
        c.update(ty);
        c.update(data);
        v.extend_from_slice(&c.finalize().to_be_bytes());
        v
    }

    fn tiny_png(extra: &[Vec<u8>]) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
        v.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]));
        for e in extra {
            v.extend_from_slice(e);
        }
        v.extend(chunk(b"IDAT", b"x\x9cc\0\0\0\x01\0\x01"));
        v.extend(chunk(b"IEND", b""));
        v
    }

    #[test]
    fn png_cuts_text_and_exif_chunks() {
        let text = chunk(b"tEXt", b"Author\0someone");
        let ex = chunk(b"eXIf", &exif(0x8825)[6..]);
        let phys = chunk(b"pHYs", &[0, 0, 0, 1, 0, 0, 0, 1, 0]);
        let cuts = walk(png, &tiny_png(&[text.clone(), phys, ex])).unwrap();
        let names: Vec<_> = cuts
            .iter()
            .map(|c| (c.detector, c.field.as_str()))
            .collect();
        assert_eq!(names, [("image_metadata", "tEXt"), ("image_gps", "eXIf")]);
        assert_eq!(cuts[0].end - cuts[0].start, text.len() as u64);
        let bad = tiny_png(&[chunk(b"ZZZZ", b"")]);
        assert!(walk(png, &bad).unwrap_err().contains("critical"));
        let mut broken = tiny_png(&[text]);
        let at = broken.len() - 30;
        broken[at] ^= 1;
        assert!(walk(png, &broken).is_err());
    }
}
