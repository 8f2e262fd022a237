//! One broadcast's transcode: an ffmpeg fed the source's init segment and video chunks,
//! its output ingested and published as the rung tracks, restarted while the source goes
//! on (the rules are in the parent module's doc).

use super::*;

/// One broadcast's transcode: ffmpeg, restarted while the source goes on.
pub(super) struct Transcode {
    pub(super) relay: Relay,
    pub(super) namespace: TrackNamespace,
    pub(super) path: String,
    pub(super) video: CatalogTrack,
    pub(super) rungs: Vec<Rung>,
    pub(super) served: Arc<Served>,
    pub(super) made: watch::Sender<Option<Catalog>>,
    pub(super) ffmpeg: PathBuf,
}

/// How one ffmpeg run ended.
enum RunEnd {
    SourceEnded,
    Died(String),
}

impl Transcode {
    pub(super) async fn run(self) {
        let (init, timescale) = match (self.video.init_segment(), self.video.timescale) {
            (Ok(init), Some(timescale)) if timescale > 0 => (init, timescale),
            _ => {
                tracing::warn!(broadcast = %self.path, "not transcoded: the video track's catalog entry has no init segment or timescale");
                return;
            }
        };
        // Half a GOP would do to tell groups apart; three frames covers rounding between
        // timescales and a source's B-frame decode delay (its tfdt is a decode time,
        // ffmpeg's output, without B-frames, starts at the presentation time).
        let tolerance = self
            .video
            .framerate
            .map_or(0.1, |fps| 3.0 / fps.max(1.0))
            .max(0.05);
        let ids = Mutex::new(SourceTimes {
            groups: GroupIds::new(tolerance),
            captures: CaptureTimes::default(),
        });
        let mut cmaf = CmafBroadcast::new(self.namespace.clone(), self.relay.config().cache)
            .without_interaction()
            .with_first_group_id(0)
            .with_producer_clock(ProducerClock::Encoder);
        let mut backoff = RestartBackoff::default();
        loop {
            let started = Instant::now();
            match self.run_once(&init, timescale, &ids, &mut cmaf).await {
                RunEnd::SourceEnded => {
                    cmaf.finish();
                    return;
                }
                RunEnd::Died(reason) => {
                    let wait = backoff.on_exit(started.elapsed());
                    tracing::warn!(broadcast = %self.path, %reason, wait_ms = wait.as_millis() as u64, "transcoder stopped; the source rendition plays on, starting it again");
                    tokio::time::sleep(wait).await;
                    self.relay.metrics().transcode_restarts_total.inc();
                }
            }
        }
    }

    /// One ffmpeg process, from the source's next group until it or the source ends.
    async fn run_once(
        &self,
        init: &[u8],
        timescale: u32,
        ids: &Mutex<SourceTimes>,
        cmaf: &mut CmafBroadcast,
    ) -> RunEnd {
        let mut followed = match self
            .relay
            .follow_published(&self.namespace, &self.video.name)
            .await
        {
            Ok(followed) => followed,
            Err(err) => return RunEnd::Died(format!("cannot follow the source video: {err}")),
        };
        let mut child = match ffmpeg::spawn(&self.ffmpeg, &self.rungs, &self.path) {
            Ok(child) => child,
            Err(err) => {
                return RunEnd::Died(format!("cannot start {}: {err}", self.ffmpeg.display()))
            }
        };
        let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return RunEnd::Died("ffmpeg without pipes".into());
        };
        let feed = async {
            stdin.write_all(init).await?;
            // ffmpeg must start at a keyframe: skip to the start of a group.
            let mut group: Option<(u64, u64)> = None;
            let mut started = false;
            loop {
                match followed.follower.next().await {
                    FollowStep::Group { seq, info } => group = Some((seq, info.group_id)),
                    FollowStep::Object {
                        seq,
                        object_id,
                        payload,
                    } => {
                        let opens = object_id == 0 && group.is_some_and(|(s, _)| s == seq);
                        if !started && !opens {
                            continue;
                        }
                        started = true;
                        if let Some(time) = chunk_decode_time(&payload) {
                            let at = time as f64 / f64::from(timescale);
                            let mut times = lock_or_recover(ids);
                            if let (true, Some((_, id))) = (opens, group) {
                                times.groups.source_group(at, id);
                            }
                            let captured =
                                producer_time(&payload).and_then(|p| p.since_unix_epoch());
                            if let Some(wall) = captured {
                                times.captures.source_chunk(at, wall);
                            }
                        }
                        stdin.write_all(&payload).await?;
                    }
                    FollowStep::End(_) => return Ok::<_, std::io::Error>(()),
                    _ => {}
                }
            }
        };
        let read = async {
            let mut output = RungOutput::new(&self.video.name, &self.rungs);
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                let n = stdout.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>("ffmpeg closed its output".to_string());
                }
                match output.ingest.push(&buf[..n]) {
                    Ok(events) => {
                        for event in events {
                            output.apply(event, ids, cmaf, &self.served, &self.made);
                        }
                    }
                    Err(err) => return Ok(format!("ffmpeg's output is unreadable: {err}")),
                }
            }
        };
        tokio::select! {
            fed = feed => match fed {
                Ok(()) => RunEnd::SourceEnded,
                Err(err) => RunEnd::Died(format!("writing to ffmpeg: {err}")),
            },
            read = read => RunEnd::Died(match read {
                Ok(reason) => reason,
                Err(err) => format!("reading from ffmpeg: {err}"),
            }),
            status = child.wait() => RunEnd::Died(match status {
                Ok(status) => format!("ffmpeg exited: {status}"),
                Err(err) => format!("ffmpeg: {err}"),
            }),
        }
    }
}

