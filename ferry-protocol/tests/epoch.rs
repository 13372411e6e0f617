//! The epoch chain driven by a real suite's ratchet and datagram MAC (the
//! intl suite from `ferry-suites`): both sides agree, old epochs are erased,
//! and a chain restored from its oldest held secret catches up. Moved here
//! from `src/epoch.rs`'s unit tests when the suites left this crate.

use ferry_protocol::epoch::EpochChain;
use ferry_protocol::suite::Secret32;
use ferry_suites::intl::IntlLink;

#[test]
fn both_sides_agree_and_old_epochs_are_erased() {
    let link = IntlLink;
    let mut a = EpochChain::new(&link, 0, Secret32([1; 32]), 1);
    let mut b = EpochChain::new(&link, 0, Secret32([1; 32]), 1);
    a.advance_to(&link, 5);
    b.advance_to(&link, 3);
    b.advance_to(&link, 5);
    assert_eq!(a.secret(5), b.secret(5));
    assert!(a.secret(4).is_some());
    assert!(a.secret(3).is_none(), "epochs beyond grace are erased");
    assert_eq!(a.oldest().map(|(e, _)| e), Some(4));
    let msg = b"hello";
    let tag = a.mac(5).map(|m| m.tag(msg)).expect("mac held");
    assert!(b.mac(5).is_some_and(|m| m.verify(msg, &tag)));
    assert!(!b.mac(4).is_some_and(|m| m.verify(msg, &tag)));
}

#[test]
fn restore_from_oldest() {
    let link = IntlLink;
    let mut a = EpochChain::new(&link, 0, Secret32([2; 32]), 1);
    a.advance_to(&link, 9);
    let (e, s) = a.oldest().map(|(e, s)| (e, s.clone())).expect("held");
    let mut b = EpochChain::new(&link, e, s, 1);
    b.advance_to(&link, 9);
    assert_eq!(a.secret(9), b.secret(9));
}
