//! Packages accepted but held out of the sequence order: awaiting the
//! reviewers' approval, or waiting for the policy's time window to open.
//! What both kinds of hold share (dropping one) lives here, so neither
//! imports the other for it.

pub mod approvals;
pub mod window_holds;

use crate::admin::protocol;
use crate::ingress::shared::Shared;
use crate::state::store::{HeldPackage, HoldKind};
use crate::DaemonError;

/// Deletes a held package that will never be sent, and counts it refused.
pub(crate) fn drop_held(s: &Shared, id: [u8; 16], h: &HeldPackage) -> Result<(), DaemonError> {
    s.store.hold_remove(id)?;
    let _ = std::fs::remove_file(&h.path);
    let channel = h
        .meta()
        .get("channel")
        .and_then(|c| c.as_str())
        .map(str::to_owned)
        .unwrap_or_default();
    protocol::count_rejected(&s.status, &channel);
    let kind = h.kind();
    protocol::update(&s.status, |st| match kind {
        HoldKind::Approval => st.awaiting_approval = st.awaiting_approval.saturating_sub(1),
        HoldKind::Window { .. } => st.awaiting_window = st.awaiting_window.saturating_sub(1),
        HoldKind::ChannelStopped => {}
    });
    Ok(())
}