/// What the feeding side learns of the source's timeline, for the reading side: where
/// its groups start, and when its pictures were captured.
struct SourceTimes {
    groups: GroupIds,
    captures: CaptureTimes,
}

/// ffmpeg's output as the rungs' tracks: its video tracks renamed after the rungs, and its
/// groups given the source's ids.
struct RungOutput {
    ingest: CmafIngest,
    source: String,
    rungs: Vec<Rung>,
    /// ffmpeg's track names to rung track names.
    names: HashMap<String, String>,
    /// ffmpeg's group numbers to the source group id they take (None: dropped).
    resolved: BTreeMap<u64, Option<u64>>,
    /// Tracks whose current group is dropped.
    skipping: HashSet<String>,
}

impl RungOutput {
    fn new(source: &str, rungs: &[Rung]) -> Self {
        Self {
            ingest: CmafIngest::new(),
            source: source.to_string(),
            rungs: rungs.to_vec(),
            names: HashMap::new(),
            resolved: BTreeMap::new(),
            skipping: HashSet::new(),
        }
    }

    fn apply(
        &mut self,
        event: IngestEvent,
        ids: &Mutex<SourceTimes>,
        cmaf: &mut CmafBroadcast,
        served: &Served,
        made: &watch::Sender<Option<Catalog>>,
    ) {
        match event {
            IngestEvent::Catalog(catalog) => {
                let mut renamed = catalog.clone();
                renamed.tracks.retain(|t| t.is_cmaf() && t.is_video());
                for (track, rung) in renamed.tracks.iter_mut().zip(&self.rungs) {
                    let name = rung.track_name(&self.source);
                    self.names.insert(track.name.clone(), name.clone());
                    track.name = name;
                }
                renamed.tracks.truncate(self.rungs.len());
                if let Err(err) = cmaf.apply(IngestEvent::Catalog(renamed.clone())) {
                    tracing::warn!(%err, "cannot publish the transcoded tracks");
                    return;
                }
                // The tracks exist before a catalog names them.
                let mut rungs = lock_or_recover(&served.rungs);
                for track in &renamed.tracks {
                    if let Some(cache) = cmaf.broadcast().track(&track.name) {
                        rungs.insert(track.name.clone(), cache);
                    }
                }
                drop(rungs);
                made.send_replace(Some(catalog));
            }
            IngestEvent::Object(mut object) => {
                let Some(name) = self.names.get(&object.track).cloned() else {
                    return;
                };
                if object.starts_group {
                    let number = object.group;
                    let start = object.media_time_secs();
                    let id = *self.resolved.entry(number).or_insert_with(|| {
                        lock_or_recover(ids)
                            .groups
                            .transcoded_group(start)
                            .map_err(|why| {
                                tracing::debug!(
                                    group = number,
                                    start,
                                    ?why,
                                    "transcoded group dropped"
                                )
                            })
                            .ok()
                    });
                    self.resolved = self
                        .resolved
                        .split_off(&number.saturating_sub(RESOLVED_GROUPS));
                    let Some(id) = id else {
                        self.skipping.insert(name);
                        return;
                    };
                    self.skipping.remove(&name);
                    object.group = id;
                } else if self.skipping.contains(&name) {
                    return;
                }
                object.track = name.clone();
                // The capture time of the source picture (else the publishing pipeline
                // stamps the time it is published).
                let captured = lock_or_recover(ids).captures.at(object.media_time_secs());
                object.producer_time =
                    captured.map(|wall| ProducerTime::from_unix(wall, object.decode_time));
                if let Err(err) = cmaf.apply(IngestEvent::Object(object)) {
                    tracing::debug!(track = %name, %err, "transcoded object dropped");
                    self.skipping.insert(name);
                }
            }
        }
    }
}
