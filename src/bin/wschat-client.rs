//! `wschat-client URL [--nick NAME]`: chat from a terminal, or script a chat through a pipe.

use clap::Parser;
use wschat::client::{self, ClientConfig};

fn main() {
    let config = ClientConfig::parse();
    // `exit` rather than returning: the input thread may be blocked reading the terminal.
    std::process::exit(client::run(config));
}
