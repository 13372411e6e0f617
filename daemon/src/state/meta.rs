//! Package metadata as stored with queued and held packages (JSON in the
//! redb tables): one serde type, so the queue, the holds and their readers
//! share one mapping instead of hand-written JSON in each.
//!
//! The format is the one earlier versions wrote field by field (ids and
//! digests in hex, the inspection verdict as a word), so existing stores
//! read as before. Unknown fields are allowed on purpose: the queue adds
//! its own keys (`first_seq`, `heal_resent`) to the same object.

use ferry_protocol::{Inspection, InspectionVerdict, PackageId, PackageMeta};
use serde::{Deserialize, Serialize};

/// [`PackageMeta`] as stored.
#[derive(Debug, Serialize, Deserialize)]
struct StoredMeta {
    id: String,
    channel: String,
    size: u64,
    digest: String,
    file_name: String,
    content_type: String,
    sender_identity: String,
    created_unix_ms: u64,
    #[serde(default)]
    inspection: Option<StoredInspection>,
    /// The queue's `first_seq` key (`ingress::queue::FIRST_SEQ_KEY`), read
    /// here so that the send loop parses a description once; written by
    /// the queue, never by [`meta_to_json`].
    #[serde(default, skip_serializing)]
    first_seq: Option<u64>,
}

/// [`Inspection`] as stored.
#[derive(Debug, Serialize, Deserialize)]
struct StoredInspection {
    profile: String,
    verdict: StoredVerdict,
    sha256_before: String,
    sha256_after: String,
}

/// [`InspectionVerdict`] as stored.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoredVerdict {
    Pass,
    Masked,
    Reviewed,
}

impl From<&PackageMeta> for StoredMeta {
    fn from(m: &PackageMeta) -> StoredMeta {
        StoredMeta {
            id: m.id.to_hex(),
            channel: m.channel.clone(),
            size: m.size,
            digest: hex::encode(&m.digest),
            file_name: m.file_name.clone(),
            content_type: m.content_type.clone(),
            sender_identity: m.sender_identity.clone(),
            created_unix_ms: m.created_unix_ms,
            inspection: m.inspection.as_ref().map(|i| StoredInspection {
                profile: i.profile.clone(),
                verdict: match i.verdict {
                    InspectionVerdict::Pass => StoredVerdict::Pass,
                    InspectionVerdict::Masked => StoredVerdict::Masked,
                    InspectionVerdict::Reviewed => StoredVerdict::Reviewed,
                },
                sha256_before: hex::encode(&i.sha256_before),
                sha256_after: hex::encode(&i.sha256_after),
            }),
            first_seq: None,
        }
    }
}

impl StoredMeta {
    /// The package description, or none when an id or digest is not hex.
    fn into_meta(self) -> Option<PackageMeta> {
        let inspection = match self.inspection {
            None => None,
            Some(i) => Some(Inspection {
                profile: i.profile,
                verdict: match i.verdict {
                    StoredVerdict::Pass => InspectionVerdict::Pass,
                    StoredVerdict::Masked => InspectionVerdict::Masked,
                    StoredVerdict::Reviewed => InspectionVerdict::Reviewed,
                },
                sha256_before: hex::decode(i.sha256_before).ok()?,
                sha256_after: hex::decode(i.sha256_after).ok()?,
            }),
        };
        Some(PackageMeta {
            id: PackageId::from_hex(&self.id)?,
            channel: self.channel,
            size: self.size,
            digest: hex::decode(self.digest).ok()?,
            file_name: self.file_name,
            content_type: self.content_type,
            sender_identity: self.sender_identity,
            created_unix_ms: self.created_unix_ms,
            inspection,
        })
    }
}

/// The package description as stored in the queue and with held packages.
pub fn meta_to_json(m: &PackageMeta) -> serde_json::Value {
    // Serializing plain strings and integers cannot fail; Null is never
    // stored because every reader refuses it.
    serde_json::to_value(StoredMeta::from(m)).unwrap_or(serde_json::Value::Null)
}

/// Reads [`meta_to_json`] back (and what earlier versions stored); none
/// when it is not a package description.
pub fn meta_from_json(v: &serde_json::Value) -> Option<PackageMeta> {
    StoredMeta::deserialize(v).ok()?.into_meta()
}

