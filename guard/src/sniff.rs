//! Type by content, not by name: magic bytes and the first structure of
//! the data decide what a package is; the declared content type and the
//! file-name extension must agree with that.

/// The types the guard knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Text,
    Csv,
    Json,
    GeoJson,
    Xml,
    Pdf,
    Png,
    Jpeg,
    Gif,
    Tiff,
    Zip,
    Gzip,
    Tar,
    /// An office document: a zip archive of XML parts (OOXML or ODF),
    /// inspected as a zip with the archive limits, its XML parts as text.
    Office(Office),
}

/// The office document formats the guard inspects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Office {
    Docx,
    Xlsx,
    Pptx,
    Odt,
    Ods,
    Odp,
}

impl Office {
    const ALL: [Office; 6] = [
        Office::Docx,
        Office::Xlsx,
        Office::Pptx,
        Office::Odt,
        Office::Ods,
        Office::Odp,
    ];

    pub(crate) fn mime(self) -> &'static str {
        match self {
            Office::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            Office::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Office::Pptx => {
                "application/vnd.openxmlformats-officedocument.presentationml.presentation"
            }
            Office::Odt => "application/vnd.oasis.opendocument.text",
            Office::Ods => "application/vnd.oasis.opendocument.spreadsheet",
            Office::Odp => "application/vnd.oasis.opendocument.presentation",
        }
    }

    fn ext(self) -> &'static str {
        match self {
            Office::Docx => "docx",
            Office::Xlsx => "xlsx",
            Office::Pptx => "pptx",
            Office::Odt => "odt",
            Office::Ods => "ods",
            Office::Odp => "odp",
        }
    }
}

impl Kind {
    /// The canonical media type.
    pub(crate) fn mime(self) -> &'static str {
        match self {
            Kind::Text => "text/plain",
            Kind::Csv => "text/csv",
            Kind::Json => "application/json",
            Kind::GeoJson => "application/geo+json",
            Kind::Xml => "application/xml",
            Kind::Pdf => "application/pdf",
            Kind::Png => "image/png",
            Kind::Jpeg => "image/jpeg",
            Kind::Gif => "image/gif",
            Kind::Tiff => "image/tiff",
            Kind::Zip => "application/zip",
            Kind::Gzip => "application/gzip",
            Kind::Tar => "application/x-tar",
            Kind::Office(o) => o.mime(),
        }
    }

    /// A declared media type (parameters ignored, aliases accepted).
    /// `Ok(None)`: nothing declared (`application/octet-stream` or empty).
    pub(crate) fn from_mime(declared: &str) -> Result<Option<Kind>, String> {
        let t = declared
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        Ok(Some(match t.as_str() {
            "" | "application/octet-stream" => return Ok(None),
            "text/plain" => Kind::Text,
            "text/csv" | "application/csv" | "text/comma-separated-values" => Kind::Csv,
            "application/json" | "text/json" => Kind::Json,
            "application/geo+json" | "application/vnd.geo+json" => Kind::GeoJson,
            "application/xml" | "text/xml" => Kind::Xml,
            "application/pdf" => Kind::Pdf,
            "image/png" => Kind::Png,
            "image/jpeg" | "image/jpg" | "image/pjpeg" => Kind::Jpeg,
            "image/gif" => Kind::Gif,
            "image/tiff" => Kind::Tiff,
            "application/zip" | "application/x-zip-compressed" | "application/x-zip" => Kind::Zip,
            "application/gzip" | "application/x-gzip" => Kind::Gzip,
            "application/x-tar" | "application/tar" => Kind::Tar,
            t if Office::ALL.iter().any(|o| o.mime() == t) => {
                match Office::ALL.into_iter().find(|o| o.mime() == t) {
                    Some(o) => Kind::Office(o),
                    None => return Ok(None),
                }
            }
            _ => {
                return Err(format!(
                    "declared type {} is not one the guard can inspect",
                    quoted_token(&t)
                ))
            }
        }))
    }

    /// The type a file-name extension stands for. `Ok(None)`: no extension.
    pub(crate) fn from_name(name: &str) -> Result<Option<Kind>, String> {
        let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
        let Some((stem, ext)) = base.rsplit_once('.') else {
            return Ok(None);
        };
        if stem.is_empty() {
            return Ok(None);
        }
        let ext = ext.to_ascii_lowercase();
        Ok(Some(match ext.as_str() {
            "txt" | "text" => Kind::Text,
            "csv" => Kind::Csv,
            "json" => Kind::Json,
            "geojson" => Kind::GeoJson,
            "xml" => Kind::Xml,
            "pdf" => Kind::Pdf,
            "png" => Kind::Png,
            "jpg" | "jpeg" => Kind::Jpeg,
            "gif" => Kind::Gif,
            "tif" | "tiff" => Kind::Tiff,
            "zip" => Kind::Zip,
            "gz" | "tgz" => Kind::Gzip,
            "tar" => Kind::Tar,
            e if Office::ALL.iter().any(|o| o.ext() == e) => {
                match Office::ALL.into_iter().find(|o| o.ext() == e) {
                    Some(o) => Kind::Office(o),
                    None => return Ok(None),
                }
            }
            _ => {
                return Err(format!(
                    "the extension {} is not one the guard knows; use .txt .csv .json .geojson .xml .pdf .png .jpg .gif .tif .zip .tar .gz .docx .xlsx .pptx .odt .ods .odp",
                    quoted_token(&format!(".{ext}"))
                ))
            }
        }))
    }

    pub(crate) fn is_archive(self) -> bool {
        matches!(self, Kind::Zip | Kind::Gzip | Kind::Tar)
    }

    pub(crate) fn is_text(self) -> bool {
        matches!(
            self,
            Kind::Text | Kind::Csv | Kind::Json | Kind::GeoJson | Kind::Xml
        )
    }

    /// Can a declared or named `self` describe content detected as
    /// `detected`? GeoJSON is JSON, so `.json` may carry it.
    fn admits(self, detected: Kind) -> bool {
        self == detected
            || (self == Kind::Json && detected == Kind::GeoJson)
            // An office document is a zip: either claim may describe it.
            || (matches!(self, Kind::Office(_)) && detected == Kind::Zip)
            || (self == Kind::Zip && matches!(detected, Kind::Office(_)))
    }
}

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sniffed {
    /// A binary format identified by its magic.
    Binary(Kind),
    /// UTF-8 text whose first non-blank character opens JSON.
    JsonLike,
    /// UTF-8 text whose first non-blank character is `<`.
    XmlLike,
    /// Other UTF-8 text (plain text or CSV).
    Plain,
}

