//! A userspace UDP impairment relay: one-way delay, jitter, random and bursty
//! (Gilbert-Elliott) loss, reordering and a rate limit between a client and a target, for
//! QUIC tests on a kernel without `netem`.
//!
//! The decisions are a pure, seeded [`Policy`] (time passed in, no sockets) so a run
//! repeats and the rules are unit-tested; [`ImpairRelay`] is the thin tokio shell that
//! applies them to real datagrams, one upstream socket per client address (a flow), and
//! [`ImpairHandle`] changes the settings while it runs.

use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bursty loss as a two-state Markov chain (Gilbert-Elliott): the link is either good or
/// bad, changes state before each packet with the given probabilities, and loses a packet
/// with the loss probability of its state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GilbertElliott {
    /// Chance, per packet, that a good link turns bad.
    pub good_to_bad: f64,
    /// Chance, per packet, that a bad link turns good: 1 / mean burst length.
    pub bad_to_good: f64,
    /// Loss probability while good (usually 0).
    pub loss_good: f64,
    /// Loss probability while bad (usually 1).
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// Bursts of `mean_burst` packets lost on average, `loss` of all packets lost in the
    /// long run (a good state that loses nothing, a bad one that loses everything).
    pub fn bursts(loss: f64, mean_burst: f64) -> Self {
        let bad_to_good = 1.0 / mean_burst.max(1.0);
        // Stationary share of the bad state: p / (p + r) = loss.
        let loss = loss.clamp(0.0, 0.99);
        let good_to_bad = bad_to_good * loss / (1.0 - loss);
        Self {
            good_to_bad,
            bad_to_good,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
    }

    /// The long-run share of packets lost.
    pub fn mean_loss(&self) -> f64 {
        let total = self.good_to_bad + self.bad_to_good;
        if total <= 0.0 {
            return self.loss_good;
        }
        let bad = self.good_to_bad / total;
        bad * self.loss_bad + (1.0 - bad) * self.loss_good
    }
}

/// How one direction of a path is impaired. The default passes everything at once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Impairment {
    /// One-way delay added to every packet.
    pub delay: Duration,
    /// Up to this much more delay, uniformly drawn per packet. Packets keep their order
    /// (a queue varies, it does not overtake); reordering is [`Impairment::reorder`].
    pub jitter: Duration,
    /// Independent chance that a packet is lost.
    pub loss: f64,
    /// Bursty loss on top of `loss`.
    pub burst_loss: Option<GilbertElliott>,
    /// Chance that a packet is held back by `reorder_extra`, so later ones overtake it.
    pub reorder: f64,
    pub reorder_extra: Duration,
    /// Bottleneck rate in bits per second (None: unlimited). Packets queue behind it.
    pub rate_bps: Option<u64>,
    /// The bottleneck queue in time at `rate_bps`: a packet that would wait longer is
    /// dropped (tail drop, as a router's buffer). Zero means 200 ms.
    pub queue: Duration,
}

impl Impairment {
    /// Half of a round trip `rtt` each way with `loss` per direction: what
    /// [`PathImpairment::symmetric`] puts on both directions.
    pub fn one_way(rtt: Duration, loss: f64) -> Self {
        Self {
            delay: rtt / 2,
            loss,
            ..Self::default()
        }
    }

    fn queue_limit(&self) -> Duration {
        if self.queue.is_zero() {
            Duration::from_millis(200)
        } else {
            self.queue
        }
    }
}

/// Both directions of a path: `up` from the client to the target, `down` back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PathImpairment {
    pub up: Impairment,
    pub down: Impairment,
}

impl PathImpairment {
    /// The same impairment both ways.
    pub fn symmetric(each_way: Impairment) -> Self {
        Self {
            up: each_way.clone(),
            down: each_way,
        }
    }

    /// A round trip of `rtt` (half each way) losing `loss` of the packets in each
    /// direction.
    pub fn rtt_loss(rtt: Duration, loss: f64) -> Self {
        Self::symmetric(Impairment::one_way(rtt, loss))
    }
}

/// Why a packet was not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Independent random loss.
    Random,
    /// Gilbert-Elliott loss.
    Burst,
    /// The rate limit's queue was full.
    Queue,
}

/// What happens to one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it at `at`; `reordered` when it was held back for others to overtake.
    Deliver {
        at: Instant,
        reordered: bool,
    },
    Drop(DropReason),
}

/// A small seeded generator (SplitMix64): the same seed gives the same run on every
/// machine and every version, which a library RNG does not promise.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

