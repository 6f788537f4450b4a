//! Arbitrary chat command lines from four clients (each line prefixed by a client byte), sent
//! as text messages through the simulation: the command parser and the chat state must never
//! panic or lose consistency.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<(usize, &str)> = text
        .split('\n')
        .map(|line| {
            let client = line.bytes().next().map_or(0, usize::from);
            (client, line.get(1..).unwrap_or(""))
        })
        .collect();
    wschat::sim::scenarios::chat_lines(&lines);
});