/// Formats recognised only to name them in a rejection.
const UNSUPPORTED: &[(&[u8], usize, &str)] = &[
    (b"\x7FELF", 0, "an ELF executable"),
    (b"MZ", 0, "a Windows executable"),
    (b"7z\xBC\xAF\x27\x1C", 0, "a 7-Zip archive"),
    (b"Rar!\x1A\x07", 0, "a RAR archive"),
    (b"BZh", 0, "a bzip2 stream"),
    (b"\xFD7zXZ\x00", 0, "an xz stream"),
    (b"\x28\xB5\x2F\xFD", 0, "a zstd stream"),
    (
        b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1",
        0,
        "an OLE2 document (old Office)",
    ),
    (b"\xFF\xFE", 0, "UTF-16 text (convert it to UTF-8)"),
    (b"\xFE\xFF", 0, "UTF-16 text (convert it to UTF-8)"),
    (b"SQLite format 3\x00", 0, "an SQLite database"),
    (b"\xCA\xFE\xBA\xBE", 0, "a Java class file"),
    (b"RIFF", 0, "a RIFF file (audio, video or WebP)"),
];

/// The refusal of GBK/GB18030 text under a profile that does not allow
/// legacy encodings.
pub(crate) const LEGACY_REFUSAL: &str = "the content is text in a legacy Chinese encoding (GBK/GB18030), not UTF-8: convert it to UTF-8, or send it under a profile with legacy_encodings = true";

/// Is `head` (not UTF-8, no NUL) GBK/GB18030 text? Every byte sequence
/// decodes without error, allowing a character cut off at the end.
pub(crate) fn legacy_chinese(head: &[u8]) -> bool {
    (0..=3.min(head.len())).any(|cut| {
        let part = &head[..head.len() - cut];
        !part.is_empty()
            && encoding_rs::GB18030
                .decode_without_bom_handling_and_without_replacement(part)
                .is_some()
    })
}

/// Identifies `head` (the first bytes, all of them if the data is short).
/// `Err` names what the data is when the guard will not take it.
pub(crate) fn sniff(head: &[u8]) -> Result<Sniffed, String> {
    let magic: &[(&[u8], Kind)] = &[
        (b"%PDF-", Kind::Pdf),
        (b"\x89PNG\r\n\x1A\n", Kind::Png),
        (b"\xFF\xD8\xFF", Kind::Jpeg),
        (b"GIF87a", Kind::Gif),
        (b"GIF89a", Kind::Gif),
        (b"II*\x00", Kind::Tiff),
        (b"MM\x00*", Kind::Tiff),
        (b"PK\x03\x04", Kind::Zip),
        (b"PK\x05\x06", Kind::Zip),
        (b"\x1F\x8B", Kind::Gzip),
    ];
    for (m, k) in magic {
        if head.starts_with(m) {
            return Ok(Sniffed::Binary(*k));
        }
    }
    if head.len() >= 263 && (&head[257..262] == b"ustar") {
        return Ok(Sniffed::Binary(Kind::Tar));
    }
    for (m, at, what) in UNSUPPORTED {
        if head.get(*at..).is_some_and(|h| h.starts_with(m)) {
            return Err(format!(
                "the content is {what}, which the guard does not accept"
            ));
        }
    }
    // Text: UTF-8 (an incomplete character at the end of the head is
    // fine) without NUL bytes.
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    };
    if !valid && memchr::memchr(0, head).is_none() && legacy_chinese(head) {
        return Err(LEGACY_REFUSAL.into());
    }
    if !valid || memchr::memchr(0, head).is_some() {
        return Err(
            "the content is binary data of no known type (not UTF-8 text, no known magic bytes)"
                .into(),
        );
    }
    let body = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let mut it = body.iter().copied().filter(|b| !b.is_ascii_whitespace());
    Ok(match it.next() {
        Some(b'<') => Sniffed::XmlLike,
        Some(b'{') => Sniffed::JsonLike,
        Some(b'[') => match it.next() {
            Some(b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n' | b']') | None => {
                Sniffed::JsonLike
            }
            _ => Sniffed::Plain,
        },
        _ => Sniffed::Plain,
    })
}

