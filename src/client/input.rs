//! The terminal client's input thread, in its two forms: a line editor on a terminal (history,
//! editing, incoming messages printed above the line being typed) or plain lines from a pipe.
//! Either way, lines become [`Command`]s for the connection and the end of input becomes
//! [`Command::Finish`].

use std::io::{BufRead, Write};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;

use super::display::{EditorOutput, Output};
use super::session::{Command, Wakeup};

const PROMPT: &str = "> ";

/// The interactive input: a running line editor and the output that prints around it.
pub struct Interactive {
    pub output: Arc<dyn Output>,
    terminal: SavedTerminal,
}

impl Interactive {
    /// Leaves the terminal as it was found and returns `status`. The editor thread may still be
    /// blocked reading a key, so the process must exit right after this.
    pub fn finish(self, status: i32) -> i32 {
        // Lines handed to the editor's printer are drawn by its thread; give it a moment.
        thread::sleep(Duration::from_millis(50));
        self.terminal.restore();
        // The editor redraws its prompt under the last line printed; the session is over, so
        // clear that row rather than leave a `> ` nobody can type into.
        let _ = std::io::stdout().write_all(b"\r\x1b[J");
        let _ = std::io::stdout().flush();
        status
    }
}

/// Starts the line editor on its own thread. `None` (with the reason printed) if the terminal
/// cannot be used.
pub fn interactive(commands: Sender<Command>, wakeup: Wakeup, colour: bool) -> Option<Interactive> {
    let terminal = SavedTerminal::save();
    // Without bracketed paste a paste is typed: each of its lines is accepted, and sent, as it
    // comes (with it, all of them would land in one line, which the server refuses). Keys
    // typed ahead of a line are kept for the next by rustyline's `buffer-redux` feature.
    let config = rustyline::Config::builder().bracketed_paste(false).build();
    let mut editor = match DefaultEditor::with_config(config) {
        Ok(editor) => editor,
        Err(e) => {
            eprintln!("wschat-client: cannot start the line editor: {e}");
            return None;
        }
    };
    let printer = match editor.create_external_printer() {
        Ok(printer) => printer,
        Err(e) => {
            eprintln!("wschat-client: cannot print beside the line editor: {e}");
            return None;
        }
    };
    let output: Arc<dyn Output> = Arc::new(EditorOutput { printer: Mutex::new(printer), colour });
    let send = move |command| {
        let _ = commands.send(command);
        wakeup.wake();
    };
    thread::spawn(move || loop {
        match editor.readline(PROMPT) {
            Ok(line) => {
                erase_accepted(&line);
                if line.trim().is_empty() {
                    continue;
                }
                let _ = editor.add_history_entry(line.as_str());
                send(Command::Line(line));
            }
            // Ctrl-D and Ctrl-C both leave, with a proper close; Ctrl-C also before a
            // connection (the line editor reads it as a key, so no SIGINT comes).
            Err(ReadlineError::Eof) => {
                send(Command::Finish { wait_for_ack: false });
                return;
            }
            Err(ReadlineError::Interrupted) => {
                send(Command::Interrupt);
                return;
            }
            Err(e) => {
                eprintln!("wschat-client: input failed: {e}");
                send(Command::Finish { wait_for_ack: false });
                return;
            }
        }
    });
    Some(Interactive { output, terminal })
}

/// Erases the line the editor just accepted, which it leaves on screen as `> TEXT`. The server
/// answers every line (your own chat comes back as `NICK: TEXT`, a command with its result),
/// so without this each message would show twice.
fn erase_accepted(line: &str) {
    use unicode_width::UnicodeWidthStr;
    let columns = terminal_columns().max(1);
    // The editor wraps at the terminal's width and then moves to a fresh row, so the cursor
    // is `width / columns + 1` rows below the prompt's row (an exactly full last row wraps too).
    let rows_up = (PROMPT.width() + line.width()) / columns + 1;
    let mut out = std::io::stdout().lock();
    // Up to the prompt's row, to its start, and clear to the end of the screen.
    let _ = write!(out, "\x1b[{rows_up}A\r\x1b[J");
    let _ = out.flush();
}

/// The terminal's width in columns (80 if it cannot be read).
fn terminal_columns() -> usize {
    // SAFETY: TIOCGWINSZ only writes the winsize struct it is given, which is plain data.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        if libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) == 0 && size.ws_col > 0 {
            usize::from(size.ws_col)
        } else {
            80
        }
    }
}

/// Starts a thread sending each non-empty line of stdin, then asking for an acknowledged finish.
pub fn scripted(commands: Sender<Command>, wakeup: Wakeup) {
    thread::spawn(move || {
        let send = |command| {
            let _ = commands.send(command);
            wakeup.wake();
        };
        let mut stdin = std::io::stdin().lock();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match stdin.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']);
                    if !line.is_empty() {
                        send(Command::Line(line.to_string()));
                    }
                }
            }
        }
        send(Command::Finish { wait_for_ack: true });
    });
}

/// The terminal's settings before the line editor touched them. The editor restores them itself
/// when a read returns, but the client may have to exit while a read is still waiting for a key.
struct SavedTerminal(Option<libc::termios>);

impl SavedTerminal {
    fn save() -> Self {
        // SAFETY: tcgetattr only writes the struct it is given; a zeroed termios is a valid
        // value for it to overwrite, and it is only used if the call succeeded.
        unsafe {
            let mut settings: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut settings) == 0 {
                Self(Some(settings))
            } else {
                Self(None)
            }
        }
    }

    fn restore(&self) {
        if let Some(settings) = &self.0 {
            // SAFETY: the settings came from tcgetattr on the same descriptor.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSADRAIN, settings);
            }
        }
    }
}