/// A queued package's description read straight from its stored text, with
/// the first sequence number the queue recorded in it (`first_seq`), if
/// any: one parse where [`meta_from_json`] needs the text parsed into a
/// value first. None when it is not a package description.
pub fn queued_meta_from_text(text: &str) -> Option<(PackageMeta, Option<u64>)> {
    let stored: StoredMeta = serde_json::from_str(text).ok()?;
    let first_seq = stored.first_seq;
    Some((stored.into_meta()?, first_seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(inspection: Option<Inspection>) -> PackageMeta {
        PackageMeta {
            id: PackageId([7; 16]),
            channel: "land-stats".into(),
            size: 1234,
            digest: vec![0xab; 32],
            file_name: "a b.csv".into(),
            content_type: "text/csv".into(),
            sender_identity: "CN=feeder".into(),
            created_unix_ms: 1_700_000_000_000,
            inspection,
        }
    }

    /// The shape the hand-written mapping wrote before the serde type, key
    /// by key: stores written by earlier versions must still read.
    fn old_shape(m: &PackageMeta) -> serde_json::Value {
        serde_json::json!({
            "id": m.id.to_hex(),
            "channel": m.channel,
            "size": m.size,
            "digest": hex::encode(&m.digest),
            "file_name": m.file_name,
            "content_type": m.content_type,
            "sender_identity": m.sender_identity,
            "created_unix_ms": m.created_unix_ms,
            "inspection": m.inspection.as_ref().map(|i| serde_json::json!({
                "profile": i.profile,
                "verdict": i.verdict.as_str(),
                "sha256_before": hex::encode(&i.sha256_before),
                "sha256_after": hex::encode(&i.sha256_after),
            })),
        })
    }

    #[test]
    fn the_old_hand_written_shape_round_trips() {
        for verdict in [
            InspectionVerdict::Pass,
            InspectionVerdict::Masked,
            InspectionVerdict::Reviewed,
        ] {
            let m = sample(Some(Inspection {
                profile: "csv".into(),
                verdict,
                sha256_before: vec![1; 32],
                sha256_after: vec![2; 32],
            }));
            let old = old_shape(&m);
            assert_eq!(meta_to_json(&m), old, "written as before");
            assert_eq!(meta_from_json(&old), Some(m), "read as before");
        }
        let m = sample(None);
        assert_eq!(meta_to_json(&m), old_shape(&m));
        assert_eq!(meta_from_json(&old_shape(&m)), Some(m.clone()));
        // The queue's own keys sit in the same object.
        let mut with_queue_keys = old_shape(&m);
        with_queue_keys["first_seq"] = serde_json::json!(41);
        with_queue_keys["heal_resent"] = serde_json::json!(true);
        assert_eq!(meta_from_json(&with_queue_keys), Some(m));
    }

    #[test]
    fn a_malformed_description_is_none() {
        let m = sample(None);
        let mut bad = old_shape(&m);
        bad["id"] = serde_json::json!("not hex");
        assert_eq!(meta_from_json(&bad), None);
        let mut bad = old_shape(&m);
        bad["inspection"] = serde_json::json!({"profile": "x", "verdict": "maybe",
            "sha256_before": "", "sha256_after": ""});
        assert_eq!(meta_from_json(&bad), None);
        assert_eq!(meta_from_json(&serde_json::json!(null)), None);
        assert_eq!(queued_meta_from_text("null"), None);
        assert_eq!(queued_meta_from_text(&bad.to_string()), None);
        assert_eq!(queued_meta_from_text("{\"id\":"), None);
    }

    #[test]
    fn the_send_loop_reads_a_queued_description_and_its_first_seq_in_one_parse() {
        use crate::ingress::queue::{with_first_seq, FIRST_SEQ_KEY};
        use crate::state::store::{QueueState, QueuedPackage};
        let m = sample(None);
        let text = meta_to_json(&m).to_string();
        assert_eq!(queued_meta_from_text(&text), Some((m.clone(), None)));
        // The key the queue writes is the one read here.
        let q = QueuedPackage {
            seq: 41,
            path: "/q/41".into(),
            meta_json: text,
            inline: false,
            state: QueueState::Queued,
            bytes: m.size,
            enqueued_unix_ms: 0,
        };
        let recorded = with_first_seq(&q).meta_json;
        assert!(recorded.contains(FIRST_SEQ_KEY));
        assert_eq!(
            queued_meta_from_text(&recorded),
            Some((m.clone(), Some(41)))
        );
        // The first number is never written back by the description.
        let (read, _) = queued_meta_from_text(&recorded).unwrap();
        assert!(!meta_to_json(&read).to_string().contains(FIRST_SEQ_KEY));
    }
}