/// The decisions of one direction, packet by packet: pure, seeded, time passed in.
#[derive(Clone, Debug)]
pub struct Policy {
    settings: Impairment,
    rng: SplitMix64,
    /// Gilbert-Elliott state.
    bad: bool,
    /// When the bottleneck finishes sending what is queued.
    link_free_at: Option<Instant>,
    /// When the last in-order packet is due: later ones are never due before it.
    last_due: Option<Instant>,
}

impl Policy {
    pub fn new(settings: Impairment, seed: u64) -> Self {
        Self {
            settings,
            rng: SplitMix64(seed),
            bad: false,
            link_free_at: None,
            last_due: None,
        }
    }

    pub fn settings(&self) -> &Impairment {
        &self.settings
    }

    /// New settings from the next packet on; what is queued keeps its schedule.
    pub fn set(&mut self, settings: Impairment) {
        self.settings = settings;
    }

    /// The fate of a packet of `len` bytes arriving at `now`.
    pub fn decide(&mut self, now: Instant, len: usize) -> Verdict {
        let s = &self.settings;
        if let Some(ge) = s.burst_loss {
            let flip = if self.bad {
                ge.bad_to_good
            } else {
                ge.good_to_bad
            };
            if self.rng.chance(flip) {
                self.bad = !self.bad;
            }
            let loss = if self.bad { ge.loss_bad } else { ge.loss_good };
            if self.rng.chance(loss) {
                return Verdict::Drop(DropReason::Burst);
            }
        }
        if self.rng.chance(s.loss) {
            return Verdict::Drop(DropReason::Random);
        }
        // The bottleneck: a packet starts when the ones before it have been sent, and is
        // dropped when that is further away than the queue holds.
        let departs = match s.rate_bps {
            Some(rate) if rate > 0 => {
                let start = self.link_free_at.map_or(now, |free| free.max(now));
                if start - now > s.queue_limit() {
                    return Verdict::Drop(DropReason::Queue);
                }
                let sending = Duration::from_secs_f64(len as f64 * 8.0 / rate as f64);
                self.link_free_at = Some(start + sending);
                start + sending
            }
            _ => now,
        };
        let jitter = s.jitter.mul_f64(self.rng.unit());
        let mut due = departs + s.delay + jitter;
        if let Some(last) = self.last_due {
            due = due.max(last);
        }
        if self.rng.chance(s.reorder) {
            // Held back without moving `last_due`: the packets after it may go first.
            return Verdict::Deliver {
                at: due + s.reorder_extra,
                reordered: true,
            };
        }
        self.last_due = Some(due);
        Verdict::Deliver {
            at: due,
            reordered: false,
        }
    }
}

/// What one direction did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionStats {
    pub packets: u64,
    pub bytes: u64,
    pub delivered: u64,
    pub dropped_random: u64,
    pub dropped_burst: u64,
    pub dropped_queue: u64,
    /// Dropped because the relay's own memory bound was reached.
    pub dropped_overflow: u64,
    pub reordered: u64,
}

impl DirectionStats {
    pub fn dropped(&self) -> u64 {
        self.dropped_random + self.dropped_burst + self.dropped_queue + self.dropped_overflow
    }

    fn count(&mut self, len: usize, verdict: &Verdict) {
        self.packets += 1;
        self.bytes += len as u64;
        match verdict {
            Verdict::Deliver { reordered, .. } => {
                self.delivered += 1;
                self.reordered += u64::from(*reordered);
            }
            Verdict::Drop(DropReason::Random) => self.dropped_random += 1,
            Verdict::Drop(DropReason::Burst) => self.dropped_burst += 1,
            Verdict::Drop(DropReason::Queue) => self.dropped_queue += 1,
        }
    }
}

/// Both directions' counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImpairStats {
    pub up: DirectionStats,
    pub down: DirectionStats,
    /// Client addresses seen (flows opened).
    pub flows: u64,
}

/// Errors of the relay's set-up (once running, a datagram that cannot be sent is lost,
/// as on any link).
#[derive(Debug, thiserror::Error)]
pub enum ImpairError {
    #[error("cannot bind the impairment relay on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the impairment relay's runtime: {0}")]
    Runtime(std::io::Error),
}

