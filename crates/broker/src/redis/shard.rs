//! Sharding channels over several Redis instances: Jump consistent hash (Lamping and
//! Veach, 2014) over a stable hash of the channel key, as Centrifugo spreads channels.
//!
//! Everything of one channel (stream, meta, presence, PUB/SUB) lives on the shard its key
//! picks. Adding a shard moves about 1/n of the channels; a moved channel's history stays
//! behind on its old shard, and its next publication starts a new epoch there — which
//! clients see as `recovered: false`, never as a silent gap. Every node must list the same
//! URLs in the same order.

use crate::ChannelKey;

/// FNV-1a, 64 bits: stable across processes, versions and machines (unlike std's hasher).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Jump consistent hash: a bucket in `0..buckets` for `key`.
fn jump(mut key: u64, buckets: usize) -> usize {
    let buckets = i64::try_from(buckets.max(1)).unwrap_or(i64::MAX);
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        {
            j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
        }
    }
    usize::try_from(b).unwrap_or(0)
}

/// The shard (index into the configured URLs) of `key`, out of `shards`.
pub(super) fn shard_of(key: &ChannelKey, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    jump(
        fnv1a(&[key.project().as_bytes(), b":", key.name().as_bytes()]),
        shards,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_evenly_and_moves_little_when_a_shard_is_added() {
        let keys: Vec<ChannelKey> = (0..10_000)
            .map(|i| ChannelKey::new(uuid::Uuid::from_u128(1), &format!("c{i}")))
            .collect();
        let mut counts = [0usize; 4];
        for k in &keys {
            counts[shard_of(k, 4)] += 1;
        }
        assert!(
            counts.iter().all(|&n| (2_000..3_000).contains(&n)),
            "{counts:?}"
        );
        let moved = keys
            .iter()
            .filter(|k| shard_of(k, 4) != shard_of(k, 5))
            .count();
        assert!((1_500..2_500).contains(&moved), "{moved} of 10000 moved");
        // A moved channel only ever moves to the new shard.
        assert!(
            keys.iter()
                .all(|k| shard_of(k, 4) == shard_of(k, 5) || shard_of(k, 5) == 4)
        );
        assert_eq!(shard_of(&keys[0], 1), 0);
    }
}
