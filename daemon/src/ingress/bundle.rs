//! Bundling on the ingress side: small packages queued one after another
//! on one channel go to the protocol sender as one bundle (see
//! `ferry_protocol::bundle`), so a burst of 1 KiB packages pays one
//! signature, one set of manifest copies and one FEC block per bundle
//! instead of per package.
//!
//! Nothing about a member changes but how it crosses: it keeps its queue
//! record (id, sequence number, description, its own `package.sent` audit
//! record), and a crash while a bundle is sending puts each member back in
//! the queue like any package (the egress ledger drops a member it already
//! delivered). Only packages whose numbers follow one another are bundled,
//! because the bundle's signed manifest names its members by that range.

use crate::ingress::shared::Shared;
use crate::DaemonError;
use ferry_protocol::bundle::{self, BundleMember, BUNDLE_CONTENT_TYPE};
use ferry_protocol::{PackageId, PackageMeta};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A queued package that may join a bundle.
pub(crate) struct Candidate {
    pub(crate) id: [u8; 16],
    pub(crate) seq: u64,
    pub(crate) first_seq: Option<u64>,
    pub(crate) meta: PackageMeta,
    pub(crate) path: String,
    /// Its body is kept in the state store, not in the file at `path`.
    pub(crate) inline: bool,
}

/// Packages gathered for one bundle, in sequence order.
#[derive(Default)]
pub(crate) struct Run {
    pub(crate) members: Vec<Candidate>,
    bytes: u64,
}

impl Run {
    /// Whether `c` may join: its number follows the last member's, same
    /// channel, and the bundle stays within both bounds.
    pub(crate) fn admits(&self, c: &Candidate, max_packages: u16, max_bytes: u64) -> bool {
        if c.meta.size > max_bytes || max_packages < 2 {
            return false;
        }
        let Some(last) = self.members.last() else {
            return true;
        };
        last.seq.checked_add(1) == Some(c.seq)
            && last.meta.channel == c.meta.channel
            && self.members.len() < usize::from(max_packages)
            && self.bytes.saturating_add(c.meta.size) <= max_bytes
    }

    pub(crate) fn push(&mut self, c: Candidate) {
        self.bytes += c.meta.size;
        self.members.push(c);
    }

    pub(crate) fn take(&mut self) -> Vec<Candidate> {
        self.bytes = 0;
        std::mem::take(&mut self.members)
    }
}

/// A bundle ready for the sender: its description and payload.
pub(crate) struct Built {
    pub(crate) meta: PackageMeta,
    pub(crate) payload: Vec<u8>,
}

/// Reads every member's queued copy and builds the bundle. A copy that
/// cannot be read whole is the same error a lone package's would be.
///
/// `Ok(Err((i, why)))`: member `i`'s queued copy cannot be read whole (see
/// [`open_queued`]); the caller fails that one and builds without it.
pub(crate) fn build(
    s: &Shared,
    members: &[Candidate],
) -> Result<Result<Built, (usize, String)>, DaemonError> {
    // The bodies kept in the store, in one read.
    let kept_seqs: Vec<u64> = members.iter().filter(|m| m.inline).map(|m| m.seq).collect();
    let mut kept = s.store.queued_bodies(&kept_seqs)?.into_iter();
    let mut bodies = Vec::with_capacity(members.len());
    for (i, m) in members.iter().enumerate() {
        if m.inline {
            match checked_kept(kept.next().flatten(), m.meta.size) {
                Ok(body) => bodies.push(body),
                Err(why) => return Ok(Err((i, why))),
            }
            continue;
        }
        let file = match open_queued_file(m) {
            Ok(f) => f,
            Err(why) => return Ok(Err((i, why))),
        };
        let len = usize::try_from(m.meta.size).map_err(|_| DaemonError::Package {
            id: hex::encode(m.id),
            what: "too large to bundle".into(),
        })?;
        let mut body = vec![0u8; len];
        if let Err(e) = file.read_exact_at(&mut body, 0) {
            return Ok(Err((i, format!("reading it failed: {e}"))));
        }
        bodies.push(body);
    }
    let table: Vec<(BundleMember, &[u8])> = members
        .iter()
        .zip(&bodies)
        .map(|(m, b)| {
            (
                BundleMember {
                    meta: m.meta.clone(),
                    seq: m.seq,
                    first_seq: m.first_seq.filter(|f| *f != m.seq),
                },
                b.as_slice(),
            )
        })
        .collect();
    let payload = bundle::encode(&table).map_err(|e| DaemonError::Internal(e.to_string()))?;
    let mut digest = s.keys.link_crypto().new_digest();
    digest.update(&payload);
    let (first, last) = match (members.first(), members.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return Err(DaemonError::Internal("empty bundle".into())),
    };
    let meta = PackageMeta {
        id: PackageId(crate::ingress::admission::rand_id()?),
        channel: first.meta.channel.clone(),
        size: payload.len() as u64,
        digest: digest.finish(),
        file_name: format!("bundle-{}-{}", first.seq, last.seq),
        content_type: BUNDLE_CONTENT_TYPE.into(),
        sender_identity: "ferryd".into(),
        created_unix_ms: crate::now_millis().0,
        inspection: None,
    };
    Ok(Ok(Built { meta, payload }))
}

/// A queued package's payload, open to be read.
pub(crate) enum QueuedCopy {
    /// Its file in the queue directory.
    File(File),
    /// Its body, kept in the state store.
    Kept(Vec<u8>),
}

/// Opens a queued package's copy: its file or the body kept in the
/// store, checking it still has the size it was queued with.
/// `Ok(Err(why))` says why not, for the operator; `Err` is the store
/// failing.
pub(crate) fn open_queued(
    s: &Shared,
    c: &Candidate,
) -> Result<Result<QueuedCopy, String>, DaemonError> {
    if c.inline {
        return Ok(kept_body(s, c.seq, c.meta.size)?.map(QueuedCopy::Kept));
    }
    Ok(open_queued_file(c).map(QueuedCopy::File))
}

/// The body kept in the store under `seq`, if it is there with the
/// `size` queued. `Ok(Err(why))` says why not; `Err` is the store failing.
pub(crate) fn kept_body(
    s: &Shared,
    seq: u64,
    size: u64,
) -> Result<Result<Vec<u8>, String>, DaemonError> {
    let body = s.store.queued_bodies(&[seq])?.into_iter().next().flatten();
    Ok(checked_kept(body, size))
}

/// A body kept in the store, if it is there with the size queued.
fn checked_kept(body: Option<Vec<u8>>, size: u64) -> Result<Vec<u8>, String> {
    let Some(body) = body else {
        return Err("its body, kept in the state store, is missing".into());
    };
    if body.len() as u64 != size {
        return Err(format!(
            "its body kept in the state store holds {} bytes, {size} were queued",
            body.len(),
        ));
    }
    Ok(body)
}

/// Opens a queued package's file, checking it still has the size it was
/// queued with. `Err` says why not, for the operator: the file was
/// deleted or damaged in the queue directory, or the disk failed.
fn open_queued_file(c: &Candidate) -> Result<File, String> {
    let file = File::open(Path::new(&c.path)).map_err(|e| format!("opening it failed: {e}"))?;
    let len = file
        .metadata()
        .map_err(|e| format!("reading its size failed: {e}"))?
        .len();
    if len != c.meta.size {
        return Err(format!(
            "it holds {len} bytes, {} were queued (changed in the queue directory)",
            c.meta.size
        ));
    }
    Ok(file)
}
