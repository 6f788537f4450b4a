//! `wschat-server [ADDR]`: parse flags, set up logging, run the server (over TLS with `--tls-cert`).

use std::io::IsTerminal;
use std::process::ExitCode;

use simplelog::{ColorChoice, ConfigBuilder, TermLogger, TerminalMode};
use wschat::server::{Accept, TlsServerStream};
use wschat::{Config, Server, Settings};

fn main() -> ExitCode {
    let (config, settings) = Config::from_args();
    let level = config.log_level();
    let mut log_config = ConfigBuilder::new();
    log_config.set_time_format_rfc3339().set_target_level(log::LevelFilter::Off);
    // tungstenite logs every frame and message at trace, verbatim: a client could write lines
    // of its choosing into the log (and cost the loop a write per frame). wschat logs its own
    // events, with client text quoted (see wschat::logline).
    log_config.add_filter_ignore_str("tungstenite");
    // rustls's own lines repeat what clients offer; TLS failures are logged by wschat.
    log_config.add_filter_ignore_str("rustls");
    let log_config = log_config.build();
    // simplelog's Auto colours even a redirected stderr; colour only a terminal, and honour NO_COLOR.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let colour = if colour { ColorChoice::Auto } else { ColorChoice::Never };
    let _ = TermLogger::init(level, log_config, TerminalMode::Stderr, colour);
    // One loop per kind of stream, each monomorphic: the plain path pays nothing for TLS.
    if settings.tls.is_some() {
        serve::<TlsServerStream>(settings)
    } else {
        serve::<mio::net::TcpStream>(settings)
    }
}

fn serve<S: Accept>(settings: Settings) -> ExitCode {
    // Every client is a file: the usual soft limit of 1,024 would turn client 1,000 away.
    let wanted = settings.open_files_wanted();
    match wschat::fdlimit::ensure(wanted) {
        Ok(raised) => log::debug!("open-file limit {} (hard {})", raised.soft, raised.hard),
        Err(why) => log::warn!("--max-connections {}: {why}", settings.max_connections),
    }
    let server = match Server::<S>::bind(settings) {
        Ok(server) => server,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}
