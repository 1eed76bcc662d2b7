//! Balance algorithms as pure functions over candidate servers: each yields an
//! order (first is the pick, the rest are for retries and redispatch).

use raftlb_proto::config::Balance;
use std::net::IpAddr;

/// A server that may take the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Position of the server in its backend.
    pub idx: usize,
    /// Weight to balance with (> 0).
    pub weight: u32,
    /// Connections now (for leastconn and random).
    pub conns: u32,
}

/// Per-backend memory of the algorithms that have one.
#[derive(Debug, Default)]
pub struct LbState {
    /// Smooth weighted round robin: each server's current weight.
    current: Vec<i64>,
    /// Rotation among leastconn ties.
    turn: usize,
    rng: u64,
}

impl LbState {
    /// State for a backend of `n` servers.
    pub fn new(n: usize) -> Self {
        LbState {
            current: vec![0; n],
            turn: 0,
            rng: 0x9e37_79b9_7f4a_7c15 ^ (n as u64),
        }
    }

    /// The order for one new connection.
    pub fn order(&mut self, algo: Balance, cands: &[Candidate], src: IpAddr) -> Vec<usize> {
        if cands.is_empty() {
            return Vec::new();
        }
        match algo {
            // uri and hdr without a key (no such header): round robin, as
            // HAProxy; with a key they go through a [`Ring`].
            Balance::RoundRobin | Balance::StaticRr | Balance::Uri | Balance::Hdr => {
                self.round_robin(cands)
            }
            Balance::LeastConn => self.least_conn(cands),
            Balance::First => cands.iter().map(|c| c.idx).collect(),
            Balance::Source => source(cands, src),
            Balance::Random => self.random(cands),
        }
    }

    /// Smooth weighted round robin (as nginx): every pick adds each weight to
    /// its server's current value, takes the largest and subtracts the total.
    /// Equal weights give strict turns in declaration order.
    fn round_robin(&mut self, cands: &[Candidate]) -> Vec<usize> {
        let total: i64 = cands.iter().map(|c| c.weight as i64).sum();
        let mut best = 0;
        for (i, c) in cands.iter().enumerate() {
            if c.idx >= self.current.len() {
                self.current.resize(c.idx + 1, 0);
            }
            self.current[c.idx] += c.weight as i64;
            if self.current[c.idx] > self.current[cands[best].idx] {
                best = i;
            }
        }
        self.current[cands[best].idx] -= total;
        rotate_from(cands, best)
    }

