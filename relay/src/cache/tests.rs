//! Tests of the track cache (`cache/`): eviction within the byte and group limits,
//! followers, what a late joiner is served, and what floods of objects cost.

use super::*;

fn info(group_id: u64) -> GroupInfo {
    GroupInfo {
        group_id,
        subgroup_id: 0,
        priority: 0,
    }
}

fn drain(f: &mut TrackFollower) -> Vec<FollowStep> {
    std::iter::from_fn(|| f.try_next()).collect()
}

#[test]
fn follower_starts_at_newest_group() {
    let cache = TrackCache::new(CacheLimits::default());
    let g1 = cache.begin_group(info(1)).unwrap();
    cache.push_object(g1, 0, Bytes::from_static(b"a")).unwrap();
    cache.end_group(g1);
    let g2 = cache.begin_group(info(2)).unwrap();
    cache.push_object(g2, 0, Bytes::from_static(b"b")).unwrap();
    cache.push_object(g2, 1, Bytes::from_static(b"c")).unwrap();

    let mut f = cache.follow();
    let steps = drain(&mut f);
    assert_eq!(
        steps[0],
        FollowStep::Group {
            seq: g2,
            info: info(2)
        }
    );
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert!(
        matches!(&steps[1], FollowStep::Object { object_id: 0, payload, .. } if payload == "b")
    );
    cache.end_group(g2);
    assert_eq!(f.try_next(), Some(FollowStep::GroupEnd { seq: g2 }));
    assert_eq!(f.try_next(), None);
}

#[test]
fn largest_location_is_the_newest_object_held() {
    let cache = TrackCache::new(CacheLimits::default());
    assert_eq!(cache.largest_location(), None);
    let g1 = cache.begin_group(info(1)).unwrap();
    cache.push_object(g1, 0, Bytes::from_static(b"a")).unwrap();
    cache.push_object(g1, 1, Bytes::from_static(b"b")).unwrap();
    assert_eq!(cache.largest_location(), Some((1, 1)));
    cache.end_group(g1);
    // A group that has begun but holds nothing yet is not a location.
    cache.begin_group(info(2)).unwrap();
    assert_eq!(cache.largest_location(), Some((1, 1)));
}

