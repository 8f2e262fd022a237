//! FETCH (draft-18 §10.12): a past range of a track, answered from the cache when it holds
//! the start of the range, otherwise fetched from the track's source (the publisher's
//! session or the upstream link), once for all who ask at about the same time.
//!
//! Bounded as [`FetchLimits`](crate::fetch_merge::FetchLimits) says: a session's FETCHes
//! being served at once (more are refused with EXCESSIVE_LOAD), the groups one FETCH spans
//! (a longer range is cut, and FETCH_OK's end location says where it stops), and the bytes
//! one reads from its source (charged to the cache budget). Each refusal and cut counts in
//! `stagecast_limit_refused_total`.

use std::sync::Arc;
use std::time::Duration;

use moq_transport::coding::{KeyValuePairs, Location};
use moq_transport::data::{FetchRecord, FetchRecordObject};
use moq_transport::message::{FetchType, RequestErrorCode};
use moq_transport::session::{FetchOkInfo, FetchRequested, SessionError};
use stagecast_proto::path::path_from_namespace;

use crate::auth::SessionAuth;
use crate::fetch_merge::{clamp_range, FetchedObject, Keep};
use crate::relay::Relay;
use crate::router::SessionId;

/// How long a Joining FETCH may wait for its subscription (a proxied one waits as long for
/// its source's answer: `fetch_merge.rs`).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers one FETCH that arrived on session `from`.
pub async fn serve_fetch(
    relay: Relay,
    request: FetchRequested,
    from: SessionId,
    auth: Arc<SessionAuth>,
) {
    relay.metrics().fetches_total.inc();
    // A long range is cut; a Joining FETCH keeps the groups next to its subscription.
    let keep = match request.request.fetch_type {
        FetchType::Standalone => Keep::Start,
        _ => Keep::End,
    };
    // Held until this FETCH is answered (or refused) in full.
    let Some(_permit) = relay.fetch_merger().begin(from) else {
        relay.metrics().limits_refused.inc("fetch_per_session");
        let _ = request.reject(
            RequestErrorCode::ExcessiveLoad,
            &format!(
                "at most {} FETCHes at once per session",
                relay.fetch_merger().limits().per_session
            ),
        );
        return;
    };
    let mut range = match tokio::time::timeout(FETCH_TIMEOUT, request.resolve()).await {
        Ok(Ok(Some(range))) => range,
        // The transport already answered (an unknown or unjoinable subscription).
        Ok(Ok(None)) => return,
        Ok(Err(err)) => {
            tracing::debug!(%err, "cannot resolve FETCH");
            return;
        }
        Err(_) => {
            let _ = request.reject(
                RequestErrorCode::Timeout,
                "the joined subscription did not start in time",
            );
            return;
        }
    };
    let path = path_from_namespace(&range.track_namespace);
    if let Err(err) = auth.check_subscribe(&path) {
        relay.metrics().auth_failures_total.inc();
        let _ = request.reject(RequestErrorCode::Unauthorized, &err.to_string());
        return;
    }
    if let Some((start, end)) = clamp_range(
        range.start_location,
        range.end_location,
        relay.fetch_merger().limits().max_groups,
        keep,
    ) {
        relay.metrics().limits_refused.inc("fetch_groups");
        range.start_location = start;
        range.end_location = end;
    }
    let start = (
        range.start_location.group_id,
        range.start_location.object_id,
    );
    let end = (range.end_location.group_id, range.end_location.object_id);
    let cached = relay
        .cached_track(&range.track_namespace, &range.track_name)
        .and_then(|cache| cache.objects_in(start, end))
        .filter(|objects| !objects.is_empty());
    if let Some(objects) = cached {
        relay.metrics().fetch_cache_hits_total.inc();
        if let Err(err) = respond(request, &objects).await {
            tracing::debug!(%err, "FETCH response broke off");
        }
        return;
    }
    let Some(source) = relay.source_subscriber(&range.track_namespace, from) else {
        let _ = request.reject(
            RequestErrorCode::DoesNotExist,
            &format!(
                "{path}/{} is not cached here for that range",
                range.track_name
            ),
        );
        return;
    };
    let (went_to_source, fetched) = relay.fetch_merger().fetch(source.clone(), range).await;
    if went_to_source {
        relay.metrics().upstream_fetches_total.inc();
    }
    match fetched {
        // Shared with every request merged into this one: payloads are not copied.
        Ok(range) if !range.objects.is_empty() => {
            if let Err(err) = respond(request, &range.objects).await {
                tracing::debug!(%err, "FETCH response broke off");
            }
        }
        Ok(_) => {
            let _ = request.reject(
                RequestErrorCode::DoesNotExist,
                "the source holds nothing in that range",
            );
        }
        Err(err) => {
            let code = match err.limit() {
                Some(limit) => {
                    if went_to_source {
                        relay.metrics().limits_refused.inc(limit);
                    }
                    RequestErrorCode::ExcessiveLoad
                }
                None => RequestErrorCode::DoesNotExist,
            };
            let _ = request.reject(code, &err.to_string());
        }
    }
}

async fn respond(request: FetchRequested, objects: &[FetchedObject]) -> Result<(), SessionError> {
    let (last_group, last_object) = objects
        .last()
        .map(|(info, object_id, _)| (info.group_id, *object_id))
        .unwrap_or_default();
    let mut writer = request
        .respond(FetchOkInfo {
            end_of_track: false,
            end_location: Location::new(last_group, last_object.saturating_add(1)),
            params: KeyValuePairs::default(),
            track_extensions: Default::default(),
        })
        .await?;
    for (info, object_id, payload) in objects {
        writer
            .write_record(&FetchRecord::Object(FetchRecordObject {
                group_id: info.group_id,
                subgroup_id: Some(info.subgroup_id),
                object_id: *object_id,
                publisher_priority: info.priority,
                extension_headers: Default::default(),
                payload_length: payload.len() as u64,
            }))
            .await?;
        writer.write_payload(payload).await?;
    }
    writer.finish().await
}
