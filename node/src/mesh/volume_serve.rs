//! `meshnode volumes` and `meshnode cp` on the node that holds a vessel's
//! volumes: the forwarded requests, answered off the event loop and off
//! the host's lock (the filesystem side is `vessel::volume_read`).

use protocol::forward::{ForwardRequest, ForwardResponse};
use protocol::refusal::Refusal;

use crate::sync::lock;
use crate::vessel::volume_read::{host_path, list, read_page, summary, volumes_of};
use crate::vessel::Host;

/// Answers one of `Volumes`, `VolumeList`, `VolumeRead` about a vessel
/// here; `me` names this node in the answer.
pub async fn serve(
    host: &std::sync::Arc<std::sync::Mutex<Host>>,
    me: String,
    request: ForwardRequest,
) -> Result<ForwardResponse, Refusal> {
    let vessel = match &request {
        ForwardRequest::Volumes { vessel }
        | ForwardRequest::VolumeList { vessel, .. }
        | ForwardRequest::VolumeRead { vessel, .. } => *vessel,
        other => {
            return Err(Refusal::internal(format!(
                "not a volume request: {other:?}"
            )))
        }
    };
    let volumes = volumes_of(&lock(host), vessel)?;
    let work = move || match request {
        ForwardRequest::VolumeList { path, .. } => {
            let at = host_path(&volumes, &path)?;
            Ok(ForwardResponse::VolumeListing(list(&at, &path, me)?))
        }
        ForwardRequest::VolumeRead { path, offset, .. } => {
            let at = host_path(&volumes, &path)?;
            Ok(ForwardResponse::VolumePage(read_page(&at, &path, offset)?))
        }
        _ => Ok(ForwardResponse::Volumes {
            node: me,
            volumes: summary(&volumes),
        }),
    };
    tokio::task::spawn_blocking(work)
        .await
        .map_err(Refusal::internal)?
}
