//! Arbitrary scripts for a simulated cluster of two or three processes over a simulated Redis
//! (`wschat::sim::script`): the first byte seeds the network's delays, the second picks the
//! number of processes and the latency, then every three bytes an action (clients connecting,
//! talking, moving, renaming, hanging up; time passing; links cut, stalled and healed; Redis
//! stopped and started). The run panics if a member saw a room out of the one order, an id
//! named two messages, a client missed its own join or the answer to its `/nick` with no
//! fault to blame, or a message said while everything was up was lost.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wschat::sim::script::{self, Script};

fuzz_target!(|data: &[u8]| {
    script::run(&Script::from_bytes(data));
});