/// Flows beyond this are refused (their datagrams dropped): a test has a handful of
/// clients, and each flow holds a socket and a task.
const MAX_FLOWS: usize = 256;
/// A flow silent this long is closed, as a NAT forgets a mapping.
const FLOW_IDLE: Duration = Duration::from_secs(60);
/// Bytes waiting in the scheduler at most: past it, datagrams are dropped (overflow).
const MAX_SCHEDULED_BYTES: usize = 64 << 20;
const MAX_DATAGRAM: usize = 65_536;

struct Shared {
    up: Mutex<Policy>,
    down: Mutex<Policy>,
    stats: Mutex<ImpairStats>,
    /// Bytes in the scheduler's queue.
    scheduled: Mutex<usize>,
}

/// A poisoned lock only means a test thread panicked while holding it; the data is
/// counters and policy state, still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Clone, Copy)]
enum Direction {
    Up,
    Down,
}

impl Shared {
    /// Decides a packet's fate and counts it; `Some(at)` when it is to be sent.
    fn decide(&self, direction: Direction, len: usize) -> Option<Instant> {
        let now = Instant::now();
        let verdict = match direction {
            Direction::Up => lock(&self.up).decide(now, len),
            Direction::Down => lock(&self.down).decide(now, len),
        };
        let mut stats = lock(&self.stats);
        let stats = match direction {
            Direction::Up => &mut stats.up,
            Direction::Down => &mut stats.down,
        };
        stats.count(len, &verdict);
        match verdict {
            Verdict::Deliver { at, .. } => {
                let mut scheduled = lock(&self.scheduled);
                if *scheduled + len > MAX_SCHEDULED_BYTES {
                    stats.delivered -= 1;
                    stats.dropped_overflow += 1;
                    return None;
                }
                *scheduled += len;
                Some(at)
            }
            Verdict::Drop(_) => None,
        }
    }
}

/// The seed of the down direction's policy of a relay seeded with `seed` (the up
/// direction's is `seed` itself), so a test can replay a direction's decisions with
/// [`Policy`] alone.
pub fn down_seed(seed: u64) -> u64 {
    seed ^ 0xD0E5_D0E5_D0E5_D0E5
}

/// Changes a running relay's settings and reads its counts.
#[derive(Clone)]
pub struct ImpairHandle(Arc<Shared>);

impl ImpairHandle {
    /// New settings for both directions, from the next datagram on.
    pub fn set(&self, path: PathImpairment) {
        lock(&self.0.up).set(path.up);
        lock(&self.0.down).set(path.down);
    }

    pub fn set_up(&self, up: Impairment) {
        lock(&self.0.up).set(up);
    }

    pub fn set_down(&self, down: Impairment) {
        lock(&self.0.down).set(down);
    }

    pub fn settings(&self) -> PathImpairment {
        PathImpairment {
            up: lock(&self.0.up).settings().clone(),
            down: lock(&self.0.down).settings().clone(),
        }
    }

    pub fn stats(&self) -> ImpairStats {
        *lock(&self.0.stats)
    }
}

/// A datagram waiting for its time.
struct Scheduled {
    at: Instant,
    seq: u64,
    data: Vec<u8>,
    out: Out,
}

enum Out {
    /// Back to a client, from the listening socket.
    Client(SocketAddr),
    /// To the target, from the client's flow socket.
    Target(Arc<UdpSocket>),
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed: the heap's top is the earliest due, then the first decided.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

type Schedule = mpsc::UnboundedSender<(Instant, Vec<u8>, Out)>;

/// The running relay. Dropping it stops it (and its runtime, when it owns one).
pub struct ImpairRelay {
    addr: SocketAddr,
    target: SocketAddr,
    handle: ImpairHandle,
    tasks: Vec<JoinHandle<()>>,
    /// The runtime of a relay started from synchronous code ([`ImpairRelay::start`]).
    runtime: Option<tokio::runtime::Runtime>,
}

impl ImpairRelay {
    /// Binds `listen` (port 0 picks one) and relays every client's datagrams to `target`
    /// and back under `path`, decisions seeded by `seed` (the two directions get
    /// different streams of the same seed). Must run inside a tokio runtime.
    pub async fn bind(
        listen: SocketAddr,
        target: SocketAddr,
        path: PathImpairment,
        seed: u64,
    ) -> Result<ImpairRelay, ImpairError> {
        let socket = UdpSocket::bind(listen)
            .await
            .map_err(|source| ImpairError::Bind {
                addr: listen,
                source,
            })?;
        let addr = socket.local_addr().map_err(|source| ImpairError::Bind {
            addr: listen,
            source,
        })?;
        let shared = Arc::new(Shared {
            up: Mutex::new(Policy::new(path.up, seed)),
            down: Mutex::new(Policy::new(path.down, down_seed(seed))),
            stats: Mutex::default(),
            scheduled: Mutex::new(0),
        });
        let socket = Arc::new(socket);
        let (tx, rx) = mpsc::unbounded_channel();
        let scheduler = tokio::spawn(schedule(rx, socket.clone(), shared.clone()));
        let listener = tokio::spawn(listen_loop(socket, target, shared.clone(), tx));
        Ok(ImpairRelay {
            addr,
            target,
            handle: ImpairHandle(shared),
            tasks: vec![scheduler, listener],
            runtime: None,
        })
    }