#[test]
fn payloads_are_shared_not_copied() {
    let cache = TrackCache::new(CacheLimits::default());
    let g = cache.begin_group(info(1)).unwrap();
    let payload = Bytes::from(vec![7u8; 1000]);
    cache.push_object(g, 0, payload.clone()).unwrap();
    let mut f = cache.follow();
    f.try_next();
    match f.try_next() {
        Some(FollowStep::Object { payload: got, .. }) => {
            assert_eq!(got.as_ptr(), payload.as_ptr())
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn eviction_keeps_newest_and_bounds_bytes() {
    let cache = TrackCache::new(CacheLimits {
        max_groups: 3,
        max_bytes: 4000,
        keep_for: Duration::ZERO,
        ..Default::default()
    });
    for id in 0..10 {
        let g = cache.begin_group(info(id)).unwrap();
        cache
            .push_object(g, 0, Bytes::from(vec![0u8; 1000]))
            .unwrap();
        cache.end_group(g);
        assert!(cache.bytes() <= 4000);
        assert!(cache.group_count() <= 3);
    }
    assert_eq!(cache.newest_group_id(), Some(9));
    // A single group larger than the budget is still kept: it is the newest.
    let g = cache.begin_group(info(10)).unwrap();
    cache
        .push_object(g, 0, Bytes::from(vec![0u8; 5000]))
        .unwrap();
    assert_eq!(cache.group_count(), 1);
    assert_eq!(cache.newest_group_id(), Some(10));
}

#[test]
fn young_groups_stay_beyond_the_count_within_bytes_and_the_group_cap() {
    // Room for 1,000 groups of one 100-byte object, overheads included.
    const ROOM: usize = 1_000 * (100 + OBJECT_OVERHEAD_BYTES + GROUP_OVERHEAD_BYTES);
    let cache = TrackCache::new(CacheLimits {
        max_groups: 3,
        max_bytes: ROOM,
        keep_for: Duration::from_secs(3600),
        ..Default::default()
    });
    for id in 0..10 {
        let g = cache.begin_group(info(id)).unwrap();
        cache
            .push_object(g, 0, Bytes::from(vec![0u8; 100]))
            .unwrap();
        cache.end_group(g);
    }
    assert_eq!(
        cache.group_count(),
        10,
        "young groups are kept past max_groups"
    );
    // The byte limit still holds: 1,000 groups of 100 bytes fit, the next ones evict.
    for id in 10..1_100 {
        let g = cache.begin_group(info(id)).unwrap();
        cache
            .push_object(g, 0, Bytes::from(vec![0u8; 100]))
            .unwrap();
        cache.end_group(g);
        assert!(cache.bytes() <= ROOM);
    }
    assert_eq!(cache.group_count(), 1_000);
    // And the group cap, for groups too small for the byte limit to bite.
    for id in 1_100..2_300 {
        let g = cache.begin_group(info(id)).unwrap();
        cache.end_group(g);
        assert!(cache.group_count() <= MAX_CACHED_GROUPS);
    }
    assert_eq!(cache.group_count(), MAX_CACHED_GROUPS);
    assert_eq!(cache.newest_group_id(), Some(2_299));
}

#[test]
fn lagging_follower_abandons_evicted_group_and_skips_to_newest() {
    let cache = TrackCache::new(CacheLimits {
        max_groups: 2,
        max_bytes: usize::MAX,
        keep_for: Duration::ZERO,
        ..Default::default()
    });
    let g0 = cache.begin_group(info(0)).unwrap();
    cache.push_object(g0, 0, Bytes::from_static(b"x")).unwrap();
    let mut f = cache.follow();
    assert!(matches!(f.try_next(), Some(FollowStep::Group { .. })));
    for id in 1..5 {
        let g = cache.begin_group(info(id)).unwrap();
        cache.push_object(g, 0, Bytes::from_static(b"y")).unwrap();
    }
    assert_eq!(f.try_next(), Some(FollowStep::GroupAbandoned { seq: g0 }));
    match f.try_next() {
        Some(FollowStep::Group { info: i, .. }) => assert_eq!(i.group_id, 4),
        other => panic!("{other:?}"),
    }
}

#[test]
fn range_reads_follow_fetch_end_encoding() {
    let cache = TrackCache::new(CacheLimits::default());
    for id in 5..8 {
        let g = cache.begin_group(info(id)).unwrap();
        for o in 0..3 {
            cache
                .push_object(g, o, Bytes::from(format!("{id}.{o}")))
                .unwrap();
        }
        cache.end_group(g);
    }
    let names = |v: Vec<(GroupInfo, u64, Bytes)>| -> Vec<String> {
        v.into_iter()
            .map(|(_, _, p)| String::from_utf8(p.to_vec()).unwrap())
            .collect()
    };
    assert_eq!(
        names(cache.objects_in((6, 1), (6, 0)).unwrap()),
        ["6.1", "6.2"]
    );
    assert_eq!(
        names(cache.objects_in((6, 2), (7, 2)).unwrap()),
        ["6.2", "7.0", "7.1"]
    );
    assert_eq!(
        names(cache.objects_in((7, 0), (9, 0)).unwrap()),
        ["7.0", "7.1", "7.2"]
    );
    assert!(
        cache.objects_in((4, 0), (6, 0)).is_none(),
        "group 4 is not cached"
    );
}

#[test]
fn stale_and_out_of_order_input_is_refused() {
    let cache = TrackCache::new(CacheLimits::default());
    let g = cache.begin_group(info(5)).unwrap();
    assert_eq!(cache.begin_group(info(5)), Err(CacheError::StaleGroup(5)));
    assert_eq!(cache.begin_group(info(3)), Err(CacheError::StaleGroup(3)));
    cache.push_object(g, 2, Bytes::new()).unwrap();
    assert!(cache.push_object(g, 2, Bytes::new()).is_err());
    assert!(cache.push_object(g, 1, Bytes::new()).is_err());
}

#[test]
fn end_abandons_unfinished_groups() {
    let cache = TrackCache::new(CacheLimits::default());
    let g = cache.begin_group(info(1)).unwrap();
    let mut f = cache.follow();
    assert!(matches!(f.try_next(), Some(FollowStep::Group { .. })));
    cache
        .push_object(g, 0, Bytes::from_static(b"half"))
        .unwrap();
    cache.end(TrackEnd::Finished);
    assert_eq!(f.try_next(), Some(FollowStep::GroupAbandoned { seq: g }));
    assert_eq!(f.try_next(), Some(FollowStep::End(TrackEnd::Finished)));
    assert_eq!(cache.bytes(), 0);
    assert_eq!(cache.begin_group(info(2)), Err(CacheError::Ended));
}

#[tokio::test]
async fn next_wakes_on_new_data() {
    let cache = TrackCache::new(CacheLimits::default());
    let mut f = cache.follow();
    let writer = cache.clone();
    let task = tokio::spawn(async move {
        let g = writer.begin_group(info(1)).unwrap();
        writer.push_object(g, 0, Bytes::from_static(b"z")).unwrap();
        writer.end_group(g);
        writer.end(TrackEnd::Finished);
    });
    let mut steps = Vec::new();
    loop {
        let step = f.next().await;
        let end = matches!(step, FollowStep::End(_));
        steps.push(step);
        if end {
            break;
        }
    }
    task.await.unwrap();
    assert_eq!(steps.len(), 4, "{steps:?}");
}

fn objects_held(cache: &TrackCache) -> usize {
    cache.lock().groups.iter().map(|g| g.objects.len()).sum()
}

#[test]
fn a_flood_of_empty_objects_is_bounded_by_the_budget() {
    // Today's accounting charged payload bytes only: empty objects were free, so a
    // publisher could make a cache hold a million of them (each an entry and a handle).
    let budget = CacheBudget::new(100_000);
    let limits = CacheLimits {
        max_groups: usize::MAX,
        max_bytes: usize::MAX,
        max_group_bytes: usize::MAX,
        max_group_objects: usize::MAX,
        keep_for: Duration::from_secs(3600),
    };
    let cache = TrackCache::with_budget(limits, &budget);
    let most = 100_000 / OBJECT_OVERHEAD_BYTES;
    for id in 0..2_000 {
        let g = cache.begin_group(info(id)).unwrap();
        for object in 0..100 {
            let _ = cache.push_object(g, object, Bytes::new());
        }
        cache.end_group(g);
        assert!(
            budget.used() <= budget.limit(),
            "{} > budget",
            budget.used()
        );
        assert!(
            objects_held(&cache) <= most,
            "{} empty objects held",
            objects_held(&cache)
        );
    }
    assert_eq!(cache.newest_group_id(), Some(1_999));
}

#[test]
fn a_flood_of_empty_objects_in_one_group_ends_it_at_the_budget() {
    let budget = CacheBudget::new(10_000);
    let limits = CacheLimits {
        max_group_objects: usize::MAX,
        ..Default::default()
    };
    let cache = TrackCache::with_budget(limits, &budget);
    let g = cache.begin_group(info(1)).unwrap();
    let mut follower = cache.follow();
    assert!(matches!(
        follower.try_next(),
        Some(FollowStep::Group { .. })
    ));
    let refused = (0..1_000_000u64)
        .map(|object| cache.push_object(g, object, Bytes::new()))
        .position(|result| result.is_err())
        .expect("the budget ends the flood");
    assert!(
        refused <= 10_000 / OBJECT_OVERHEAD_BYTES,
        "{refused} objects taken"
    );
    assert_eq!(budget.used(), 0, "the dropped group gave its bytes back");
    assert_eq!(
        follower.try_next(),
        Some(FollowStep::GroupAbandoned { seq: g }),
        "a follower is told, and passes nothing off as whole"
    );
}

#[test]
fn a_group_past_the_object_cap_is_dropped_and_the_next_one_is_cached() {
    let cache = TrackCache::new(CacheLimits {
        max_group_objects: 3,
        ..Default::default()
    });
    let g = cache.begin_group(info(1)).unwrap();
    let mut follower = cache.follow();
    assert!(matches!(
        follower.try_next(),
        Some(FollowStep::Group { .. })
    ));
    for object in 0..3 {
        cache
            .push_object(g, object, Bytes::from_static(b"x"))
            .unwrap();
    }
    let err = cache
        .push_object(g, 3, Bytes::from_static(b"x"))
        .unwrap_err();
    assert_eq!(err, CacheError::TooManyObjects(1));
    assert!(err.dropped_group());
    assert_eq!(err.limit(), Some("cache_group_objects"));
    assert_eq!(cache.group_count(), 0);
    assert_eq!(cache.bytes(), 0);
    // Later objects of the dropped group are ignored; the follower sees it abandoned.
    cache.push_object(g, 4, Bytes::from_static(b"x")).unwrap();
    let steps = drain(&mut follower);
    assert_eq!(
        steps.last(),
        Some(&FollowStep::GroupAbandoned { seq: g }),
        "{steps:?}"
    );
    let next = cache.begin_group(info(2)).unwrap();
    cache
        .push_object(next, 0, Bytes::from_static(b"y"))
        .unwrap();
    cache.end_group(next);
    assert_eq!(cache.newest_group_id(), Some(2));
}

#[test]
fn a_group_dropped_while_a_newer_one_is_open_leaves_the_newer_one_to_followers() {
    // Interleaved groups (one stream each): group 2 hits the object cap after group 3
    // began. Before, a hole in the cached groups made followers lose group 3 too.
    let cache = TrackCache::new(CacheLimits {
        max_group_objects: 2,
        keep_for: Duration::from_secs(3600),
        ..Default::default()
    });
    let one = cache.begin_group(info(1)).unwrap();
    cache.push_object(one, 0, Bytes::from_static(b"a")).unwrap();
    cache.end_group(one);
    let mut follower = cache.follow();
    let _ = drain(&mut follower);
    let two = cache.begin_group(info(2)).unwrap();
    let three = cache.begin_group(info(3)).unwrap();
    for object in 0..2 {
        cache.push_object(two, object, Bytes::new()).unwrap();
    }
    assert_eq!(
        cache.push_object(two, 2, Bytes::new()),
        Err(CacheError::TooManyObjects(2))
    );
    cache
        .push_object(three, 0, Bytes::from_static(b"c"))
        .unwrap();
    cache.end_group(three);
    let steps = drain(&mut follower);
    assert_eq!(
        steps,
        vec![
            FollowStep::Group {
                seq: three,
                info: info(3)
            },
            FollowStep::Object {
                seq: three,
                object_id: 0,
                payload: Bytes::from_static(b"c")
            },
            FollowStep::GroupEnd { seq: three },
        ]
    );
    // A late joiner starts at group 3 too.
    assert!(matches!(
        cache.follow().try_next(),
        Some(FollowStep::Group { seq, .. }) if seq == three
    ));
}

#[test]
fn newest_groups_count_inside_the_budget() {
    // Ten tracks each growing one (newest, never evicted) group: before, the budget was
    // exceeded without bound because newest groups did not count; now a write that would
    // pass it drops the group being written.
    const OBJECT: usize = 1_000;
    let budget = CacheBudget::new(50_000);
    let limits = CacheLimits {
        max_group_bytes: usize::MAX,
        ..Default::default()
    };
    let tracks: Vec<TrackCache> = (0..10)
        .map(|_| TrackCache::with_budget(limits, &budget))
        .collect();
    let seqs: Vec<u64> = tracks
        .iter()
        .map(|t| t.begin_group(info(1)).unwrap())
        .collect();
    let mut refused = 0;
    for object in 0..100u64 {
        for (track, seq) in tracks.iter().zip(&seqs) {
            match track.push_object(*seq, object, Bytes::from(vec![0u8; OBJECT])) {
                Ok(()) => {}
                Err(CacheError::BudgetFull(1)) => refused += 1,
                Err(err) => panic!("{err}"),
            }
            assert!(
                budget.used() <= budget.limit(),
                "{} > {}",
                budget.used(),
                budget.limit()
            );
        }
    }
    assert!(refused > 0);
    let sum: usize = tracks.iter().map(|c| c.bytes()).sum();
    assert_eq!(sum, budget.used(), "accounting drifted");
}

/// The cache's write path, timed: 20 tracks under one budget, 30 objects of 12.5 kB per
/// group, 4 followers per track reading after every write. Run by hand, in release:
/// `cargo test --release -p stagecast-relay --lib cache_hot_path -- --ignored --nocapture`
#[test]
#[ignore = "a bench"]
fn cache_hot_path() {
    let budget = crate::cache::budget::CacheBudget::new(64 << 20);
    let tracks: Vec<TrackCache> = (0..20)
        .map(|_| TrackCache::with_budget(CacheLimits::default(), &budget))
        .collect();
    let mut followers: Vec<Vec<TrackFollower>> = tracks
        .iter()
        .map(|t| (0..4).map(|_| t.follow()).collect())
        .collect();
    let payload = Bytes::from(vec![0u8; 12_500]);
    let start = std::time::Instant::now();
    let mut steps = 0u64;
    let groups = 500u64;
    for group in 0..groups {
        for (t, track) in tracks.iter().enumerate() {
            let seq = track.begin_group(info(group)).unwrap();
            for object in 0..30 {
                track.push_object(seq, object, payload.clone()).unwrap();
                for follower in &mut followers[t] {
                    while follower.try_next().is_some() {
                        steps += 1;
                    }
                }
            }
            track.end_group(seq);
        }
    }
    let writes = groups * 20 * 30;
    let elapsed = start.elapsed();
    eprintln!(
        "{writes} writes, {steps} follower steps in {elapsed:?}: {:.0} ns per write",
        elapsed.as_nanos() as f64 / writes as f64
    );
}

/// Group ids of the groups a follower starts, in order.
fn groups_started(steps: &[FollowStep]) -> Vec<u64> {
    steps
        .iter()
        .filter_map(|s| match s {
            FollowStep::Group { info, .. } => Some(info.group_id),
            _ => None,
        })
        .collect()
}

fn whole_group(cache: &TrackCache, group_id: u64) {
    let seq = cache.begin_group(info(group_id)).unwrap();
    cache.push_object(seq, 0, Bytes::from_static(b"k")).unwrap();
    cache.end_group(seq);
}

#[test]
fn a_range_starts_in_the_past_from_the_groups_held() {
    let cache = TrackCache::new(CacheLimits::default());
    for id in [10, 11, 13, 14] {
        whole_group(&cache, id);
    }
    let from = |start| {
        let mut f = cache.follow_range(GroupRange {
            start: Some(start),
            end: None,
        });
        groups_started(&drain(&mut f))
    };
    assert_eq!(from(11), [11, 13, 14]);
    // A start between groups held begins at the next one; before all of them, the oldest.
    assert_eq!(from(12), [13, 14]);
    assert_eq!(from(1), [10, 11, 13, 14]);
    // Without a start, a follower starts at the newest group, as a live subscriber does.
    assert_eq!(groups_started(&drain(&mut cache.follow())), [14]);
}

#[test]
fn a_range_starting_in_the_future_waits_for_its_group() {
    let cache = TrackCache::new(CacheLimits::default());
    whole_group(&cache, 20);
    let mut f = cache.follow_range(GroupRange {
        start: Some(22),
        end: None,
    });
    assert_eq!(f.try_next(), None);
    // Group 21 arrives but is before the start: skipped, never half-sent.
    whole_group(&cache, 21);
    assert_eq!(f.try_next(), None);
    whole_group(&cache, 22);
    assert_eq!(groups_started(&drain(&mut f)), [22]);
}

#[test]
fn a_range_with_an_end_stops_after_its_last_group() {
    let cache = TrackCache::new(CacheLimits::default());
    for id in [1, 2] {
        whole_group(&cache, id);
    }
    let seq = cache.begin_group(info(3)).unwrap();
    cache.push_object(seq, 0, Bytes::from_static(b"k")).unwrap();
    let mut f = cache.follow_range(GroupRange {
        start: Some(2),
        end: Some(3),
    });
    let steps = drain(&mut f);
    assert_eq!(groups_started(&steps), [2, 3]);
    // The last group is still open: the range is not over until it is whole.
    assert!(!steps.contains(&FollowStep::RangeEnd), "{steps:?}");
    cache.end_group(seq);
    whole_group(&cache, 4);
    assert_eq!(f.try_next(), Some(FollowStep::GroupEnd { seq }));
    // Group 4 is past the end: the follower is done, as it is at a track's end.
    assert_eq!(f.try_next(), Some(FollowStep::RangeEnd));
    assert_eq!(f.try_next(), Some(FollowStep::RangeEnd));
}