    /// Fewest connections per unit of weight; ties take turns.
    fn least_conn(&mut self, cands: &[Candidate]) -> Vec<usize> {
        self.turn = self.turn.wrapping_add(1);
        let n = cands.len();
        let start = self.turn % n;
        let mut order: Vec<usize> = (0..n).map(|k| (start + k) % n).collect();
        // Stable sort keeps the rotation among equal loads.
        order.sort_by(|&a, &b| {
            let (a, b) = (&cands[a], &cands[b]);
            (a.conns as u64 * b.weight as u64).cmp(&(b.conns as u64 * a.weight as u64))
        });
        order.into_iter().map(|i| cands[i].idx).collect()
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: fast, and good enough to spread connections.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn weighted_draw(&mut self, cands: &[Candidate]) -> usize {
        let total: u64 = cands.iter().map(|c| c.weight as u64).sum();
        let mut r = self.next_rand() % total.max(1);
        for (i, c) in cands.iter().enumerate() {
            if r < c.weight as u64 {
                return i;
            }
            r -= c.weight as u64;
        }
        cands.len() - 1
    }

    /// Power of two choices: two weighted draws, the less loaded wins.
    fn random(&mut self, cands: &[Candidate]) -> Vec<usize> {
        let a = self.weighted_draw(cands);
        let mut b = self.weighted_draw(cands);
        if b == a && cands.len() > 1 {
            b = self.weighted_draw(cands);
        }
        // Less loaded per unit of weight; a tie keeps the first draw, so an
        // idle backend follows the weights.
        let (ca, cb) = (&cands[a], &cands[b]);
        let b_lighter = (cb.conns as u64 * ca.weight as u64) < (ca.conns as u64 * cb.weight as u64);
        let pick = if b_lighter { b } else { a };
        rotate_from(cands, pick)
    }
}

fn rotate_from(cands: &[Candidate], first: usize) -> Vec<usize> {
    let n = cands.len();
    (0..n).map(|k| cands[(first + k) % n].idx).collect()
}

/// Map-based source hashing (HAProxy's default `hash-type`): the client's
/// address hashed over the running servers' total weight.
fn source(cands: &[Candidate], src: IpAddr) -> Vec<usize> {
    let total: u64 = cands.iter().map(|c| c.weight as u64).sum();
    let mut slot = hash_ip(src) as u64 % total.max(1);
    let mut pick = cands.len() - 1;
    for (i, c) in cands.iter().enumerate() {
        if slot < c.weight as u64 {
            pick = i;
            break;
        }
        slot -= c.weight as u64;
    }
    rotate_from(cands, pick)
}

/// Points on the ring per unit of weight: enough for an even spread over a
/// few servers (HAProxy uses 16 per weight unit at its default scale).
const POINTS_PER_WEIGHT: u32 = 64;

/// A consistent-hash ring over a backend's servers (HAProxy's `hash-type
/// consistent`): each server owns points in proportion to its configured
/// weight; a key goes to the server of the first point at or after its hash.
/// A server that is removed (or down) gives up only its own keys.
#[derive(Debug, Default)]
pub struct Ring {
    points: Vec<(u32, usize)>,
}

impl Ring {
    /// A ring over servers named `names` with `weights` (by position).
    pub fn new(names: &[&str], weights: &[u32]) -> Ring {
        let mut points = Vec::new();
        for (idx, (name, w)) in names.iter().zip(weights).enumerate() {
            for k in 0..(w * POINTS_PER_WEIGHT) {
                // The server's name, not its position, places its points: a
                // server keeps its keys when another is removed before it.
                let h = hash_bytes(format!("{name}#{k}").as_bytes());
                points.push((h, idx));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// The candidates in ring order from `key`'s point: the first is the
    /// pick, the others (each once) for retries.
    pub fn order(&self, key: u32, cands: &[Candidate]) -> Vec<usize> {
        let n = self.points.len();
        if n == 0 || cands.is_empty() {
            return cands.iter().map(|c| c.idx).collect();
        }
        let start = self.points.partition_point(|(h, _)| *h < key);
        let mut out: Vec<usize> = Vec::with_capacity(cands.len());
        for k in 0..n {
            let idx = self.points[(start + k) % n].1;
            if !out.contains(&idx) && cands.iter().any(|c| c.idx == idx) {
                out.push(idx);
                if out.len() == cands.len() {
                    break;
                }
            }
        }
        out
    }
}

/// A stable 32-bit hash of bytes (FNV-1a, then a murmur3 finalizer).
pub fn hash_bytes(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// A stable 32-bit hash of an address (FNV-1a, then a murmur3 finalizer).
pub fn hash_ip(ip: IpAddr) -> u32 {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    };
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cands(weights: &[u32]) -> Vec<Candidate> {
        weights
            .iter()
            .enumerate()
            .map(|(idx, &weight)| Candidate {
                idx,
                weight,
                conns: 0,
            })
            .collect()
    }

    fn picks(algo: Balance, c: &[Candidate], n: usize) -> Vec<usize> {
        let mut s = LbState::new(c.len());
        (0..n)
            .map(|_| s.order(algo, c, IpAddr::from([10, 0, 0, 1]))[0])
            .collect()
    }

    #[test]
    fn round_robin_takes_turns_in_order() {
        assert_eq!(
            picks(Balance::RoundRobin, &cands(&[1, 1, 1]), 6),
            [0, 1, 2, 0, 1, 2]
        );
    }

    #[test]
    fn round_robin_is_smooth_and_weighted() {
        assert_eq!(
            picks(Balance::RoundRobin, &cands(&[3, 1]), 8),
            [0, 0, 1, 0, 0, 0, 1, 0]
        );
        for weights in [[5u32, 1, 2], [256, 1, 7], [1, 1, 1]] {
            let total: u32 = weights.iter().sum();
            let p = picks(Balance::StaticRr, &cands(&weights), total as usize * 4);
            for (i, w) in weights.iter().enumerate() {
                assert_eq!(p.iter().filter(|&&x| x == i).count(), *w as usize * 4);
            }
        }
    }

    #[test]
    fn order_lists_every_candidate_once() {
        let c = cands(&[2, 1, 1, 4]);
        for algo in [
            Balance::RoundRobin,
            Balance::LeastConn,
            Balance::First,
            Balance::Source,
            Balance::Random,
        ] {
            let mut s = LbState::new(4);
            for i in 0..50u8 {
                let mut o = s.order(algo, &c, IpAddr::from([10, 0, 0, i]));
                o.sort();
                assert_eq!(o, [0, 1, 2, 3], "{algo:?}");
            }
        }
    }

    #[test]
    fn least_conn_prefers_fewest_per_weight_and_rotates_ties() {
        let mut c = cands(&[1, 1, 2]);
        c[0].conns = 3;
        c[1].conns = 1;
        c[2].conns = 2; // 2/2 = 1 per weight: tie with server 1
        let mut s = LbState::new(3);
        let firsts: Vec<usize> = (0..4)
            .map(|_| s.order(Balance::LeastConn, &c, IpAddr::from([0, 0, 0, 0]))[0])
            .collect();
        assert!(firsts.iter().all(|&f| f == 1 || f == 2));
        assert!(firsts.contains(&1) && firsts.contains(&2));
        let o = s.order(Balance::LeastConn, &c, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(o[2], 0);
    }

    #[test]
    fn source_is_stable_and_weighted() {
        let c = cands(&[1, 1, 1]);
        let mut s = LbState::new(3);
        let mut counts = HashMap::new();
        for i in 0..=255u8 {
            let ip = IpAddr::from([198, 51, 100, i]);
            let a = s.order(Balance::Source, &c, ip)[0];
            assert_eq!(a, s.order(Balance::Source, &c, ip)[0]);
            *counts.entry(a).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|&n| n > 50), "{counts:?}");
    }

    #[test]
    fn random_prefers_the_less_loaded_of_two() {
        let mut c = cands(&[1, 1]);
        c[0].conns = 100;
        let p = picks(Balance::Random, &c, 200);
        let to_busy = p.iter().filter(|&&x| x == 0).count();
        // Only when both draws hit server 0 (twice in a row) can it win.
        assert!(to_busy < 40, "{to_busy}");
        let spread = picks(Balance::Random, &cands(&[1, 1, 1, 1]), 400);
        for i in 0..4 {
            assert!(spread.contains(&i));
        }
    }

    #[test]
    fn the_ring_is_weighted_and_removing_one_of_four_moves_only_its_keys() {
        let names = ["s1", "s2", "s3", "s4"];
        let ring = Ring::new(&names, &[1, 1, 1, 1]);
        let all = cands(&[1, 1, 1, 1]);
        let keys: Vec<u32> = (0..10_000)
            .map(|i| hash_bytes(format!("/page/{i}").as_bytes()))
            .collect();
        let before: Vec<usize> = keys.iter().map(|k| ring.order(*k, &all)[0]).collect();
        let mut count = [0usize; 4];
        for &s in &before {
            count[s] += 1;
        }
        // An even spread: each of 4 gets 25% ± 5 points.
        assert!(count.iter().all(|c| (2000..=3000).contains(c)), "{count:?}");
        // s3 leaves (down, or removed): only its keys move.
        let without: Vec<Candidate> = all.iter().copied().filter(|c| c.idx != 2).collect();
        let moved = keys
            .iter()
            .zip(&before)
            .filter(|(k, b)| ring.order(**k, &without)[0] != **b)
            .count();
        assert_eq!(moved, count[2], "exactly s3's keys move");
        assert!(moved * 100 / keys.len() <= 30, "{moved}");
        // Removed from the config (a ring without it): the same keys move.
        let ring3 = Ring::new(&["s1", "s2", "s4"], &[1, 1, 1]);
        let three = cands(&[1, 1, 1]);
        let idx3 = [0usize, 1, 3];
        let moved3 = keys
            .iter()
            .zip(&before)
            .filter(|(k, b)| idx3[ring3.order(**k, &three)[0]] != **b)
            .count();
        assert_eq!(moved3, count[2]);
        // Weights: 3:1.
        let ring = Ring::new(&["a", "b"], &[3, 1]);
        let two = cands(&[3, 1]);
        let to_a = keys
            .iter()
            .filter(|k| ring.order(**k, &two)[0] == 0)
            .count();
        assert!((7000..=8000).contains(&to_a), "{to_a}");
    }

    #[test]
    fn ipv4_mapped_hashes_like_ipv4() {
        let v4: IpAddr = "198.51.100.7".parse().unwrap();
        let v6: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        assert_eq!(hash_ip(v4), hash_ip(v6));
    }
}
