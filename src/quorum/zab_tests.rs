//! Engine tests: given this state and this event, these are the commands.

use super::*;

#[test]
fn placeholder() {
    assert_eq!(next_zxid(0, 1), Some(zxid::make(1, 1)));
}