/// Decides the kind to inspect the data as, from what the content looks
/// like, the declared type (`None`: not declared) and the name's
/// extension. `Err` is the reason to reject.
pub(crate) fn resolve(
    sniffed: Sniffed,
    declared: Option<Kind>,
    named: Option<Kind>,
) -> Result<Kind, String> {
    if let (Some(d), Some(n)) = (declared, named) {
        if !d.admits(n) && !n.admits(d) {
            return Err(format!(
                "the declared type {} and the file-name extension ({}) disagree",
                d.mime(),
                n.mime()
            ));
        }
    }
    // The more specific of the two claims.
    let claim = match (declared, named) {
        (Some(Kind::Json), Some(Kind::GeoJson)) => Some(Kind::GeoJson),
        (Some(d), _) => Some(d),
        (None, n) => n,
    };
    let Some(claim) = claim else {
        return Err(
            "neither a content type nor a file-name extension says what this is; declare the type or name the file with its extension"
                .into(),
        );
    };
    let mismatch = |seen: &str| {
        Err(format!(
            "the content is {seen}, but it is declared or named as {}",
            claim.mime()
        ))
    };
    match sniffed {
        Sniffed::Binary(k) => {
            if let (Kind::Office(_), Kind::Zip) = (claim, k) {
                Ok(claim)
            } else if claim.admits(k) {
                Ok(k)
            } else {
                mismatch(k.mime())
            }
        }
        Sniffed::XmlLike => match claim {
            Kind::Xml => Ok(Kind::Xml),
            _ => mismatch("XML (it starts with `<`)"),
        },
        Sniffed::JsonLike => match claim {
            Kind::Json | Kind::GeoJson => Ok(claim),
            _ => mismatch("JSON (it starts with `{` or `[`)"),
        },
        Sniffed::Plain => match claim {
            Kind::Text | Kind::Csv => Ok(claim),
            k if k.is_text() => mismatch("plain text"),
            _ => mismatch("text"),
        },
    }
}

/// A sender's type or extension, quoted in a reason only when it is a
/// short token of the characters media types and extensions are made of;
/// anything else is sender text that may hold anything, and is not shown
/// (the report rule in `redact` removes markings and personal data from
/// what is shown).
fn quoted_token(t: &str) -> String {
    let ok = t.len() <= 64
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-/".contains(&b));
    if ok {
        format!("`{t}`")
    } else {
        "(not shown: not a plain token)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_decides_and_claims_must_agree() {
        let zip = sniff(b"PK\x03\x04rest").unwrap();
        assert_eq!(
            resolve(zip, Some(Kind::Zip), Some(Kind::Zip)),
            Ok(Kind::Zip)
        );
        assert!(resolve(zip, Some(Kind::Csv), Some(Kind::Csv))
            .unwrap_err()
            .contains("application/zip"));
        let csv = sniff(b"a,b\n1,2\n").unwrap();
        assert_eq!(
            resolve(csv, Some(Kind::Csv), Some(Kind::Csv)),
            Ok(Kind::Csv)
        );
        assert!(resolve(csv, Some(Kind::Json), None).is_err());
        assert!(resolve(csv, Some(Kind::Csv), Some(Kind::Text)).is_err());
        let json = sniff(b"  {\"type\":1}").unwrap();
        assert_eq!(resolve(json, None, Some(Kind::GeoJson)), Ok(Kind::GeoJson));
        assert!(resolve(json, Some(Kind::Text), None).is_err());
        assert_eq!(sniff(b"[INFO] started").unwrap(), Sniffed::Plain);
        assert!(sniff(b"\x7FELF\x02").unwrap_err().contains("ELF"));
        assert!(sniff(b"abc\x00def").is_err());
        assert!(sniff(b"\xFF\xFEa\x00").unwrap_err().contains("UTF-16"));
        assert!(sniff(b"ok \xE7\xA7").is_ok(), "cut inside a character");
        assert!(Kind::from_name("x.exe").is_err());
        assert_eq!(Kind::from_name("a.tar.gz"), Ok(Some(Kind::Gzip)));
        assert_eq!(Kind::from_name("README"), Ok(None));
        assert_eq!(
            Kind::from_mime("text/csv; charset=utf-8"),
            Ok(Some(Kind::Csv))
        );
        assert_eq!(Kind::from_mime("application/octet-stream"), Ok(None));
    }
}
