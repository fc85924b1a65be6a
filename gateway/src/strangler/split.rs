//! Choosing a split target: weighted rendezvous hashing of a sticky key.
//!
//! Each target scores `weight / -ln(u)` with `u` a hash of (key, backend) mapped into
//! (0, 1); the highest score wins. The same key always gets the same target while the
//! weights stay, and changing one weight moves only the keys that must move (no
//! reshuffle), which is what keeps users sticky through a gradual migration.

use std::net::IpAddr;

use http::header::{COOKIE, HeaderValue};
use http::{HeaderMap, HeaderName};

use crate::auth::Identity;
use crate::config::Sticky;
use crate::proxy::ProxyRoute;

/// One target, ready to forward to.
#[derive(Debug)]
pub struct SplitTarget {
    /// The backend's name (what `override` names).
    pub name: String,
    /// How to forward to it.
    pub route: ProxyRoute,
    /// Its weight.
    pub weight: u32,
}

/// A resolved `split` handler.
#[derive(Debug)]
pub struct SplitRoute {
    /// The targets.
    pub targets: Vec<SplitTarget>,
    /// The stickiness key.
    pub sticky: Option<Sticky>,
    /// The override header.
    pub override_header: Option<HeaderName>,
}

/// The target chosen for one request.
#[derive(Debug)]
pub struct Choice<'a> {
    /// The target.
    pub target: &'a SplitTarget,
    /// A `Set-Cookie` to send when the client had no sticky cookie yet.
    pub set_cookie: Option<HeaderValue>,
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// FNV-1a then a SplitMix64 finaliser: stable across processes and versions, so every
/// replica makes the same choice.
fn hash(key: &[u8], salt: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.iter().chain([0xff].iter()).chain(salt) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl SplitRoute {
    /// The index of the target for `key` (weighted rendezvous hashing).
    pub fn target_for(&self, key: &[u8]) -> usize {
        let mut best = (0, f64::MIN);
        for (i, t) in self.targets.iter().enumerate() {
            if t.weight == 0 {
                continue;
            }
            // u in (0, 1), never 0 or 1.
            let u = ((hash(key, t.name.as_bytes()) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let score = f64::from(t.weight) / -u.ln();
            if score > best.1 {
                best = (i, score);
            }
        }
        best.0
    }

    /// Chooses the target for a request.
    pub fn choose(
        &self,
        headers: &HeaderMap,
        client: IpAddr,
        tls: bool,
        identity: Option<&Identity>,
    ) -> Choice<'_> {
        if let Some(h) = &self.override_header
            && let Some(name) = headers.get(h).and_then(|v| v.to_str().ok())
            && let Some(target) = self.targets.iter().find(|t| t.name == name.trim())
        {
            return Choice {
                target,
                set_cookie: None,
            };
        }
        let mut set_cookie = None;
        let key: Vec<u8> = match &self.sticky {
            Some(Sticky::Cookie(name)) => match cookie(headers, name) {
                Some(v) if !v.is_empty() => v.as_bytes().to_vec(),
                _ => {
                    let id = format!("{:032x}", fastrand::u128(..));
                    let secure = if tls { "; Secure" } else { "" };
                    set_cookie = HeaderValue::from_str(&format!(
                        "{name}={id}; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax{secure}"
                    ))
                    .ok();
                    id.into_bytes()
                }
            },
            Some(Sticky::Header(h)) => match headers.get(h) {
                Some(v) => v.as_bytes().to_vec(),
                None => fastrand::u64(..).to_le_bytes().to_vec(),
            },
            Some(Sticky::Ip) => client.to_string().into_bytes(),
            Some(Sticky::Claim(name)) => match identity.and_then(|i| i.claim_text(name)) {
                Some(v) => v.into_bytes(),
                None => fastrand::u64(..).to_le_bytes().to_vec(),
            },
            None => fastrand::u64(..).to_le_bytes().to_vec(),
        };
        Choice {
            target: &self.targets[self.target_for(&key)],
            set_cookie,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{Backend, Instance};
    use crate::upstream::Upstream;

    fn split(weights: &[(&str, u32)]) -> SplitRoute {
        let targets = weights
            .iter()
            .map(|(name, weight)| {
                let backend = Backend::new(
                    name,
                    vec![Instance {
                        scheme: http::uri::Scheme::HTTP,
                        authority: "127.0.0.1:1".parse().unwrap(),
                        base_path: String::new(),
                    }],
                );
                SplitTarget {
                    name: name.to_string(),
                    route: ProxyRoute {
                        upstream: Arc::new(Upstream::new(&backend)),
                        path: None,
                        strip_prefix: 0,
                    },
                    weight: *weight,
                }
            })
            .collect();
        SplitRoute {
            targets,
            sticky: None,
            override_header: None,
        }
    }

    fn assign(s: &SplitRoute, n: usize) -> Vec<usize> {
        (0..n)
            .map(|i| s.target_for(format!("user-{i}").as_bytes()))
            .collect()
    }

    #[test]
    fn shares_follow_weights() {
        let s = split(&[("new", 10), ("old", 90)]);
        let a = assign(&s, 20_000);
        let new = a.iter().filter(|t| **t == 0).count() as f64 / 20_000.0;
        assert!((new - 0.10).abs() < 0.01, "share {new}");
    }

    #[test]
    fn raising_a_weight_moves_only_the_keys_that_must_move() {
        let before = assign(&split(&[("new", 10), ("old", 90)]), 20_000);
        let after = assign(&split(&[("new", 30), ("old", 70)]), 20_000);
        let mut moved_to_new = 0;
        for (b, a) in before.iter().zip(&after) {
            assert!(
                !(*b == 0 && *a == 1),
                "a key left the target whose weight grew"
            );
            if *b == 1 && *a == 0 {
                moved_to_new += 1;
            }
        }
        let share = moved_to_new as f64 / 20_000.0;
        assert!(
            (share - 0.20).abs() < 0.015,
            "moved {share}, expected about 0.20"
        );
    }

    #[test]
    fn weight_zero_gets_nothing_and_a_new_target_takes_only_its_share() {
        let s = split(&[("a", 0), ("b", 1)]);
        assert!(assign(&s, 2_000).iter().all(|t| *t == 1));
        let two = assign(&split(&[("a", 50), ("b", 50)]), 10_000);
        let three = assign(&split(&[("a", 50), ("b", 50), ("c", 25)]), 10_000);
        for (x, y) in two.iter().zip(&three) {
            assert!(
                x == y || *y == 2,
                "adding a target only takes keys for itself"
            );
        }
    }
}
