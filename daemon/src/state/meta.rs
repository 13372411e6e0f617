//! Package metadata as stored with queued and held packages (JSON in the
//! redb tables).

use ferry_protocol::{PackageId, PackageMeta};

/// The package description as stored in the queue.
pub fn meta_to_json(m: &PackageMeta) -> serde_json::Value {
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

/// Reads the `inspection` of [`meta_to_json`]: absent or null is none;
/// anything else must be well formed.
pub(crate) fn inspection_from_json(
    v: Option<&serde_json::Value>,
) -> Option<Option<ferry_protocol::Inspection>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Some(None);
    };
    let verdict = match v.get("verdict")?.as_str()? {
        "pass" => ferry_protocol::InspectionVerdict::Pass,
        "masked" => ferry_protocol::InspectionVerdict::Masked,
        "reviewed" => ferry_protocol::InspectionVerdict::Reviewed,
        _ => return None,
    };
    Some(Some(ferry_protocol::Inspection {
        profile: v.get("profile")?.as_str()?.to_string(),
        verdict,
        sha256_before: hex::decode(v.get("sha256_before")?.as_str()?).ok()?,
        sha256_after: hex::decode(v.get("sha256_after")?.as_str()?).ok()?,
    }))
}

/// Reads [`meta_to_json`] back.
pub fn meta_from_json(v: &serde_json::Value) -> Option<PackageMeta> {
    Some(PackageMeta {
        id: PackageId::from_hex(v.get("id")?.as_str()?)?,
        channel: v.get("channel")?.as_str()?.to_string(),
        size: v.get("size")?.as_u64()?,
        digest: hex::decode(v.get("digest")?.as_str()?).ok()?,
        file_name: v.get("file_name")?.as_str()?.to_string(),
        content_type: v.get("content_type")?.as_str()?.to_string(),
        sender_identity: v.get("sender_identity")?.as_str()?.to_string(),
        created_unix_ms: v.get("created_unix_ms")?.as_u64()?,
        inspection: inspection_from_json(v.get("inspection"))?,
    })
}
