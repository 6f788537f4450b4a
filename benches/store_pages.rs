//! Criterion benchmark of `/history` past memory: one page read from the durable store
//! (`Store::older`), in a room holding `--retain`'s default 10,000 messages, since the loop
//! waits for it (the bound: a millisecond a page at most).
//!
//! `cargo bench --bench store_pages`; `cargo test` / `cargo clippy --all-targets` compile it.

use std::rc::Rc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use wschat::chat::history::Kind;
use wschat::chat::{Journal, Stored};
use wschat::store::{Store, DEFAULT_RETAIN};

fn pages(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("wschat-bench-store-{}", std::process::id()));
    let mut store = Store::open(&dir).expect("open the store");
    let journal: Vec<Journal> = (1..=DEFAULT_RETAIN as u64)
        .map(|seq| Journal::Message {
            room: Rc::from("lobby"),
            display: Rc::from("lobby"),
            epoch: Rc::from("ep0ch"),
            message: Rc::new(Stored {
                author: 0,
                edited: false,
                seq,
                ts: 1_764_000_000_000 + seq,
                from: Rc::from("alice"),
                // A chat line of typical length.
                text: format!("message number {seq}, about as long as a chat line usually is").into(),
                kind: Kind::Line,
                mentions: Box::new([]),
            }),
        })
        .collect();
    for chunk in journal.chunks(1000) {
        store.commit(chunk).expect("commit");
    }
    let mut group = c.benchmark_group("store_page");
    for count in [50, 200] {
        group.bench_with_input(BenchmarkId::from_parameter(count), &count, |b, &count| {
            b.iter(|| store.older("lobby", 5_000, count).expect("read"))
        });
    }
    group.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, pages);
criterion_main!(benches);
