//! Corral's zxid layout: `epoch << 48 | counter` in an `i64`.
//!
//! A zxid names one transaction for the whole life of an ensemble: the epoch of the leader that
//! proposed it and that leader's running counter. Apache ZooKeeper splits the 64 bits 32/32 and
//! has to force a leader election when the counter reaches 2^32 - 1, which a busy ensemble hits
//! in days (50k writes/s exhausts 2^32 in about a day). Corral gives the counter 48 bits
//! (2.8 * 10^14 transactions per epoch: centuries at a million writes per second) and the epoch
//! the remaining 16. Because clients see zxids as signed longs and compare them, the sign bit
//! must stay clear, so the epoch is limited to 15 bits: `1..=MAX_EPOCH` (32767). An epoch is
//! spent per established leader, so that is 32767 leader changes over an ensemble's life; the
//! ZAB core refuses (with an error, not a wrap-around) to choose an epoch beyond it.
//!
//! Zxid 0 means "nothing": the first leader's epoch is 1 and its first counter is 1.
//!
//! Note: ZooKeeper's own files (`corral import-zk`) use the 32/32 split; code reading them must
//! not use this module.

/// Bits given to the counter.
pub const COUNTER_BITS: u32 = 48;
/// Largest counter value in one epoch.
pub const MAX_COUNTER: u64 = (1 << COUNTER_BITS) - 1;
/// Largest epoch that keeps zxids positive.
pub const MAX_EPOCH: u64 = (1 << (63 - COUNTER_BITS)) - 1;
/// The zxid of an empty history.
pub const NONE: i64 = 0;

/// Builds a zxid. `epoch` must be at most [`MAX_EPOCH`] and `counter` at most [`MAX_COUNTER`];
/// out-of-range inputs are a programming error (checked in debug builds, masked in release).
pub fn make(epoch: u64, counter: u64) -> i64 {
    debug_assert!(epoch <= MAX_EPOCH, "epoch {epoch} out of range");
    debug_assert!(counter <= MAX_COUNTER, "counter {counter} out of range");
    (((epoch & MAX_EPOCH) << COUNTER_BITS) | (counter & MAX_COUNTER)) as i64
}

/// Builds a zxid, or `None` when either part is out of range.
pub fn try_make(epoch: u64, counter: u64) -> Option<i64> {
    (epoch <= MAX_EPOCH && counter <= MAX_COUNTER).then(|| make(epoch, counter))
}

/// The epoch part of a zxid (the top bits; a negative zxid has none and yields 0).
pub fn epoch(zxid: i64) -> u64 {
    if zxid < 0 {
        0
    } else {
        (zxid as u64) >> COUNTER_BITS
    }
}

/// The counter part of a zxid (the low 48 bits).
pub fn counter(zxid: i64) -> u64 {
    (zxid as u64) & MAX_COUNTER
}

/// Human-readable form used in logs and errors: `0x<epoch>:<counter>`.
pub fn display(zxid: i64) -> String {
    format!("{:#x}:{}", epoch(zxid), counter(zxid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for (e, c) in [
            (0, 0),
            (1, 1),
            (7, 123_456),
            (MAX_EPOCH, MAX_COUNTER),
            (1, MAX_COUNTER),
        ] {
            let z = make(e, c);
            assert!(z >= 0);
            assert_eq!((epoch(z), counter(z)), (e, c));
        }
    }

    #[test]
    fn ordering_is_epoch_then_counter() {
        assert!(make(1, MAX_COUNTER) < make(2, 0));
        assert!(make(2, 1) < make(2, 2));
        assert_eq!(make(0, 0), NONE);
        assert_eq!(make(1, 0), 1 << 48);
    }

    #[test]
    fn out_of_range_is_refused() {
        assert_eq!(try_make(MAX_EPOCH + 1, 0), None);
        assert_eq!(try_make(1, MAX_COUNTER + 1), None);
        assert_eq!(try_make(3, 4), Some(make(3, 4)));
        assert_eq!(epoch(-1), 0);
    }
}
