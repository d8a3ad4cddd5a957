//! Allocations of the message codec: decoding an AppendEntries allocates its vector of entries
//! and nothing per entry (commands are slices of the frame), and encoding reserves the buffer
//! once.
//!
//! Alone in its binary, and one test: the counting allocator sees every thread of the process,
//! the test harness's too.

use std::alloc::System;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use zeroraft_engine::Message;
use zeroraft_engine::core::{AppendEntries, Entry, InstallSnapshot};
use zeroraft_transport::Codec;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn allocation_budgets() {
    decoding_allocates_the_entry_vector_only();
    encoding_reserves_once();
}

fn append_entries(n: usize) -> Message {
    Message::AppendEntries(AppendEntries {
        term: 3,
        prev_log_index: 40,
        prev_log_term: 2,
        entries: (0..n)
            .map(|i| Entry::new(3, Bytes::from(vec![i as u8; 1 + i % 64])))
            .collect(),
        leader_commit: 39,
        round: 8,
    })
}

/// The frame as a TCP transport hands it over: split off a receive buffer holding its length
/// prefix, so that it already shares that buffer and slicing it only counts a reference.
fn received(msg: &Message) -> Bytes {
    let mut body = BytesMut::new();
    msg.encode(&mut body);
    let mut recv = BytesMut::with_capacity(4 + body.len() + 64);
    recv.put_u32_le(u32::try_from(body.len()).unwrap());
    recv.put_slice(&body);
    recv.put_slice(&[0; 64]); // the start of the next frame
    recv.advance(4);
    recv.split_to(body.len()).freeze()
}

fn decoding_allocates_the_entry_vector_only() {
    for n in [0, 1, 10, 1000] {
        let msg = append_entries(n);
        let frame = received(&msg);
        let region = Region::new(GLOBAL);
        let decoded = Message::decode(frame.clone()).unwrap();
        let stats = region.change();
        let want = usize::from(n > 0);
        assert_eq!(
            (stats.allocations, stats.reallocations),
            (want, 0),
            "decoding an AppendEntries of {n} entries"
        );
        assert_eq!(decoded, msg);
    }
    let snapshot = Message::InstallSnapshot(InstallSnapshot {
        term: 3,
        last_included_index: 100,
        last_included_term: 3,
        offset: 1 << 20,
        data: Bytes::from(vec![7; 64 << 10]),
        done: true,
        round: 9,
        config: None,
    });
    let frame = received(&snapshot);
    let region = Region::new(GLOBAL);
    let decoded = Message::decode(frame.clone()).unwrap();
    let stats = region.change();
    assert_eq!(
        (stats.allocations, stats.reallocations),
        (0, 0),
        "decoding an InstallSnapshot of 64 KiB"
    );
    assert_eq!(decoded, snapshot);
}

fn encoding_reserves_once() {
    let msg = append_entries(1000);
    let region = Region::new(GLOBAL);
    let mut buf = BytesMut::new();
    msg.encode(&mut buf);
    let stats = region.change();
    assert_eq!(
        (stats.allocations, stats.reallocations),
        (1, 0),
        "encoding an AppendEntries of 1000 entries into an empty buffer"
    );
    assert_eq!(buf.len(), msg.wire_size() - 3);

    // Into a buffer with room for it, nothing at all.
    buf.clear();
    let region = Region::new(GLOBAL);
    msg.encode(&mut buf);
    let stats = region.change();
    assert_eq!(
        (stats.allocations, stats.reallocations),
        (0, 0),
        "encoding into a buffer with room"
    );
}
