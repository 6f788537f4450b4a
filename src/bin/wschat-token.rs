//! `wschat-token --jwt-secret FILE NICK`: a sign-in token for wschat-server (see `wschat::token`).

use clap::Parser;
use wschat::token::{self, TokenConfig};

fn main() {
    let config = TokenConfig::parse();
    match token::make(&config, wschat::auth::unix_now()) {
        Ok(token) => println!("{token}"),
        Err(why) => {
            eprintln!("wschat-token: {why}");
            std::process::exit(1);
        }
    }
}