    /// [`ImpairRelay::bind`] from synchronous code (a `#[test]`): the relay gets a
    /// one-thread runtime of its own, stopped when it is dropped.
    pub fn start(
        listen: SocketAddr,
        target: SocketAddr,
        path: PathImpairment,
        seed: u64,
    ) -> Result<ImpairRelay, ImpairError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("impair-relay")
            .enable_all()
            .build()
            .map_err(ImpairError::Runtime)?;
        let mut relay = runtime.block_on(Self::bind(listen, target, path, seed))?;
        relay.runtime = Some(runtime);
        Ok(relay)
    }

    /// Where clients send their datagrams.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    pub fn handle(&self) -> ImpairHandle {
        self.handle.clone()
    }

    pub fn set(&self, path: PathImpairment) {
        self.handle.set(path);
    }

    pub fn stats(&self) -> ImpairStats {
        self.handle.stats()
    }
}

impl Drop for ImpairRelay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(runtime) = self.runtime.take() {
            // Flow tasks end with the runtime; nothing of it may block a test's exit.
            runtime.shutdown_background();
        }
    }
}

/// One client's flow: its socket toward the target and the task reading replies.
struct Flow {
    socket: Arc<UdpSocket>,
    reader: JoinHandle<()>,
    last_seen: Instant,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn listen_loop(
    socket: Arc<UdpSocket>,
    target: SocketAddr,
    shared: Arc<Shared>,
    schedule: Schedule,
) {
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        // A receive error on UDP (an ICMP unreachable reported late) is not fatal.
        let Ok((len, client)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let now = Instant::now();
        if !flows.contains_key(&client) {
            flows.retain(|_, flow| now - flow.last_seen < FLOW_IDLE);
            if flows.len() >= MAX_FLOWS {
                continue;
            }
            let Some(flow) = open_flow(client, target, &shared, &schedule).await else {
                continue;
            };
            lock(&shared.stats).flows += 1;
            flows.insert(client, flow);
        }
        let Some(flow) = flows.get_mut(&client) else {
            continue;
        };
        flow.last_seen = now;
        if let Some(at) = shared.decide(Direction::Up, len) {
            let _ = schedule.send((at, buf[..len].to_vec(), Out::Target(flow.socket.clone())));
        }
    }
}

async fn open_flow(
    client: SocketAddr,
    target: SocketAddr,
    shared: &Arc<Shared>,
    schedule: &Schedule,
) -> Option<Flow> {
    let any: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any).await.ok()?;
    socket.connect(target).await.ok()?;
    let socket = Arc::new(socket);
    let reader = tokio::spawn({
        let (socket, shared, schedule) = (socket.clone(), shared.clone(), schedule.clone());
        async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let Ok(len) = socket.recv(&mut buf).await else {
                    // The target is not there (yet): ICMP errors come back as receive
                    // errors on a connected socket; keep listening.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                if let Some(at) = shared.decide(Direction::Down, len) {
                    if schedule
                        .send((at, buf[..len].to_vec(), Out::Client(client)))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    Some(Flow {
        socket,
        reader,
        last_seen: Instant::now(),
    })
}

/// Sends each datagram at its time, earliest first.
async fn schedule(
    mut rx: mpsc::UnboundedReceiver<(Instant, Vec<u8>, Out)>,
    listen: Arc<UdpSocket>,
    shared: Arc<Shared>,
) {
    let mut heap: BinaryHeap<Scheduled> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let next = heap.peek().map(|s| s.at);
        tokio::select! {
            received = rx.recv() => {
                let Some((at, data, out)) = received else { return };
                seq += 1;
                heap.push(Scheduled { at, seq, data, out });
            }
            _ = sleep_until(next), if next.is_some() => {}
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|s| s.at <= now) {
            let Some(item) = heap.pop() else { break };
            {
                let mut scheduled = lock(&shared.scheduled);
                *scheduled = scheduled.saturating_sub(item.data.len());
            }
            // A send error is a lost datagram, which QUIC recovers from like any loss.
            let _ = match item.out {
                Out::Client(client) => listen.send_to(&item.data, client).await,
                Out::Target(socket) => socket.send(&item.data).await,
            };
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn run(policy: &mut Policy, packets: usize, gap: Duration, len: usize) -> Vec<Verdict> {
        let start = Instant::now();
        (0..packets)
            .map(|i| policy.decide(start + gap * i as u32, len))
            .collect()
    }

    #[test]
    fn the_default_delivers_everything_at_once() {
        let mut p = Policy::new(Impairment::default(), 1);
        let now = Instant::now();
        assert_eq!(
            p.decide(now, 1200),
            Verdict::Deliver {
                at: now,
                reordered: false
            }
        );
    }

    #[test]
    fn random_loss_is_near_its_ratio_and_repeats_with_the_seed() {
        let settings = Impairment {
            loss: 0.02,
            ..Impairment::default()
        };
        let pattern = |seed| -> Vec<bool> {
            run(&mut Policy::new(settings.clone(), seed), 50_000, MS, 1200)
                .iter()
                .map(|v| matches!(v, Verdict::Drop(_)))
                .collect()
        };
        let a = pattern(42);
        let ratio = a.iter().filter(|d| **d).count() as f64 / a.len() as f64;
        assert!((0.017..0.023).contains(&ratio), "loss ratio {ratio}");
        assert!(a == pattern(42), "the same seed gives the same run");
        assert!(a != pattern(43), "another seed gives another run");
    }

    #[test]
    fn bursty_loss_has_its_mean_and_comes_in_runs() {
        let ge = GilbertElliott::bursts(0.05, 4.0);
        assert!((ge.mean_loss() - 0.05).abs() < 1e-9);
        let settings = Impairment {
            burst_loss: Some(ge),
            ..Impairment::default()
        };
        let v = run(&mut Policy::new(settings, 7), 100_000, MS, 1200);
        let drops: Vec<bool> = v.iter().map(|v| matches!(v, Verdict::Drop(_))).collect();
        let ratio = drops.iter().filter(|d| **d).count() as f64 / drops.len() as f64;
        assert!((0.04..0.06).contains(&ratio), "loss ratio {ratio}");
        // Mean run length of consecutive losses: about 4, where independent loss of 5%
        // would give about 1.05.
        let runs = drops.windows(2).filter(|w| w[1] && !w[0]).count().max(1);
        let mean_run = drops.iter().filter(|d| **d).count() as f64 / runs as f64;
        assert!((3.2..4.8).contains(&mean_run), "mean burst {mean_run}");
    }

    #[test]
    fn delay_and_jitter_keep_the_order() {
        let settings = Impairment {
            delay: 50 * MS,
            jitter: 20 * MS,
            ..Impairment::default()
        };
        let mut p = Policy::new(settings, 3);
        let start = Instant::now();
        let mut last = start;
        let mut spread = (Duration::MAX, Duration::ZERO);
        for i in 0..1000u32 {
            let sent = start + MS * i;
            let Verdict::Deliver { at, reordered } = p.decide(sent, 1200) else {
                panic!("nothing is lost without loss");
            };
            assert!(!reordered);
            assert!(at >= last, "packet {i} overtook the one before");
            let delay = at - sent;
            assert!(delay >= 50 * MS && delay <= 70 * MS, "delay {delay:?}");
            spread = (spread.0.min(delay), spread.1.max(delay));
            last = at;
        }
        assert!(
            spread.1 - spread.0 > 10 * MS,
            "jitter spreads delays: {spread:?}"
        );
    }

    #[test]
    fn reordered_packets_are_overtaken() {
        let settings = Impairment {
            delay: 10 * MS,
            reorder: 0.1,
            reorder_extra: 30 * MS,
            ..Impairment::default()
        };
        let v = run(&mut Policy::new(settings, 5), 10_000, MS, 1200);
        let mut reordered = 0;
        let mut overtaken = 0;
        for (i, verdict) in v.iter().enumerate() {
            let Verdict::Deliver { at, reordered: r } = verdict else {
                panic!("nothing is lost without loss");
            };
            if *r {
                reordered += 1;
                // The next in-order packet, sent 1 ms later, arrives before this one.
                let next = v[i + 1..].iter().find_map(|v| match v {
                    Verdict::Deliver {
                        at,
                        reordered: false,
                    } => Some(*at),
                    _ => None,
                });
                if next.is_some_and(|next| next < *at) {
                    overtaken += 1;
                }
            }
        }
        let ratio = reordered as f64 / v.len() as f64;
        assert!((0.08..0.12).contains(&ratio), "reorder ratio {ratio}");
        assert!(
            overtaken >= reordered - 1,
            "{overtaken} of {reordered} overtaken"
        );
    }

    #[test]
    fn the_rate_limit_paces_and_drops_past_its_queue() {
        // 1 Mbit/s: a 1250-byte packet takes 10 ms. Offer 2 Mbit/s for 2 s.
        let settings = Impairment {
            rate_bps: Some(1_000_000),
            queue: 100 * MS,
            ..Impairment::default()
        };
        let mut p = Policy::new(settings, 9);
        let start = Instant::now();
        let mut delivered = Vec::new();
        let mut queue_drops = 0;
        for i in 0..400u32 {
            match p.decide(start + 5 * MS * i, 1250) {
                Verdict::Deliver { at, .. } => delivered.push(at),
                Verdict::Drop(DropReason::Queue) => queue_drops += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        // Departures are at least one packet time apart.
        for pair in delivered.windows(2) {
            assert!(pair[1] - pair[0] >= 10 * MS - Duration::from_micros(1));
        }
        // About half gets through: 2 s at 1 Mbit/s is 200 packets, plus the queue.
        assert!(
            (195..=215).contains(&delivered.len()),
            "{} delivered",
            delivered.len()
        );
        assert_eq!(queue_drops + delivered.len(), 400);
        // Under the limit nothing waits: at 0.5 Mbit/s each packet leaves after its 10 ms.
        let mut p = Policy::new(
            Impairment {
                rate_bps: Some(1_000_000),
                ..Impairment::default()
            },
            9,
        );
        for i in 0..100u32 {
            let sent = start + 20 * MS * i;
            assert_eq!(
                p.decide(sent, 1250),
                Verdict::Deliver {
                    at: sent + 10 * MS,
                    reordered: false
                }
            );
        }
    }

    #[test]
    fn new_settings_apply_from_the_next_packet() {
        let mut p = Policy::new(Impairment::default(), 1);
        let now = Instant::now();
        assert!(matches!(p.decide(now, 100), Verdict::Deliver { at, .. } if at == now));
        p.set(Impairment {
            loss: 1.0,
            ..Impairment::default()
        });
        assert_eq!(p.decide(now, 100), Verdict::Drop(DropReason::Random));
        p.set(Impairment {
            delay: 40 * MS,
            ..Impairment::default()
        });
        assert!(matches!(p.decide(now, 100), Verdict::Deliver { at, .. } if at == now + 40 * MS));
    }

    /// The socket shell: a UDP echo server behind the relay answers through it, with the
    /// delay both ways, and a lossy setting drops about what it says.
    #[tokio::test]
    async fn the_relay_carries_datagrams_both_ways_with_delay() {
        let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = echo.recv_from(&mut buf).await {
                let _ = echo.send_to(&buf[..n], from).await;
            }
        });
        let relay = ImpairRelay::bind(
            "127.0.0.1:0".parse().unwrap(),
            echo_addr,
            PathImpairment::rtt_loss(60 * MS, 0.0),
            1,
        )
        .await
        .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(relay.addr()).await.unwrap();
        let mut buf = [0u8; 16];
        let sent = Instant::now();
        client.send(b"ping").await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(2), client.recv(&mut buf))
            .await
            .expect("an answer through the relay")
            .unwrap();
        let rtt = sent.elapsed();
        assert_eq!(&buf[..n], b"ping");
        assert!(rtt >= 60 * MS && rtt < 200 * MS, "round trip {rtt:?}");

        relay.set(PathImpairment::symmetric(Impairment {
            loss: 0.5,
            ..Impairment::default()
        }));
        for i in 0..200u8 {
            client.send(&[i]).await.unwrap();
        }
        // Each datagram crosses twice: about a quarter come back.
        let mut answers = 0;
        while tokio::time::timeout(Duration::from_millis(300), client.recv(&mut buf))
            .await
            .is_ok()
        {
            answers += 1;
        }
        assert!((25..80).contains(&answers), "{answers} of 200 came back");
        let stats = relay.stats();
        assert_eq!(stats.flows, 1);
        assert_eq!(stats.up.packets, 201);
        assert!(stats.up.dropped_random > 60 && stats.up.dropped_random < 140);
    }
}
